use clap::Parser;

use muster::cli::{Args, Command, run_explain, run_simulate, run_status};
use muster::serve::LogFormat;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command {
        Command::Simulate(a) => run_simulate(a),
        Command::Serve(a) => {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            let logs = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter);
            match a.log_format {
                LogFormat::Json => logs.json().flatten_event(true).with_current_span(false).init(),
                LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
            }
            tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(muster::serve::run(a))
        }
        Command::Certs(a) => muster::serve::run_certs(a),
        Command::Status(a) => run_status(a),
        Command::Explain(a) => run_explain(a),
        Command::Crds => {
            print!("{}", muster::api::crds_yaml());
            Ok(())
        }
    }
}
