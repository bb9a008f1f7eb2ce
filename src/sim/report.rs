//! What `muster simulate` reports: a table for people, JSON with stable field names for machines, and an SVG
//! plot of queue shares over time. Field meanings are documented in the README ("Reading the report").

use std::fmt::Write as _;

use serde::Serialize;

use crate::core::ResourceNames;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QueueReport {
    pub name: String,
    pub weight: u64,
    /// Mean over the busy period of the queue's deserved share (dominant resource, fraction of the cluster).
    pub deserved_share: f64,
    /// Mean over the busy period of the queue's allocated share (dominant resource, fraction of the cluster).
    pub mean_share: f64,
    pub gangs_submitted: u64,
    pub gangs_admitted: u64,
    pub gangs_completed: u64,
    /// Seconds from arrival until the driver and minimum executors were guaranteed (admission under muster;
    /// all bound under per-pod scheduling). None when no gang got there.
    pub admission_wait_p50_s: Option<f64>,
    pub admission_wait_p99_s: Option<f64>,
    /// Dollars of node time attributed to the queue's pods (see [`Report::cost_total`]); absent without prices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Series {
    pub name: String,
    /// (hours, share)
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    /// "gang" (muster) or "per-pod" (kube-scheduler alone).
    pub mode: String,
    pub seed: u64,
    pub simulated_hours: f64,
    pub nodes: u64,
    pub queues: Vec<QueueReport>,
    /// Mean fraction of cluster cpu / memory requested by bound pods over the busy period.
    pub utilisation_cpu: f64,
    pub utilisation_memory: f64,
    pub gangs_submitted: u64,
    pub gangs_completed: u64,
    /// Applications that at some point had members bound while a minimum member found no capacity.
    pub partially_started_gangs: u64,
    /// Applications that stayed partially started, holding capacity without progress, for at least
    /// `settings.deadlockAfter` (default 30 minutes), or were still partially started when the simulation ended.
    pub deadlocked_gangs: u64,
    /// Cpu core-hours held by partially started applications while they could not progress.
    pub stranded_cpu_core_hours: f64,
    /// Pods evicted by reclaim.
    pub evictions: u64,
    /// Whole applications evicted by reclaim (and resubmitted).
    pub reclaimed_gangs: u64,
    /// Dollars the nodes cost over the simulated time: the sum over pools of `count × pricePerHour ×
    /// simulated_hours`. Absent, like every cost field, unless the pools carry prices.
    ///
    /// Attribution: over each interval in which what is bound to a node does not change, a bound pod costs its
    /// share of the node's price by the dominant-resource rule muster's fair share uses: its largest fraction
    /// of the node's allocatable over cpu, memory and any other resource (the pod count aside). If the pods on a
    /// node are dominant in different resources, their shares are scaled down in proportion so that together
    /// they come to the node's own dominant used fraction, never more than the node costs. (OpenCost instead
    /// splits a node's price into a cpu and a memory price and charges each separately; the dominant rule
    /// charges a pod for the capacity it keeps from others, the way muster shares the cluster.) A pod's cost
    /// goes to its application's queue (`queues[].cost`), whether or not the application can make progress;
    /// what no pod holds is `cost_idle`. So `Σ queues[].cost + cost_idle = cost_total`, up to floating-point
    /// rounding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_total: Option<f64>,
    /// Dollars of node time no pod held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_idle: Option<f64>,
    /// Dollars of node time held by partially started applications while they could not progress: the cost of
    /// their bound pods, sampled like `stranded_cpu_core_hours` (part of the queues' cost, not on top of it).
    /// Zero under muster, which binds no member of a gang before the whole minimum is reserved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_stranded: Option<f64>,
    #[serde(skip)]
    pub series: Vec<Series>,
    #[serde(skip)]
    pub resources: ResourceNames,
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0}s")).unwrap_or_else(|| "-".into())
}

fn dollars(v: f64) -> String {
    format!("${v:.2}")
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    /// The human table.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "muster simulate: scenario {:?}, {} scheduling, seed {}, {} nodes, {:.1} simulated hours",
            self.scenario,
            if self.mode == "gang" { "gang (muster)" } else { "per-pod (kube-scheduler alone)" },
            self.seed,
            self.nodes,
            self.simulated_hours
        );
        let _ = writeln!(out);
        let cost_column = |c: &str| if self.cost_total.is_some() { format!(" {c:>11}") } else { String::new() };
        let _ = writeln!(
            out,
            "{:<18} {:>6} {:>9} {:>11} {:>9} {:>9} {:>9} {:>10} {:>10}{}",
            "queue",
            "weight",
            "deserved",
            "mean share",
            "submitted",
            "admitted",
            "completed",
            "wait p50",
            "wait p99",
            cost_column("cost")
        );
        for q in &self.queues {
            let _ = writeln!(
                out,
                "{:<18} {:>6} {:>8.1}% {:>10.1}% {:>9} {:>9} {:>9} {:>10} {:>10}{}",
                q.name,
                q.weight,
                q.deserved_share * 100.0,
                q.mean_share * 100.0,
                q.gangs_submitted,
                q.gangs_admitted,
                q.gangs_completed,
                opt(q.admission_wait_p50_s),
                opt(q.admission_wait_p99_s),
                cost_column(&q.cost.map(dollars).unwrap_or_default())
            );
        }
        let _ = writeln!(out);
        let mut rows: Vec<(&str, String)> = vec![
            (
                "utilisation (cpu / memory)",
                format!("{:.1}% / {:.1}%", self.utilisation_cpu * 100.0, self.utilisation_memory * 100.0),
            ),
            ("applications completed", format!("{} of {}", self.gangs_completed, self.gangs_submitted)),
            ("partially started", self.partially_started_gangs.to_string()),
            ("deadlocked (stuck >= 30m)", self.deadlocked_gangs.to_string()),
            ("cpu held by partial apps", format!("{:.1} core-hours", self.stranded_cpu_core_hours)),
            ("reclaim evictions (pods)", self.evictions.to_string()),
            ("applications reclaimed", self.reclaimed_gangs.to_string()),
            ("mode", self.mode.clone()),
        ];
        if let (Some(total), Some(idle), Some(stranded)) = (self.cost_total, self.cost_idle, self.cost_stranded) {
            let at = rows.len() - 1; // before "mode"
            rows.insert(at, ("cost held by partial apps", dollars(stranded)));
            rows.insert(at, ("cost (total / idle)", format!("{} / {}", dollars(total), dollars(idle))));
        }
        for (k, v) in rows {
            let _ = writeln!(out, "  {k:<28} {v}");
        }
        out
    }

    /// Queue shares over time as an SVG line chart.
    pub fn to_svg(&self) -> String {
        const W: f64 = 900.0;
        const H: f64 = 420.0;
        const PAD: f64 = 50.0;
        const COLOURS: [&str; 8] =
            ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];
        let max_x = self.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).fold(1.0_f64, f64::max);
        let x = |h: f64| PAD + (W - 2.0 * PAD) * h / max_x;
        let y = |share: f64| H - PAD - (H - 2.0 * PAD) * share;
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            svg,
            r#"<text x="{PAD}" y="24" font-size="14">Queue shares over time ({}, {} scheduling)</text>"#,
            xml(&self.scenario),
            xml(&self.mode)
        );
        for tick in 0..=4 {
            let v = tick as f64 / 4.0;
            let _ = writeln!(
                svg,
                r##"<line x1="{PAD}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="8" y="{}">{:.0}%</text>"##,
                W - PAD,
                y(v) + 4.0,
                v * 100.0,
                y = y(v)
            );
        }
        let step = (max_x / 8.0).ceil().max(1.0);
        let mut h = 0.0;
        while h <= max_x {
            let _ = writeln!(svg, r#"<text x="{}" y="{}" text-anchor="middle">{h:.0}h</text>"#, x(h), H - PAD + 18.0);
            h += step;
        }
        for (i, s) in self.series.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let points: Vec<String> = s.points.iter().map(|(h, v)| format!("{:.1},{:.1}", x(*h), y(*v))).collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
                points.join(" ")
            );
            let _ = writeln!(
                svg,
                r#"<text x="{}" y="{}" fill="{colour}">{}</text>"#,
                W - PAD - 150.0,
                PAD + 16.0 * i as f64,
                xml(&s.name)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
