//! The printed figures and ratios.

use std::fmt::Write as _;

use crate::phases::{Phase, Row};
use crate::{Args, pgbench};

#[derive(Default)]
pub struct Report {
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
            let core = self.row(call, "dispute-core");
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
            let core = self.row(call, "dispute-core");
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
        if let Some(row) = self.row("GetDispute", "dispute-core") {
            let _ = writeln!(
                out,
                "- GetDispute 1x1 mean: {:.2} ms (target < 3 ms)",
                row.single.mean_ms()
            );
        }
        print!("{out}");
    }
}
