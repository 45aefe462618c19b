//! The printed figures and ratios.

use std::fmt::Write as _;

use crate::phases::{Phase, Row};
use crate::{Args, pgbench};

/// The server name of dispute-core with observability off (deployed is "dispute-core").
pub const CORE_OFF: &str = "dispute-core, observability off";

#[derive(Default)]
pub struct Report {
    /// What the OTLP sink received: spans, trace export requests, metric export requests.
    pub spans_exported: Option<(u64, u64, u64)>,
    pub rows: Vec<Row>,
    /// document-store's ListDocuments of the GetDispute dispute, one call at a time (the
    /// hop GetDispute makes).
    pub list_documents_1x1: Option<Phase>,
    pub pgbench: Vec<pgbench::Figure>,
}

impl Report {
    pub fn row(&self, call: &str, server: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.call == call && r.server == server)
    }

    /// dispute-core as deployed, else with observability off (when only that ran).
    fn core(&self, call: &str) -> Option<&Row> {
        self.row(call, "dispute-core")
            .or_else(|| self.row(call, CORE_OFF))
    }

    fn pg(&self, name: &str, clients: u32) -> Option<&pgbench::Figure> {
        self.pgbench
            .iter()
            .find(|f| f.name == name && f.clients == clients)
    }

    pub fn print(&self, args: &Args) {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n## gRPC calls (1x1: one connection, one call at a time; peak: {} in flight over {} connections; half: half of peak offered at a fixed rate)\n",
            args.in_flight, args.connections
        );
        let _ = writeln!(
            out,
            "| call | server | phase | calls | calls/s | mean ms | p50 ms | p99 ms | p99/p50 | errors |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
        for row in &self.rows {
            for (name, phase) in [
                ("1x1".to_owned(), &row.single),
                (format!("{} in flight", args.in_flight), &row.peak),
                (
                    format!("half ({:.0}/s offered)", row.half_offered),
                    &row.half,
                ),
            ] {
                let (p50, p99) = (phase.percentile_ms(50.0), phase.percentile_ms(99.0));
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {}{} |",
                    row.call,
                    row.server,
                    name,
                    phase.calls,
                    phase.rate(),
                    phase.mean_ms(),
                    p50,
                    p99,
                    p99 / p50,
                    phase.errors,
                    phase
                        .first_error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                );
            }
        }
        if let Some(phase) = &self.list_documents_1x1 {
            let _ = writeln!(
                out,
                "| ListDocuments | document-store | 1x1 | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {} |",
                phase.calls,
                phase.rate(),
                phase.mean_ms(),
                phase.percentile_ms(50.0),
                phase.percentile_ms(99.0),
                phase.percentile_ms(99.0) / phase.percentile_ms(50.0),
                phase.errors
            );
        }
        if !self.pgbench.is_empty() {
            let _ = writeln!(out, "\n## pgbench (the same SQL, prepared statements)\n");
            let _ = writeln!(out, "| script | clients | tx/s | mean latency ms |");
            let _ = writeln!(out, "|---|---|---|---|");
            for f in &self.pgbench {
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.0} | {:.3} |",
                    f.name, f.clients, f.tps, f.latency_ms
                );
            }
        }
        let _ = writeln!(out, "\n## ratios\n");
        let peak_clients = args.pgbench_clients;
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "n/a".to_owned(),
        };
        for call in ["GetDispute", "ListDisputes"] {
            let core = self.core(call);
            let min = self.row(call, "minimal tonic");
            let _ = writeln!(
                out,
                "- P1 {call}: dispute-core / minimal tonic at peak = {} (target >= 0.7); at 1x1 = {}",
                ratio(core.map(|r| r.peak.rate()), min.map(|r| r.peak.rate())),
                ratio(core.map(|r| r.single.rate()), min.map(|r| r.single.rate())),
            );
        }
        for (call, script) in [
            ("GetDispute", "get_dispute"),
            ("ListDisputes", "list_disputes"),
            ("CreateAction", "create_action"),
            ("RecordNetworkEvent", "record_network_event"),
        ] {
            let core = self.core(call);
            let _ = writeln!(
                out,
                "- {call}: dispute-core / pgbench at peak ({peak_clients} pgbench clients) = {}; at 1x1 (1 client) = {}{}",
                ratio(
                    core.map(|r| r.peak.rate()),
                    self.pg(script, peak_clients).map(|f| f.tps)
                ),
                ratio(
                    core.map(|r| r.single.rate()),
                    self.pg(script, 1).map(|f| f.tps)
                ),
                if call == "CreateAction" {
                    " (P2: target >= 0.6 at peak)"
                } else {
                    ""
                }
            );
        }
        for row in &self.rows {
            let _ = writeln!(
                out,
                "- P3 {} on {}: p99/p50 at half of peak = {:.1} (target <= 10)",
                row.call,
                row.server,
                row.half.percentile_ms(99.0) / row.half.percentile_ms(50.0)
            );
        }
        self.print_observability_cost(&mut out, args);
        if let Some(row) = self.core("GetDispute") {
            let _ = writeln!(
                out,
                "- GetDispute 1x1 mean: {:.2} ms (target < 3 ms)",
                row.single.mean_ms()
            );
        }
        print!("{out}");
    }

    /// Deployed against off for each call measured both ways, and what the sink received.
    fn print_observability_cost(&self, out: &mut String, args: &Args) {
        let _ = writeln!(
            out,
            "\n## cost of observability (deployed: default log filter, access log, OTLP export; off: RUST_LOG=warn, no export)\n"
        );
        let _ = writeln!(
            out,
            "| call | peak calls/s deployed | peak calls/s off | cost at peak | 1x1 mean ms deployed | 1x1 mean ms off | cost at 1x1 |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        let mut deployed_calls = 0;
        for call in [
            "GetDispute",
            "ListDisputes",
            "CreateAction",
            "RecordNetworkEvent",
        ] {
            let deployed = self.row(call, "dispute-core");
            if let Some(row) = deployed {
                deployed_calls += row.single.calls + row.peak.calls + row.half.calls;
            }
            let (Some(deployed), Some(off)) = (deployed, self.row(call, CORE_OFF)) else {
                continue;
            };
            let (d, o) = (deployed.peak.rate(), off.peak.rate());
            let (dm, om) = (deployed.single.mean_ms(), off.single.mean_ms());
            let _ = writeln!(
                out,
                "| {call} | {d:.0} | {o:.0} | {:.1} % | {dm:.2} | {om:.2} | {:.1} % |",
                (1.0 - d / o) * 100.0,
                (dm / om - 1.0) * 100.0
            );
        }
        let _ = writeln!(
            out,
            "\ncost at peak = 1 - deployed/off calls/s at {} in flight (goal <= 15 %); at 1x1 = deployed/off mean latency - 1.",
            args.in_flight
        );
        if let Some((spans, batches, metrics)) = self.spans_exported {
            let _ = writeln!(
                out,
                "OTLP sink received {spans} spans in {batches} export requests and {metrics} metric export requests (deployed services, measured calls: {deployed_calls}, plus seeding and warm-up)."
            );
        }
    }
}
