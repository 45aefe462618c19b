//! The `disputes` table: insert, find, list with filters and pages.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, SubsecRound, TimeDelta, Utc};
use dispute_core::domain::{
    CreditStatus, Dispute, DisputeError, DisputeFilter, EnumInput, Network, NewDisputeDraft,
    PaymentMethodType, Reason, Regulation, Side, Stage, Status,
};
use dispute_core::store::disputes::{find_dispute, insert_dispute, list_disputes};
use domain_kit::page_token::PageCursor;
use sqlx::{PgConnection, PgPool};

use super::{OTHER_TENANT, TENANT, ids, insert_plain, merchant_draft, parse, set_created_at};

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
