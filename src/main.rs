use clap::Parser;

use muster::cli::{Args, Command, run_simulate};

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command {
        Command::Simulate(a) => run_simulate(a),
        Command::Crds => {
            print!("{}", muster::api::crds_yaml());
            Ok(())
        }
    }
}
