//! Prints what the request guard costs on the worst requests next to what decoding them
//! costs: `cargo run --release -p disputes-proto --example guard_cost`. A figure, not a test.

use std::time::Instant;

use disputes_proto::disputes_v1 as pb;
use disputes_proto::guard::{MAX_REPEATED_ENTRIES, too_many_entries};
use prost::Message;

fn main() {
    let nul_types = pb::ListEventsRequest {
        types: vec!["\0".to_owned(); 4_000_000 / 3 - 100],
        ..Default::default()
    };
    let nul_metadata = pb::CreateDisputeRequest {
        metadata: (0..300_000)
            .map(|i| (format!("\0{i}"), String::new()))
            .collect(),
        ..Default::default()
    };
    let cases: [(&str, &str, Vec<u8>); 2] = [
        (
            "ListEvents types",
            "disputes.v1.ListEventsRequest",
            nul_types.encode_to_vec(),
        ),
        (
            "CreateDispute metadata",
            "disputes.v1.CreateDisputeRequest",
            nul_metadata.encode_to_vec(),
        ),
    ];
    println!("request                  bytes  guard ms  decode ms  refused field");
    for (label, message, bytes) in cases {
        let runs = 5;
        let started = Instant::now();
        let mut hit = None;
        for _ in 0..runs {
            hit = too_many_entries(message, &bytes, MAX_REPEATED_ENTRIES);
        }
        let guard_ms = started.elapsed().as_secs_f64() * 1000.0 / f64::from(runs);
        let started = Instant::now();
        for _ in 0..runs {
            let decoded = if message.ends_with("ListEventsRequest") {
                pb::ListEventsRequest::decode(bytes.as_slice()).map(|m| m.types.len())
            } else {
                pb::CreateDisputeRequest::decode(bytes.as_slice()).map(|m| m.metadata.len())
            };
            std::hint::black_box(decoded.ok());
        }
        let decode_ms = started.elapsed().as_secs_f64() * 1000.0 / f64::from(runs);
        println!(
            "{label:<22} {:>8} {guard_ms:>9.2} {decode_ms:>10.2}  {}",
            bytes.len(),
            hit.map_or_else(
                || "none".to_owned(),
                |h| format!("{} (over {})", h.field, h.limit)
            )
        );
    }
}
