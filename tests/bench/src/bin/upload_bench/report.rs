//! The printed figures.

use clap::ValueEnum;

use crate::load::{LoadReport, Outcome};
use harness::process::Observability;

use crate::{Args, Sample, SizeResult};

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

pub fn print_report(args: &Args, results: &[SizeResult], spans: (u64, u64)) {
    let checksum_mode = args
        .checksum_mode
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default();
    let mib_per_s = |size_mib: u64, samples: &[Sample]| {
        median(
            samples
                .iter()
                .map(|s| size_mib as f64 / s.seconds)
                .collect(),
        )
    };
    let kib_to_mib = |kib: Option<u64>| kib.unwrap_or(0) as f64 / 1024.0;

    println!();
    println!(
        "upload-bench: part size {} MiB, {} parts in flight, checksum mode {checksum_mode}, {} run(s) per size",
        args.part_size_mib, args.parts_in_flight, args.runs
    );
    println!(
        "throughput, CPU and RSS p50 are medians of the runs; VmHWM is the largest of the runs"
    );
    println!(
        "{:>9} {:>9} {:>13} {:>13} {:>6} {:>11} {:>11} {:>11} {:>12} {:>16}",
        "size",
        "obs",
        "docstore",
        "direct",
        "ratio",
        "VmHWM",
        "RSS p50",
        "idle RSS",
        "docstore CPU",
        "bench CPU ds/dir"
    );
    // The headline figures are those of the first mode (deployed, unless only off ran).
    let mut headline_ratio = None;
    let mut peaks = Vec::new();
    let mut costs = Vec::new();
    for result in results {
        let size_mib = result.size_mib;
        let direct = &result.direct;
        let direct_mibs = mib_per_s(size_mib, direct);
        let mut by_mode = Vec::new();
        for (index, (mode, through)) in result.through.iter().enumerate() {
            let through_mibs = mib_per_s(size_mib, through);
            let ratio = through_mibs / direct_mibs;
            let peak_mib = kib_to_mib(through.iter().filter_map(|s| s.peak_rss_kib).max());
            let steady_mib = median(
                through
                    .iter()
                    .map(|s| kib_to_mib(s.median_rss_kib))
                    .collect(),
            );
            let idle_mib = kib_to_mib(through.iter().filter_map(|s| s.idle_rss_kib).max());
            // Cores busy during the upload: 1.0 is one core flat out.
            let child_cores = median(
                through
                    .iter()
                    .filter_map(|s| s.child_cpu.map(|c| c / s.seconds))
                    .collect(),
            );
            let bench_cores = median(through.iter().map(|s| s.bench_cpu / s.seconds).collect());
            let direct_cores = median(direct.iter().map(|s| s.bench_cpu / s.seconds).collect());
            println!(
                "{size_mib:>5} MiB {:>9} {through_mibs:>7.0} MiB/s {direct_mibs:>7.0} MiB/s {ratio:>6.2} {peak_mib:>7.1} MiB {steady_mib:>7.1} MiB {idle_mib:>7.1} MiB {child_cores:>6.2} cores {bench_cores:>5.2}/{direct_cores:.2} cores",
                mode.name()
            );
            if index == 0 {
                if size_mib == 1024 {
                    headline_ratio = Some(ratio);
                }
                peaks.push((size_mib, peak_mib));
            }
            by_mode.push((*mode, through_mibs, peak_mib));
        }
        if let (Some(deployed), Some(off)) = (
            by_mode.iter().find(|m| m.0 == Observability::Deployed),
            by_mode.iter().find(|m| m.0 == Observability::Off),
        ) {
            costs.push((size_mib, deployed.1, off.1, deployed.2, off.2));
        }
    }
    println!(
        "(bench CPU = this process, i.e. client + s3s-fs server, during the document-store / the direct upload)"
    );
    println!();
    match headline_ratio {
        Some(ratio) => println!("ratio_1gib={ratio:.2} (goal >= 0.90)"),
        None => println!("ratio_1gib=n/a (1024 MiB not among --sizes-mib)"),
    }
    let peak_line: Vec<String> = peaks
        .iter()
        .map(|(size, peak)| {
            let name = if size % 1024 == 0 {
                format!("{}gib", size / 1024)
            } else {
                format!("{size}mib")
            };
            format!("peak_rss_{name}={peak:.1}MiB")
        })
        .collect();
    println!("{}", peak_line.join(" "));
    for (size_mib, deployed, off, deployed_peak, off_peak) in costs {
        println!(
            "observability cost at {size_mib} MiB: {deployed:.0} MiB/s deployed, {off:.0} MiB/s off = {:.1} % (goal <= 15 %); VmHWM {deployed_peak:.1} / {off_peak:.1} MiB",
            (1.0 - deployed / off) * 100.0
        );
    }
    println!(
        "OTLP sink received {} spans in {} export requests",
        spans.0, spans.1
    );
}

pub fn print_load_report(args: &Args, report: &LoadReport) {
    let stored: Vec<u32> = report
        .outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Stored { attempts } => Some(*attempts),
            _ => None,
        })
        .collect();
    let shed = report
        .outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Shed))
        .count();
    let failed: Vec<&String> = report
        .outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Failed(why) => Some(why),
            _ => None,
        })
        .collect();
    let kib_to_mib = |kib: u64| kib as f64 / 1024.0;
    println!();
    println!(
        "upload-bench --load: document-store at default settings; {} concurrent {} MiB uploads (one connection each, {} retr{} after RetryInfo) while one {} B upload is sent in 1-byte chunks",
        args.load_uploads,
        args.load_size_mib,
        args.load_retries,
        if args.load_retries == 1 { "y" } else { "ies" },
        args.one_byte_chunks_bytes
    );
    println!(
        "stored={} shed={} failed={} shed_answers={} shed_without_retry_info={}",
        stored.len(),
        shed,
        failed.len(),
        report.shed_answers,
        report.shed_without_retry_info
    );
    if let Some(max_attempts) = stored.iter().max() {
        println!("most attempts for a stored upload: {max_attempts}");
    }
    for why in failed.iter().take(5) {
        println!("failed: {why}");
    }
    match &report.one_byte {
        Ok(seconds) => println!(
            "one_byte_chunks=stored ({} B, size and sha256 verified) in {seconds:.1} s",
            args.one_byte_chunks_bytes
        ),
        Err(error) => println!("one_byte_chunks=FAILED: {error}"),
    }
    println!(
        "peak_rss_vmhwm={:.1}MiB idle_rss={:.1}MiB rss_p50={:.1}MiB wall={:.1}s",
        kib_to_mib(report.peak_rss_kib),
        kib_to_mib(report.idle_rss_kib),
        kib_to_mib(report.median_rss_kib.unwrap_or(0)),
        report.seconds
    );
}
