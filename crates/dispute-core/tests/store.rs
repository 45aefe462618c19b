//! Store tests for the dispute repository against real PostgreSQL: every test gets a fresh
//! database with the migrations applied (`#[sqlx::test]`, `DATABASE_URL` at run time).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, SubsecRound, TimeDelta, Utc};
use dispute_core::domain::{
    Actor, BalanceTransactionType, CreditStatus, Dispute, DisputeError, DisputeFilter, EnumInput,
    Network, NewDispute, NewDisputeDraft, PaymentMethodType, Reason, Regulation, Side, Stage,
    Status,
};
use dispute_core::store::disputes::{find_dispute, insert_dispute, list_disputes};
use dispute_core::store::history::{NewActionRecord, insert_action_record};
use dispute_core::store::idempotency::{
    IdempotencyClaim, claim_idempotency_key, purge_idempotency_keys, save_idempotent_response,
};
use service_kit::page_token::PageCursor;
use service_kit::testing::wait_until_a_session_blocks;
use sqlx::{PgConnection, PgPool};

const TENANT: &str = "ten_alpha";
const OTHER_TENANT: &str = "ten_beta";

/// A valid merchant-side draft; tests override what they care about.
fn merchant_draft() -> NewDisputeDraft {
    NewDisputeDraft {
        side: Some(EnumInput::Known(Side::Merchant)),
        amount: 1_000,
        currency: "usd".into(),
        network: Some(EnumInput::Known(Network::Visa)),
        reason: Some(EnumInput::Known(Reason::Fraudulent)),
        ..Default::default()
    }
}

fn parse(draft: NewDisputeDraft) -> NewDispute {
    NewDispute::parse(draft, Utc::now()).unwrap()
}

/// Inserts a minimal merchant dispute with `id`.
async fn insert_plain(conn: &mut PgConnection, tenant_id: &str, id: &str) {
    insert_dispute(conn, tenant_id, id, &parse(merchant_draft()))
        .await
        .unwrap();
}

fn ids(disputes: &[Dispute]) -> Vec<&str> {
    disputes.iter().map(|d| d.id.as_str()).collect()
}

fn cursor_after(dispute: &Dispute) -> PageCursor {
    PageCursor {
        create_time: dispute.create_time,
        id: dispute.id.clone(),
    }
}

/// Every dispute the filter selects, fetched a page of `page_size` at a time.
async fn list_all_pages(
    conn: &mut PgConnection,
    tenant_id: &str,
    filter: &DisputeFilter,
    page_size: i64,
) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut after: Option<PageCursor> = None;
    loop {
        let page = list_disputes(conn, tenant_id, filter, after.as_ref(), page_size)
            .await
            .unwrap();
        assert!(page.len() as i64 <= page_size, "a page exceeds its limit");
        let Some(last) = page.last() else { break };
        after = Some(cursor_after(last));
        pages.push(page.iter().map(|d| d.id.clone()).collect());
    }
    pages
}

async fn filtered(conn: &mut PgConnection, filter: DisputeFilter) -> Vec<String> {
    list_disputes(conn, TENANT, &filter, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect()
}

/// The fingerprint and response of a `Used` claim, or `None` for a `New` one.
type Replay = Option<(String, Vec<u8>)>;

fn used(claim: IdempotencyClaim) -> Replay {
    match claim {
        IdempotencyClaim::New => None,
        IdempotencyClaim::Used {
            request_fingerprint,
            response,
        } => Some((request_fingerprint, response)),
    }
}

async fn set_created_at(conn: &mut PgConnection, table: &str, id: &str, at: DateTime<Utc>) {
    sqlx::query(&format!("update {table} set created_at = $2 where id = $1"))
        .bind(id)
        .bind(at)
        .execute(&mut *conn)
        .await
        .unwrap();
}

#[sqlx::test(migrations = "./migrations")]
async fn insert_then_find_returns_every_field(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let due = (Utc::now() + TimeDelta::days(10)).trunc_subsecs(6);
    let metadata = BTreeMap::from([
        ("order_id".to_owned(), "ord_42".to_owned()),
        ("note".to_owned(), "ünïcode ✓".to_owned()),
    ]);
    let new = parse(NewDisputeDraft {
        side: Some(EnumInput::Known(Side::Issuer)),
        stage: Some(EnumInput::Known(Stage::Inquiry)),
        amount: 12_345,
        currency: "eur".into(),
        charge: "ch_1".into(),
        payment_intent: "pi_1".into(),
        transaction_id: "txn_ext_1".into(),
        merchant_id: "mer_1".into(),
        network: Some(EnumInput::Known(Network::Mastercard)),
        payment_method_type: Some(EnumInput::Known(PaymentMethodType::BankAccount)),
        reason: Some(EnumInput::Known(Reason::ProductNotReceived)),
        network_reason_code: "4855".into(),
        network_case_id: "mc-case-1".into(),
        memo: "line one\nline two".into(),
        date_customer_reported: "2025-01-15".into(),
        applicable_regulation: Some(EnumInput::Known(Regulation::RegulationE)),
        metadata: metadata.clone(),
        livemode: true,
        original_amount: 20_000,
        is_charge_refundable: true,
        due_time: Some(due),
        issuer_facts: Some(dispute_core::domain::dispute::IssuerFactsDraft {
            transaction_date: "2025-01-10".into(),
            new_account: true,
            billing_cycle_closing_day: 12,
            ..Default::default()
        }),
    });
    let before: DateTime<Utc> = sqlx::query_scalar("select now()")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    insert_dispute(&mut conn, TENANT, "dsp_full", &new)
        .await
        .unwrap();
    let after: DateTime<Utc> = sqlx::query_scalar("select now()")
        .fetch_one(&mut *conn)
        .await
        .unwrap();

    let found = find_dispute(&mut conn, TENANT, "dsp_full")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, "dsp_full");
    assert_eq!(found.issuer, new.issuer, "issuer facts round-trip");
    assert_eq!(found.issuer.billing_cycle_closing_day, Some(12));
    assert_eq!(found.tenant_id, TENANT);
    assert_eq!(found.version, 1);
    assert_eq!(found.side, Side::Issuer);
    assert_eq!(found.stage, Stage::Inquiry);
    assert_eq!(found.status, Status::NeedsResponse);
    assert_eq!(found.amount, 12_345);
    assert_eq!(found.currency, "EUR");
    assert_eq!(found.charge.as_deref(), Some("ch_1"));
    assert_eq!(found.payment_intent.as_deref(), Some("pi_1"));
    assert_eq!(found.transaction_id.as_deref(), Some("txn_ext_1"));
    assert_eq!(found.merchant_id.as_deref(), Some("mer_1"));
    assert_eq!(found.network, Network::Mastercard);
    assert_eq!(found.payment_method_type, PaymentMethodType::BankAccount);
    assert_eq!(found.reason, Reason::ProductNotReceived);
    assert_eq!(found.network_reason_code.as_deref(), Some("4855"));
    assert_eq!(found.network_case_id.as_deref(), Some("mc-case-1"));
    assert_eq!(found.memo.as_deref(), Some("line one\nline two"));
    assert_eq!(
        found.date_customer_reported,
        NaiveDate::from_ymd_opt(2025, 1, 15)
    );
    assert_eq!(found.applicable_regulation, Regulation::RegulationE);
    assert_eq!(found.credit_status, CreditStatus::None);
    assert_eq!(found.due_time, Some(due));
    assert_eq!(found.metadata, metadata);
    assert!(found.livemode);
    assert_eq!(found.original_amount, Some(20_000));
    assert!(found.is_charge_refundable);
    // defaults of a new dispute
    assert!(found.evidence.is_empty());
    assert!(!found.has_evidence);
    assert_eq!(found.submission_count, 0);
    assert_eq!(found.amount_won, 0);
    assert_eq!(found.amount_lost, 0);
    assert!(found.action_history.is_empty());
    assert!(found.balance_transactions.is_empty());
    assert!(
        before <= found.create_time && found.create_time <= after,
        "create_time {} not within the insert ({before} .. {after})",
        found.create_time
    );
    assert_eq!(found.update_time, found.create_time);
}

#[sqlx::test(migrations = "./migrations")]
async fn optional_fields_are_stored_as_absent(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    insert_plain(&mut conn, TENANT, "dsp_min").await;
    let found = find_dispute(&mut conn, TENANT, "dsp_min")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.side, Side::Merchant);
    assert_eq!(found.currency, "USD");
    assert_eq!(found.payment_method_type, PaymentMethodType::Card);
    assert_eq!(found.applicable_regulation, Regulation::None);
    assert_eq!(found.charge, None);
    assert_eq!(found.payment_intent, None);
    assert_eq!(found.transaction_id, None);
    assert_eq!(found.merchant_id, None);
    assert_eq!(found.network_reason_code, None);
    assert_eq!(found.network_case_id, None);
    assert_eq!(found.memo, None);
    assert_eq!(found.date_customer_reported, None);
    assert_eq!(found.due_time, None);
    assert_eq!(found.original_amount, None);
    assert!(found.metadata.is_empty());
    assert!(!found.livemode);
    assert!(!found.is_charge_refundable);

    // stored as SQL NULL, not as empty strings
    let nulls: i64 = sqlx::query_scalar(
        "select count(*) from disputes
          where id = 'dsp_min' and charge is null and memo is null and network_case_id is null
            and original_amount is null and date_customer_reported is null",
    )
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!(nulls, 1);
}

#[sqlx::test(migrations = "./migrations")]
async fn columns_set_after_insert_read_back(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    insert_plain(&mut conn, TENANT, "dsp_1").await;
    let created = find_dispute(&mut conn, TENANT, "dsp_1")
        .await
        .unwrap()
        .unwrap();
    sqlx::query(
        r#"update disputes
              set version = version + 1, status = 'lost', stage = 'chargeback',
                  credit_status = 'provisional', has_evidence = true, submission_count = 2,
                  evidence = '{"customer_name": "Jane Doe", "receipt": "doc_1"}',
                  amount_won = 300, amount_lost = 700
            where tenant_id = $1 and id = 'dsp_1'"#,
    )
    .bind(TENANT)
    .execute(&mut *conn)
    .await
    .unwrap();

    let found = find_dispute(&mut conn, TENANT, "dsp_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.version, 2);
    assert_eq!(found.status, Status::Lost);
    assert_eq!(found.stage, Stage::Chargeback);
    assert_eq!(found.credit_status, CreditStatus::Provisional);
    assert!(found.has_evidence);
    assert_eq!(found.submission_count, 2);
    assert_eq!(
        found.evidence,
        BTreeMap::from([
            ("customer_name".to_owned(), "Jane Doe".to_owned()),
            ("receipt".to_owned(), "doc_1".to_owned()),
        ])
    );
    assert_eq!((found.amount_won, found.amount_lost), (300, 700));
    assert_eq!(found.create_time, created.create_time);
    assert!(
        found.update_time > created.update_time,
        "the trigger moves update_time"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn an_unreadable_stored_enum_is_an_error(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    insert_plain(&mut conn, TENANT, "dsp_1").await;
    sqlx::query("update disputes set status = 'bogus' where id = 'dsp_1'")
        .execute(&mut *conn)
        .await
        .unwrap();
    let error = find_dispute(&mut conn, TENANT, "dsp_1").await.unwrap_err();
    assert!(
        format!("{error:#}").contains("unreadable status \"bogus\""),
        "{error:#}"
    );
    assert!(
        list_disputes(&mut conn, TENANT, &DisputeFilter::default(), None, 10)
            .await
            .is_err()
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn find_is_scoped_to_the_tenant(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    insert_plain(&mut conn, TENANT, "dsp_1").await;

    assert!(
        find_dispute(&mut conn, OTHER_TENANT, "dsp_1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        find_dispute(&mut conn, TENANT, "dsp_unknown")
            .await
            .unwrap()
            .is_none()
    );

    // the same id in another tenant is another dispute
    let other = parse(NewDisputeDraft {
        amount: 777,
        ..merchant_draft()
    });
    insert_dispute(&mut conn, OTHER_TENANT, "dsp_1", &other)
        .await
        .unwrap();
    let mine = find_dispute(&mut conn, TENANT, "dsp_1")
        .await
        .unwrap()
        .unwrap();
    let theirs = find_dispute(&mut conn, OTHER_TENANT, "dsp_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((mine.tenant_id.as_str(), mine.amount), (TENANT, 1_000));
    assert_eq!(
        (theirs.tenant_id.as_str(), theirs.amount),
        (OTHER_TENANT, 777)
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn a_network_case_opens_one_dispute_per_tenant_and_network(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let case = |network: Network| {
        parse(NewDisputeDraft {
            network: Some(EnumInput::Known(network)),
            network_case_id: "case-7".into(),
            ..merchant_draft()
        })
    };
    insert_dispute(&mut conn, TENANT, "dsp_1", &case(Network::Visa))
        .await
        .unwrap();

    match insert_dispute(&mut conn, TENANT, "dsp_2", &case(Network::Visa)).await {
        Err(DisputeError::AlreadyExists { what }) => {
            assert!(what.contains("visa"), "{what}");
            assert!(what.contains("case-7"), "{what}");
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert!(
        find_dispute(&mut conn, TENANT, "dsp_2")
            .await
            .unwrap()
            .is_none()
    );

    // another tenant, or another network, may use the same case id
    insert_dispute(&mut conn, OTHER_TENANT, "dsp_3", &case(Network::Visa))
        .await
        .unwrap();
    insert_dispute(&mut conn, TENANT, "dsp_4", &case(Network::Mastercard))
        .await
        .unwrap();
    // disputes without a case id never collide
    insert_plain(&mut conn, TENANT, "dsp_5").await;
    insert_plain(&mut conn, TENANT, "dsp_6").await;

    let count: i64 = sqlx::query_scalar("select count(*) from disputes")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert_eq!(count, 5);
}

#[sqlx::test(migrations = "./migrations")]
async fn list_pages_newest_first_without_gaps_or_duplicates(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    // Separate statements get increasing creation times; the three in one transaction share
    // theirs, so the id breaks the tie. Ids grow in insertion order.
    for id in ["dsp_s01", "dsp_s02", "dsp_s03", "dsp_s04"] {
        insert_plain(&mut conn, TENANT, id).await;
        insert_plain(&mut conn, OTHER_TENANT, id).await;
    }
    let mut tx = pool.begin().await.unwrap();
    for id in ["dsp_t1", "dsp_t2", "dsp_t3"] {
        insert_plain(&mut tx, TENANT, id).await;
    }
    tx.commit().await.unwrap();
    for id in ["dsp_u05", "dsp_u06", "dsp_u07"] {
        insert_plain(&mut conn, TENANT, id).await;
        insert_plain(&mut conn, OTHER_TENANT, id).await;
    }

    let newest_first = [
        "dsp_u07", "dsp_u06", "dsp_u05", "dsp_t3", "dsp_t2", "dsp_t1", "dsp_s04", "dsp_s03",
        "dsp_s02", "dsp_s01",
    ];
    let all = list_disputes(&mut conn, TENANT, &DisputeFilter::default(), None, 100)
        .await
        .unwrap();
    assert_eq!(ids(&all), newest_first);
    assert!(all.iter().all(|d| d.tenant_id == TENANT));
    assert!(
        all.windows(2)
            .all(|w| (w[0].create_time, &w[0].id) > (w[1].create_time, &w[1].id))
    );

    // page size 4 cuts through the tied group: t3 ends page one, t2 and t1 start page two
    let pages = list_all_pages(&mut conn, TENANT, &DisputeFilter::default(), 4).await;
    assert_eq!(
        pages,
        vec![
            vec!["dsp_u07", "dsp_u06", "dsp_u05", "dsp_t3"],
            vec!["dsp_t2", "dsp_t1", "dsp_s04", "dsp_s03"],
            vec!["dsp_s02", "dsp_s01"],
        ]
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn a_cursor_stays_correct_while_new_disputes_arrive(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    for id in ["dsp_1", "dsp_2", "dsp_3", "dsp_4"] {
        insert_plain(&mut conn, TENANT, id).await;
    }
    let filter = DisputeFilter::default();
    let first = list_disputes(&mut conn, TENANT, &filter, None, 2)
        .await
        .unwrap();
    assert_eq!(ids(&first), ["dsp_4", "dsp_3"]);

    insert_plain(&mut conn, TENANT, "dsp_5").await;
    let cursor = cursor_after(&first[1]);
    let second = list_disputes(&mut conn, TENANT, &filter, Some(&cursor), 2)
        .await
        .unwrap();
    assert_eq!(ids(&second), ["dsp_2", "dsp_1"]);
    let past_the_end = list_disputes(
        &mut conn,
        TENANT,
        &filter,
        Some(&cursor_after(&second[1])),
        2,
    )
    .await
    .unwrap();
    assert!(past_the_end.is_empty());

    // the new one is on a fresh first page
    let fresh = list_disputes(&mut conn, TENANT, &filter, None, 2)
        .await
        .unwrap();
    assert_eq!(ids(&fresh), ["dsp_5", "dsp_4"]);
}

#[sqlx::test(migrations = "./migrations")]
async fn list_filters_narrow_the_results(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let now = Utc::now().trunc_subsecs(6);
    let in_days = |days: i64| now + TimeDelta::days(days);

    // a: charge ch_1, merchant, inquiry, needs_response, due in 5 days, created 10 days ago
    let a = parse(NewDisputeDraft {
        charge: "ch_1".into(),
        payment_intent: "pi_1".into(),
        transaction_id: "tx_1".into(),
        due_time: Some(in_days(5)),
        ..merchant_draft()
    });
    // b: charge ch_1, merchant, chargeback, under_review, due in 20 days, created 5 days ago
    let b = parse(NewDisputeDraft {
        stage: Some(EnumInput::Known(Stage::Chargeback)),
        charge: "ch_1".into(),
        transaction_id: "tx_2".into(),
        due_time: Some(in_days(20)),
        ..merchant_draft()
    });
    // c: charge ch_2, issuer, inquiry, needs_response, no deadline, created now
    let c = parse(NewDisputeDraft {
        side: Some(EnumInput::Known(Side::Issuer)),
        charge: "ch_2".into(),
        date_customer_reported: "2025-03-01".into(),
        due_time: None,
        ..merchant_draft()
    });
    insert_dispute(&mut conn, TENANT, "dsp_a", &a)
        .await
        .unwrap();
    insert_dispute(&mut conn, TENANT, "dsp_b", &b)
        .await
        .unwrap();
    insert_dispute(&mut conn, TENANT, "dsp_c", &c)
        .await
        .unwrap();
    // another tenant's disputes match every filter below, and must never show up
    for (id, new) in [("dsp_x", &a), ("dsp_y", &b), ("dsp_z", &c)] {
        insert_dispute(&mut conn, OTHER_TENANT, id, new)
            .await
            .unwrap();
    }
    sqlx::query("update disputes set status = 'under_review' where id in ('dsp_b', 'dsp_y')")
        .execute(&mut *conn)
        .await
        .unwrap();
    let created_a = in_days(-10);
    let created_b = in_days(-5);
    set_created_at(&mut conn, "disputes", "dsp_a", created_a).await;
    set_created_at(&mut conn, "disputes", "dsp_b", created_b).await;
    set_created_at(&mut conn, "disputes", "dsp_x", created_a).await;
    set_created_at(&mut conn, "disputes", "dsp_y", created_b).await;

    let all = filtered(&mut conn, DisputeFilter::default()).await;
    assert_eq!(all, ["dsp_c", "dsp_b", "dsp_a"]);

    let cases: Vec<(&str, DisputeFilter, Vec<&str>)> = vec![
        (
            "charge",
            DisputeFilter {
                charge: Some("ch_1".into()),
                ..Default::default()
            },
            vec!["dsp_b", "dsp_a"],
        ),
        (
            "unknown charge",
            DisputeFilter {
                charge: Some("ch_none".into()),
                ..Default::default()
            },
            vec![],
        ),
        (
            "payment_intent",
            DisputeFilter {
                payment_intent: Some("pi_1".into()),
                ..Default::default()
            },
            vec!["dsp_a"],
        ),
        (
            "transaction_id",
            DisputeFilter {
                transaction_id: Some("tx_2".into()),
                ..Default::default()
            },
            vec!["dsp_b"],
        ),
        (
            "status",
            DisputeFilter {
                status: Some(Status::NeedsResponse),
                ..Default::default()
            },
            vec!["dsp_c", "dsp_a"],
        ),
        (
            "stage",
            DisputeFilter {
                stage: Some(Stage::Chargeback),
                ..Default::default()
            },
            vec!["dsp_b"],
        ),
        (
            "side",
            DisputeFilter {
                side: Some(Side::Issuer),
                ..Default::default()
            },
            vec!["dsp_c"],
        ),
        (
            "created_after is inclusive",
            DisputeFilter {
                created_after: Some(created_b),
                ..Default::default()
            },
            vec!["dsp_c", "dsp_b"],
        ),
        (
            "created_before is exclusive",
            DisputeFilter {
                created_before: Some(created_b),
                ..Default::default()
            },
            vec!["dsp_a"],
        ),
        (
            "created range",
            DisputeFilter {
                created_after: Some(in_days(-7)),
                created_before: Some(in_days(-1)),
                ..Default::default()
            },
            vec!["dsp_b"],
        ),
        (
            "due_before skips disputes without a deadline",
            DisputeFilter {
                due_before: Some(in_days(10)),
                ..Default::default()
            },
            vec!["dsp_a"],
        ),
        (
            "due_before is exclusive",
            DisputeFilter {
                due_before: Some(in_days(5)),
                ..Default::default()
            },
            vec![],
        ),
        (
            "filters combine with AND",
            DisputeFilter {
                charge: Some("ch_1".into()),
                status: Some(Status::NeedsResponse),
                ..Default::default()
            },
            vec!["dsp_a"],
        ),
        (
            "disjoint filters",
            DisputeFilter {
                charge: Some("ch_2".into()),
                side: Some(Side::Merchant),
                ..Default::default()
            },
            vec![],
        ),
    ];
    for (name, filter, expected) in cases {
        assert_eq!(filtered(&mut conn, filter).await, expected, "{name}");
    }

    // paging keeps the filter
    let filter = DisputeFilter {
        charge: Some("ch_1".into()),
        ..Default::default()
    };
    assert_eq!(
        list_all_pages(&mut conn, TENANT, &filter, 1).await,
        vec![vec!["dsp_b".to_owned()], vec!["dsp_a".to_owned()]]
    );
}

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
    // act_5 happened before act_3: history follows time, not ids
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
                "act_5",
                Actor::Network,
                "lost",
                Stage::Chargeback,
                Status::Lost,
                400
            ),
            (
                "act_3",
                Actor::Tenant,
                "evidence_submitted",
                Stage::Inquiry,
                Status::UnderReview,
                1_000
            ),
        ]
    );
    assert_eq!(a.action_history[2].message, "two documents");
    assert_eq!(a.action_history[0].message, "");
    assert_eq!(a.action_history[2].document_ids, documents);
    assert!(a.action_history[0].document_ids.is_empty());
    assert!(
        a.action_history
            .windows(2)
            .all(|w| w[0].create_time <= w[1].create_time)
    );
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

#[sqlx::test(migrations = "./migrations")]
async fn an_idempotency_key_is_new_once_then_replays_after_commit(pool: PgPool) {
    let mut tx = pool.begin().await.unwrap();
    let first = claim_idempotency_key(&mut tx, TENANT, "CreateDispute", "req-1", "fp-1")
        .await
        .unwrap();
    assert!(used(first).is_none());
    save_idempotent_response(&mut tx, TENANT, "CreateDispute", "req-1", b"response-1")
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let mut conn = pool.acquire().await.unwrap();
    // the retry learns the first request's fingerprint, whatever its own is
    for fingerprint in ["fp-1", "fp-2"] {
        let again = claim_idempotency_key(&mut conn, TENANT, "CreateDispute", "req-1", fingerprint)
            .await
            .unwrap();
        assert_eq!(
            used(again),
            Some(("fp-1".to_owned(), b"response-1".to_vec())),
            "{fingerprint}"
        );
    }

    // keys are per tenant and per operation
    let other_tenant =
        claim_idempotency_key(&mut conn, OTHER_TENANT, "CreateDispute", "req-1", "fp-9")
            .await
            .unwrap();
    assert!(used(other_tenant).is_none());
    let other_operation = claim_idempotency_key(&mut conn, TENANT, "CreateAction", "req-1", "fp-9")
        .await
        .unwrap();
    assert!(used(other_operation).is_none());

    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "select tenant_id, operation, request_fingerprint from idempotency_keys
          order by tenant_id, operation",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let expected = [
        (TENANT, "CreateAction", "fp-9"),
        (TENANT, "CreateDispute", "fp-1"),
        (OTHER_TENANT, "CreateDispute", "fp-9"),
    ]
    .map(|(t, o, f)| (t.to_owned(), o.to_owned(), f.to_owned()));
    assert_eq!(rows, expected);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_rolled_back_claim_leaves_no_key(pool: PgPool) {
    let mut tx = pool.begin().await.unwrap();
    let claim = claim_idempotency_key(&mut tx, TENANT, "CreateDispute", "req-1", "fp-1")
        .await
        .unwrap();
    assert!(used(claim).is_none());
    tx.rollback().await.unwrap();

    let mut conn = pool.acquire().await.unwrap();
    let claim = claim_idempotency_key(&mut conn, TENANT, "CreateDispute", "req-1", "fp-2")
        .await
        .unwrap();
    assert!(used(claim).is_none());
}

/// Starts a second claim of `req-1` in its own transaction; it reports the claim and when it
/// returned, then commits.
fn spawn_second_claim(pool: &PgPool) -> tokio::task::JoinHandle<(Replay, tokio::time::Instant)> {
    let pool = pool.clone();
    tokio::spawn(async move {
        let mut tx = pool.begin().await.unwrap();
        let claim = claim_idempotency_key(&mut tx, TENANT, "CreateDispute", "req-1", "fp-2")
            .await
            .unwrap();
        let returned = tokio::time::Instant::now();
        let claim = used(claim);
        if claim.is_none() {
            save_idempotent_response(&mut tx, TENANT, "CreateDispute", "req-1", b"response-2")
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        (claim, returned)
    })
}

#[sqlx::test(migrations = "./migrations")]
async fn a_concurrent_claim_waits_for_the_first_to_commit_then_replays(pool: PgPool) {
    let mut first = pool.begin().await.unwrap();
    let claim = claim_idempotency_key(&mut first, TENANT, "CreateDispute", "req-1", "fp-1")
        .await
        .unwrap();
    assert!(used(claim).is_none());

    let second = spawn_second_claim(&pool);
    wait_until_a_session_blocks(&pool).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !second.is_finished(),
        "the second claim returned while the first was open"
    );

    save_idempotent_response(&mut first, TENANT, "CreateDispute", "req-1", b"response-1")
        .await
        .unwrap();
    let committing = tokio::time::Instant::now();
    first.commit().await.unwrap();

    let (claim, returned) = second.await.unwrap();
    assert!(returned >= committing, "the second claim did not wait");
    assert_eq!(claim, Some(("fp-1".to_owned(), b"response-1".to_vec())));
}

#[sqlx::test(migrations = "./migrations")]
async fn a_concurrent_claim_takes_over_when_the_first_rolls_back(pool: PgPool) {
    let mut first = pool.begin().await.unwrap();
    let claim = claim_idempotency_key(&mut first, TENANT, "CreateDispute", "req-1", "fp-1")
        .await
        .unwrap();
    assert!(used(claim).is_none());

    let second = spawn_second_claim(&pool);
    wait_until_a_session_blocks(&pool).await;
    assert!(!second.is_finished());
    let rolling_back = tokio::time::Instant::now();
    first.rollback().await.unwrap();

    let (claim, returned) = second.await.unwrap();
    assert!(returned >= rolling_back, "the second claim did not wait");
    assert_eq!(claim, None);
    let stored: (String, Vec<u8>) = sqlx::query_as(
        "select request_fingerprint, response from idempotency_keys
          where tenant_id = $1 and operation = 'CreateDispute' and request_id = 'req-1'",
    )
    .bind(TENANT)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(stored, ("fp-2".to_owned(), b"response-2".to_vec()));
}

#[sqlx::test(migrations = "./migrations")]
async fn purge_removes_only_old_idempotency_keys(pool: PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    for (tenant, request_id) in [
        (TENANT, "fresh"),
        (TENANT, "47h"),
        (TENANT, "49h"),
        (OTHER_TENANT, "72h"),
    ] {
        claim_idempotency_key(&mut conn, tenant, "CreateDispute", request_id, "fp")
            .await
            .unwrap();
    }
    for (request_id, hours) in [("47h", 47), ("49h", 49), ("72h", 72)] {
        sqlx::query(
            "update idempotency_keys set created_at = now() - make_interval(hours => $2)
              where request_id = $1",
        )
        .bind(request_id)
        .bind(hours)
        .execute(&mut *conn)
        .await
        .unwrap();
    }

    assert_eq!(purge_idempotency_keys(&mut conn, 48).await.unwrap(), 2);
    let left: Vec<String> =
        sqlx::query_scalar("select request_id from idempotency_keys order by request_id")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    assert_eq!(left, ["47h", "fresh"]);
    assert_eq!(purge_idempotency_keys(&mut conn, 48).await.unwrap(), 0);

    // a purged key is new again
    let claim = claim_idempotency_key(&mut conn, TENANT, "CreateDispute", "49h", "fp")
        .await
        .unwrap();
    assert!(used(claim).is_none());
    // a kept key still replays
    let claim = claim_idempotency_key(&mut conn, TENANT, "CreateDispute", "47h", "fp")
        .await
        .unwrap();
    assert!(used(claim).is_some());
}
