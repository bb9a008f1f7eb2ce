use clap::Parser;

use muster::cli::{Args, Command, run_simulate};

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command {
        Command::Simulate(a) => run_simulate(a),
        Command::Serve(a) => {
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .init();
            tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(muster::serve::run(a))
        }
        Command::Certs(a) => muster::serve::run_certs(a),
        Command::Crds => {
            print!("{}", muster::api::crds_yaml());
            Ok(())
        }
    }
}
