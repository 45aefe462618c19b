//! The printed figures: each size's calls, replay, sizes per dispute and purge, then the
//! large/small ratios against the goals (throughput at least 0.8×, p99 at most 1.25×).

use crate::load::Phase;
use crate::seed::Size;
use crate::{Args, Purge};

pub struct Sizes {
    pub disputes: u64,
    /// (table, table bytes, index bytes)
    pub tables: Vec<(String, i64, i64)>,
    /// Both databases.
    pub database_bytes: i64,
}

pub struct Measured {
    pub label: &'static str,
    pub size: Size,
    pub seed_seconds: f64,
    pub reused: bool,
    pub rows: Vec<(String, Phase)>,
    /// (streams, events, seconds)
    pub replay: Vec<(usize, u64, f64)>,
    pub sizes: Sizes,
    pub purge: Purge,
}

fn mib(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub fn print_size(m: &Measured) {
    let size = m.size;
    println!(
        "\n== {}: {} disputes across {} tenants, {} events ({} per dispute, {} days) ==",
        m.label,
        size.disputes,
        size.tenants,
        size.events(),
        size.events_per_dispute,
        size.days
    );
    println!(
        "seeded in {:.1} s{}; both databases {:.1} MiB",
        m.seed_seconds,
        if m.reused {
            " (an earlier run; reused)"
        } else {
            ""
        },
        mib(m.sizes.database_bytes)
    );
    println!(
        "{:<32} {:>7} {:>6} {:>9} {:>8} {:>8}",
        "call", "calls", "errors", "calls/s", "p50 ms", "p99 ms"
    );
    for (name, phase) in &m.rows {
        println!(
            "{:<32} {:>7} {:>6} {:>9.0} {:>8.2} {:>8.2}",
            name,
            phase.calls,
            phase.errors,
            phase.rate(),
            phase.p(50.0),
            phase.p(99.0)
        );
        if let Some(error) = &phase.first_error {
            println!("    first error: {error}");
        }
    }
    for (streams, events, seconds) in &m.replay {
        println!(
            "StreamEvents replay, {streams} stream(s): {events} events in {seconds:.2} s = {:.0} events/s",
            *events as f64 / seconds
        );
    }
    println!(
        "{:<22} {:>12} {:>12} {:>14} {:>14}",
        "table", "table MiB", "index MiB", "table B/disp.", "index B/disp."
    );
    let per = |bytes: i64| bytes as f64 / m.sizes.disputes as f64;
    let (mut table_total, mut index_total) = (0, 0);
    for (name, table, indexes) in &m.sizes.tables {
        println!(
            "{:<22} {:>12.1} {:>12.1} {:>14.0} {:>14.0}",
            name,
            mib(*table),
            mib(*indexes),
            per(*table),
            per(*indexes)
        );
        table_total += table;
        index_total += indexes;
    }
    println!(
        "{:<22} {:>12.1} {:>12.1} {:>14.0} {:>14.0}",
        "total",
        mib(table_total),
        mib(index_total),
        per(table_total),
        per(index_total)
    );
    println!(
        "retention purge of the oldest day: {} events in {} batches, {:.2} s ({:.0} events/s)",
        m.purge.events,
        m.purge.batches,
        m.purge.seconds,
        m.purge.events as f64 / m.purge.seconds
    );
}

pub fn print_ratios(args: &Args, small: &Measured, large: &Measured) {
    println!(
        "\n== large / small ({} / {} disputes; {} calls each, {} in flight) ==",
        large.size.disputes, small.size.disputes, args.calls, args.concurrency
    );
    println!(
        "{:<32} {:>12} {:>10} {:>10}",
        "call", "throughput", "p99", "goals"
    );
    for ((name, s), (_, l)) in small.rows.iter().zip(&large.rows) {
        let throughput = l.rate() / s.rate();
        let p99 = l.p(99.0) / s.p(99.0);
        let met = throughput >= 0.8 && p99 <= 1.25;
        println!(
            "{:<32} {:>11.2}x {:>9.2}x {:>10}",
            name,
            throughput,
            p99,
            if met { "met" } else { "missed" }
        );
    }
    for ((streams, se, ss), (_, le, ls)) in small.replay.iter().zip(&large.replay) {
        let ratio = (*le as f64 / ls) / (*se as f64 / ss);
        println!(
            "{:<32} {:>11.2}x {:>10} {:>10}",
            format!("StreamEvents replay x{streams}"),
            ratio,
            "",
            if ratio >= 0.8 { "met" } else { "missed" }
        );
    }
    if args.quick {
        println!("(quick mode: tiny sizes and a debug build; these figures are not measurements)");
    }
}
