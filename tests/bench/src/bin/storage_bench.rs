//! Storage per dispute (issue 23): runs the real stack, takes merchant disputes through a
//! full lifecycle with 150,000 characters of incompressible evidence and ten changes
//! (harness::storage), and prints the bytes their rows take per table and the total as a
//! multiple of the evidence. Prints figures, asserts nothing.

use clap::Parser;
use harness::storage::{EVIDENCE_CHARS, dispute_bytes, merchant_lifecycle};
use harness::{Stack, StackOptions};

#[derive(Debug, Parser)]
#[command(about = "Bytes stored per dispute for a full merchant lifecycle")]
struct Args {
    /// Disputes taken through the lifecycle (the figures are per dispute, averaged).
    #[arg(long, default_value_t = 3)]
    disputes: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let stack = Stack::start(StackOptions::default()).await?;
    let result = run(&stack, &args).await;
    stack.stop().await;
    result
}

async fn run(stack: &Stack, args: &Args) -> anyhow::Result<()> {
    let tenant = "bench";
    let mut client = stack.disputes_of(tenant).await;
    let pool = sqlx::PgPool::connect(&stack.dispute_db_url).await?;
    let disputes = args.disputes.max(1);
    let mut per_table: Vec<(&'static str, i64, i64)> = Vec::new();
    for n in 0..disputes {
        let lifecycle = merchant_lifecycle(&mut client, &format!("VISA-BENCH-{n}"), n).await?;
        let sizes = dispute_bytes(
            &pool,
            tenant,
            &lifecycle.dispute_id,
            &lifecycle.request_ids(),
        )
        .await?;
        for size in sizes {
            match per_table
                .iter_mut()
                .find(|(table, _, _)| *table == size.table)
            {
                Some(entry) => {
                    entry.1 += size.rows;
                    entry.2 += size.bytes;
                }
                None => per_table.push((size.table, size.rows, size.bytes)),
            }
        }
    }
    pool.close().await;
    let evidence = EVIDENCE_CHARS as f64;
    let count = disputes as i64;
    println!(
        "storage per dispute: merchant lifecycle, {EVIDENCE_CHARS} characters of incompressible \
         evidence, 10 changes ({disputes} disputes averaged)"
    );
    println!(
        "{:<22} {:>6} {:>12} {:>10}",
        "table", "rows", "bytes", "x evidence"
    );
    let mut total = 0;
    for (table, rows, bytes) in &per_table {
        let bytes = bytes / count;
        total += bytes;
        println!(
            "{table:<22} {:>6} {bytes:>12} {:>10.2}",
            rows / count,
            bytes as f64 / evidence
        );
    }
    println!(
        "{:<22} {:>6} {total:>12} {:>10.2}",
        "total",
        "",
        total as f64 / evidence
    );
    Ok(())
}
