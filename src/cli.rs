//! Command-line interface: one `Args` parsed by `main`, one function per subcommand.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::sim::{Mode, Scenario, simulate};

#[derive(Debug, Parser)]
#[command(
    name = "muster",
    version,
    about = "Gang admission and fair-share queues for Kubernetes",
    long_about = "muster admits a gang of pods (a Spark driver and its minimum executors, or any PodGroup) only \
                  when every member fits real nodes, reserves that capacity before the first member binds, and \
                  shares the cluster between weighted Queues. It runs as a kube-scheduler extender plus a \
                  PodGroup/Queue controller."
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay a workload trace through muster's core with a simulated clock and report what it decided.
    Simulate(SimulateArgs),
    /// Run the scheduler extender and the PodGroup/Queue controller against a cluster.
    Serve(crate::serve::ServeArgs),
    /// Print the CustomResourceDefinitions (Queue, PodGroup) as YAML.
    Crds,
    /// Generate a CA, a server certificate and a client certificate for mutual TLS between kube-scheduler and
    /// muster running in one pod (ca.crt, tls.crt, tls.key, client.crt, client.key).
    Certs(crate::serve::CertsArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Baseline {
    /// kube-scheduler alone: each pod placed greedily, with no notion of gangs or queues.
    PerPod,
}

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Scenario YAML (node pools, queues, workload). Without it, the embedded default scenario runs.
    pub scenario: Option<PathBuf>,
    /// Replay the same trace with a baseline scheduler instead of muster.
    #[arg(long, value_enum)]
    pub baseline: Option<Baseline>,
    /// Print the report as JSON (field names are stable; see the README).
    #[arg(long)]
    pub json: bool,
    /// Also draw queue shares over time into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
    /// Override the scenario's seed (the trace generators' randomness).
    #[arg(long)]
    pub seed: Option<u64>,
}

pub fn run_simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let mut scenario = match &args.scenario {
        None => Scenario::default_scenario(),
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading scenario {}", path.display()))?;
            Scenario::parse(&text, &path.display().to_string())?
        }
    };
    if let Some(seed) = args.seed {
        scenario.seed = seed;
    }
    let mode = match args.baseline {
        None => Mode::Gang,
        Some(Baseline::PerPod) => Mode::PerPod,
    };
    let report = simulate(&scenario, mode)?;
    if let Some(path) = &args.plot {
        std::fs::write(path, report.to_svg()).with_context(|| format!("writing plot {}", path.display()))?;
    }
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    Ok(())
}
