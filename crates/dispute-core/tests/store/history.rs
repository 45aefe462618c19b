//! History and ledger rows, attached to their dispute.

use chrono::{DateTime, TimeDelta, Utc};
use dispute_core::domain::dispute::LATEST_HISTORY_ENTRIES;
use dispute_core::domain::{Actor, BalanceTransactionType, Dispute, DisputeFilter, Stage, Status};
use dispute_core::store::disputes::{find_dispute, list_disputes};
use dispute_core::store::history::{
    NewActionRecord, count_history, insert_action_record, list_history_page,
};
use sqlx::PgPool;

use super::{OTHER_TENANT, TENANT, ids, insert_plain, set_created_at};

#[sqlx::test(migrations = "./migrations")]
async fn history_and_ledger_attach_to_their_dispute_in_order(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    insert_plain(&mut conn, TENANT, "dsp_a").await;
    insert_plain(&mut conn, TENANT, "dsp_b").await;
    // the same dispute id in another tenant, with history of its own
    insert_plain(&mut conn, OTHER_TENANT, "dsp_a").await;

    let documents = vec!["doc_1".to_owned(), "doc_2".to_owned()];
    let records = [
        (TENANT, action("act_1", "dsp_a")),
        (
            TENANT,
            NewActionRecord {
                actor: Actor::Network,
                ..action("act_2", "dsp_b")
            },
        ),
        (
            TENANT,
            NewActionRecord {
                what: "evidence_submitted",
                message: "two documents",
                document_ids: &documents,
                status: Status::UnderReview,
                ..action("act_3", "dsp_a")
            },
        ),
        (
            OTHER_TENANT,
            NewActionRecord {
                actor: Actor::System,
                what: "closed",
                status: Status::Closed,
                amount: 0,
                ..action("act_4", "dsp_a")
            },
        ),
        (
            TENANT,
            NewActionRecord {
                actor: Actor::Network,
                what: "lost",
                stage: Stage::Chargeback,
                status: Status::Lost,
                amount: 400,
                ..action("act_5", "dsp_a")
            },
        ),
    ];
    for (tenant, record) in &records {
        insert_action_record(&mut conn, tenant, record)
            .await
            .unwrap();
    }
    // act_5 claims a time before act_3's: history follows the order entries were appended
    // in (each after the one before, under the dispute's lock), not their times or ids
    let act_1_time: DateTime<Utc> =
        sqlx::query_scalar("select created_at from dispute_actions where id = 'act_1'")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    set_created_at(
        &mut conn,
        "dispute_actions",
        "act_5",
        act_1_time + TimeDelta::microseconds(1),
    )
    .await;

    // balance transactions have no repository function yet
    for (tenant, id, dispute_id, kind, amount, description, age_secs) in [
        (
            TENANT,
            "txn_2",
            "dsp_a",
            "dispute_fee",
            -1_500_i64,
            "Dispute fee",
            60.0,
        ),
        (
            TENANT,
            "txn_1",
            "dsp_a",
            "withdrawal",
            -1_000,
            "Funds withdrawn",
            120.0,
        ),
        (
            TENANT,
            "txn_3",
            "dsp_b",
            "withdrawal",
            -1_000,
            "Funds withdrawn",
            30.0,
        ),
        (
            OTHER_TENANT,
            "txn_4",
            "dsp_a",
            "reinstatement",
            1_000,
            "Not ours",
            10.0,
        ),
    ] {
        sqlx::query(
            "insert into balance_transactions
                (tenant_id, id, dispute_id, type, amount, currency, description, created_at)
             values ($1, $2, $3, $4, $5, 'USD', $6, now() - make_interval(secs => $7))",
        )
        .bind(tenant)
        .bind(id)
        .bind(dispute_id)
        .bind(kind)
        .bind(amount)
        .bind(description)
        .bind(age_secs)
        .execute(&mut *conn)
        .await
        .unwrap();
    }

    let a = find_dispute(&mut conn, TENANT, "dsp_a")
        .await
        .unwrap()
        .unwrap();
    let history: Vec<_> = a
        .action_history
        .iter()
        .map(|r| {
            (
                r.id.as_str(),
                r.actor,
                r.what.as_str(),
                r.stage,
                r.status,
                r.amount,
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            (
                "act_1",
                Actor::Tenant,
                "created",
                Stage::Inquiry,
                Status::NeedsResponse,
                1_000
            ),
            (
                "act_3",
                Actor::Tenant,
                "evidence_submitted",
                Stage::Inquiry,
                Status::UnderReview,
                1_000
            ),
            (
                "act_5",
                Actor::Network,
                "lost",
                Stage::Chargeback,
                Status::Lost,
                400
            ),
        ]
    );
    assert_eq!(a.action_history_count, 3);
    assert_eq!(a.action_history[1].message, "two documents");
    assert_eq!(a.action_history[0].message, "");
    assert_eq!(a.action_history[1].document_ids, documents);
    assert!(a.action_history[0].document_ids.is_empty());
    let ledger: Vec<_> = a
        .balance_transactions
        .iter()
        .map(|t| {
            (
                t.id.as_str(),
                t.kind,
                t.amount,
                t.currency.as_str(),
                t.description.as_str(),
            )
        })
        .collect();
    assert_eq!(
        ledger,
        [
            (
                "txn_1",
                BalanceTransactionType::Withdrawal,
                -1_000,
                "USD",
                "Funds withdrawn"
            ),
            (
                "txn_2",
                BalanceTransactionType::DisputeFee,
                -1_500,
                "USD",
                "Dispute fee"
            ),
        ]
    );

    // listing attaches the same, each to its own dispute
    let listed = list_disputes(&mut conn, TENANT, &DisputeFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(ids(&listed), ["dsp_b", "dsp_a"]);
    assert_eq!(listed[1], a);
    let b = &listed[0];
    assert_eq!(ids_of_history(b), ["act_2"]);
    assert_eq!(b.action_history[0].actor, Actor::Network);
    assert_eq!(
        b.balance_transactions
            .iter()
            .map(|t| t.id.as_str())
            .collect::<Vec<_>>(),
        ["txn_3"]
    );

    let theirs = find_dispute(&mut conn, OTHER_TENANT, "dsp_a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids_of_history(&theirs), ["act_4"]);
    assert_eq!(theirs.balance_transactions.len(), 1);
    assert_eq!(
        theirs.balance_transactions[0].kind,
        BalanceTransactionType::Reinstatement
    );
}

/// A tenant's "created" record; tests override the rest.
fn action<'a>(id: &'a str, dispute_id: &'a str) -> NewActionRecord<'a> {
    NewActionRecord {
        id,
        dispute_id,
        actor: Actor::Tenant,
        what: "created",
        message: "",
        document_ids: &[],
        stage: Stage::Inquiry,
        status: Status::NeedsResponse,
        amount: 1_000,
    }
}

fn ids_of_history(dispute: &Dispute) -> Vec<&str> {
    dispute
        .action_history
        .iter()
        .map(|r| r.id.as_str())
        .collect()
}

#[sqlx::test(migrations = "./migrations")]
async fn an_action_record_needs_its_dispute_in_the_same_tenant(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    insert_plain(&mut conn, TENANT, "dsp_a").await;
    assert!(
        insert_action_record(&mut conn, OTHER_TENANT, &action("act_1", "dsp_a"))
            .await
            .is_err()
    );
    assert!(
        insert_action_record(&mut conn, TENANT, &action("act_1", "dsp_missing"))
            .await
            .is_err()
    );
    insert_action_record(&mut conn, TENANT, &action("act_1", "dsp_a"))
        .await
        .unwrap();
    let a = find_dispute(&mut conn, TENANT, "dsp_a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ids_of_history(&a), ["act_1"]);
}

/// A dispute carries only its newest entries and the history's length; the whole history is
/// read a page at a time, oldest first, each page after the last entry of the one before.
#[sqlx::test(migrations = "./migrations")]
async fn the_latest_entries_are_attached_and_the_rest_paged(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    insert_plain(&mut conn, TENANT, "dsp_a").await;
    insert_plain(&mut conn, TENANT, "dsp_b").await;
    insert_plain(&mut conn, OTHER_TENANT, "dsp_a").await;
    let ids: Vec<String> = (1..=45).map(|n| format!("act_{n:02}")).collect();
    for id in &ids {
        insert_action_record(&mut conn, TENANT, &action(id, "dsp_a"))
            .await
            .unwrap();
    }
    insert_action_record(&mut conn, TENANT, &action("act_b", "dsp_b"))
        .await
        .unwrap();

    let a = find_dispute(&mut conn, TENANT, "dsp_a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.action_history_count, 45);
    assert_eq!(LATEST_HISTORY_ENTRIES, 20);
    assert_eq!(
        ids_of_history(&a),
        ids[25..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    let listed = list_disputes(&mut conn, TENANT, &DisputeFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(listed[1], a);
    assert_eq!(
        (ids_of_history(&listed[0]), listed[0].action_history_count),
        (vec!["act_b"], 1)
    );

    assert_eq!(
        count_history(&mut conn, TENANT, "dsp_a").await.unwrap(),
        Some(45)
    );
    assert_eq!(
        count_history(&mut conn, OTHER_TENANT, "dsp_a")
            .await
            .unwrap(),
        Some(0)
    );
    assert_eq!(
        count_history(&mut conn, OTHER_TENANT, "dsp_b")
            .await
            .unwrap(),
        None
    );

    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = list_history_page(&mut conn, TENANT, "dsp_a", after.as_deref(), 7)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id.clone());
        paged.extend(page.into_iter().map(|r| r.id));
    }
    assert_eq!(paged, ids);
    // another tenant's cursor, or an entry of another dispute, finds nothing
    assert!(
        list_history_page(&mut conn, OTHER_TENANT, "dsp_a", None, 7)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        list_history_page(&mut conn, TENANT, "dsp_a", Some("act_b"), 7)
            .await
            .unwrap()
            .is_empty()
    );
}
