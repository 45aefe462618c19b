//! The test stack itself: however a test ends, it leaves none of its databases behind.

use std::sync::mpsc;

use crate::fixtures::*;

/// Starts a stack, checks that its databases exist, reports their names and panics, like a
/// test failing half-way with its stack still up.
async fn start_then_panic(names: mpsc::Sender<Vec<String>>) {
    let stack = stack().await;
    let databases: Vec<String> = stack.database_names().map(str::to_owned).to_vec();
    for database in &databases {
        assert!(exists(database).await, "{database} was created");
    }
    names.send(databases).unwrap();
    panic!("a failing test, its stack still up");
}

async fn exists(database: &str) -> bool {
    harness::database_exists(&harness::admin_database_url(), database)
        .await
        .unwrap()
}

async fn assert_dropped(databases: &[String]) {
    assert_eq!(databases.len(), 2);
    for database in databases {
        assert!(!exists(database).await, "{database} was left behind");
    }
}

/// A panic in a multi-thread runtime (`#[tokio::test(flavor = "multi_thread")]`, a spawned
/// task): the stack is dropped on a runtime worker while the panic unwinds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_a_multi_thread_runtime_drops_the_databases() {
    let (names, reported) = mpsc::channel();
    let outcome = tokio::spawn(start_then_panic(names)).await;
    assert!(outcome.is_err_and(|e| e.is_panic()));
    assert_dropped(&reported.recv().unwrap()).await;
}

/// A panic in a current-thread runtime (plain `#[tokio::test]`): the stack is dropped while
/// the panic unwinds out of `block_on`, with the runtime still entered on that thread.
#[test]
fn a_panic_in_a_current_thread_runtime_drops_the_databases() {
    let (names, reported) = mpsc::channel();
    let outcome = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(start_then_panic(names));
    })
    .join();
    assert!(outcome.is_err(), "the test thread panicked");
    let databases = reported.recv().unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(assert_dropped(&databases));
}

/// `stop` drops the databases itself; the drop that follows finds nothing left to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_drops_the_databases() {
    let stack = stack().await;
    let databases: Vec<String> = stack.database_names().map(str::to_owned).to_vec();
    stack.stop().await;
    assert_dropped(&databases).await;
}

/// Databases the stack was given (the local stack's) outlive it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_databases_are_kept() {
    let admin_url = harness::admin_database_url();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let given = vec![
        format!("e2e_given_disputes_{suffix}"),
        format!("e2e_given_documents_{suffix}"),
    ];
    let stack = stack_with(harness::StackOptions {
        databases: Some((given[0].clone(), given[1].clone())),
        ..Default::default()
    })
    .await;
    drop(stack);
    for database in &given {
        assert!(exists(database).await, "{database} was kept");
    }
    harness::drop_databases_blocking(&admin_url, &given).unwrap();
    assert_dropped(&given).await;
}
