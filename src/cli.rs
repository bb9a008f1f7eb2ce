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
    /// Show every queue: weight, deserved share, allocation, gangs pending/inqueue/running (reads the cluster
    /// through the kubeconfig, like kubectl).
    Status(StatusArgs),
    /// Explain why a pod or PodGroup (`<namespace>/<name>`) is admitted or waits: its gang, its queue, and the
    /// reason (quota, capacity with the missing shape, fragmentation, a blocked head, reclaim in flight).
    Explain(ExplainArgs),
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
    /// Price one node of POOL at this many dollars per hour, over the scenario's `pricePerHour` (repeatable).
    /// With every pool priced, the report attributes the cluster's cost to queues, idle capacity and
    /// partially started applications.
    #[arg(long = "price", value_name = "POOL=DOLLARS_PER_HOUR", value_parser = crate::sim::scenario::parse_price)]
    pub prices: Vec<(String, f64)>,
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
    for (pool, price) in &args.prices {
        scenario.set_price(pool, *price).map_err(|e| anyhow::anyhow!("--price {pool}={price}: {e}"))?;
    }
    scenario.priced().map_err(|e| anyhow::anyhow!("--price: {e}"))?;
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

/// How `status` and `explain` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// For people.
    Text,
    /// For scripts (field names are stable).
    Json,
}

/// Which cluster to read, as kubectl chooses it.
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    /// Path of the kubeconfig (default: $KUBECONFIG, else ~/.kube/config, else in-cluster).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Text, global = true)]
    pub output: Output,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// `<namespace>/<name>` of a pod or PodGroup (a pod first, when both have the name); `<name>` alone means
    /// the `default` namespace.
    pub object: String,
    /// Look for only this kind.
    #[arg(long, value_enum)]
    pub kind: Option<ExplainKind>,
    /// The schedulerName of muster's pods (as muster serve's --scheduler-name).
    #[arg(long, default_value = "muster")]
    pub scheduler_name: String,
    /// The queue of gangs that name none (as muster serve's --default-queue).
    #[arg(long, default_value = "default")]
    pub default_queue: String,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExplainKind {
    Pod,
    Podgroup,
}

async fn cluster_client(args: &ClusterArgs) -> anyhow::Result<kube::Client> {
    let options = kube::config::KubeConfigOptions { context: args.context.clone(), ..Default::default() };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?
        }
        None if args.context.is_some() => kube::Config::from_kubeconfig(&options).await?,
        None => kube::Config::infer().await.context("configuring the Kubernetes API client (KUBECONFIG)")?,
    };
    Ok(kube::Client::try_from(config)?)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

pub fn run_status(args: StatusArgs) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let client = cluster_client(&args.cluster).await?;
        let rows = crate::explain::read_status(&client).await?;
        match args.cluster.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
            Output::Text => print!("{}", crate::explain::status_table(&rows)),
        }
        Ok(())
    })
}

pub fn run_explain(args: ExplainArgs) -> anyhow::Result<()> {
    let (namespace, name) = match args.object.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => (ns, name),
        None if !args.object.is_empty() => ("default", args.object.as_str()),
        _ => anyhow::bail!("expected <namespace>/<name>, got {:?}", args.object),
    };
    let target = match args.kind {
        None => crate::explain::Target::Any,
        Some(ExplainKind::Pod) => crate::explain::Target::Pod,
        Some(ExplainKind::Podgroup) => crate::explain::Target::PodGroup,
    };
    runtime()?.block_on(async {
        let client = cluster_client(&args.cluster).await?;
        let e = crate::explain::read_explanation(
            &client,
            namespace,
            name,
            target,
            &args.scheduler_name,
            &args.default_queue,
        )
        .await?;
        match args.cluster.output {
            Output::Json => println!("{}", serde_json::to_string_pretty(&e)?),
            Output::Text => print!("{}", crate::explain::explanation_text(&e)),
        }
        Ok(())
    })
}
