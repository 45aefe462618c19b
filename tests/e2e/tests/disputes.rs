//! dispute-core: create, get (with documents from document-store), list with filters and
//! paging under concurrent inserts, idempotency and validation.

use std::collections::HashSet;

use disputes_proto::disputes_v1 as dpb;
use domain_kit::ids::DisputeId;
use prost_types::Timestamp;
use tonic::Code;

use crate::fixtures::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_then_get_returns_the_dispute_with_its_documents() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let mut request = merchant_dispute("", "ch_1");
    request.metadata.insert("order".into(), "A-17".into());
    request.original_amount = 20_000;
    let created = create(&mut disputes, request).await;
    assert!(created.id.starts_with("dsp_"));
    assert_eq!(created.tenant_id, "acme");
    assert_eq!(created.version, 1);
    assert_eq!(created.currency, "USD");
    assert_eq!(created.stage, dpb::DisputeStage::Chargeback as i32);
    assert_eq!(created.status, dpb::DisputeStatus::NeedsResponse as i32);
    assert_eq!(created.original_amount, 20_000);
    assert_eq!(
        created.metadata.get("order").map(String::as_str),
        Some("A-17")
    );
    assert_eq!(created.action_history.len(), 1);
    assert_eq!(created.action_history[0].what, "created");
    assert_eq!(created.action_history[0].actor, dpb::Actor::Tenant as i32);

    let mut documents = stack.documents_of("acme").await;
    let mut h = header("receipt.pdf", "application/pdf");
    h.dispute_id = created.id.clone();
    let document = upload(&mut documents, h, &pdf_of_size(2048)).await.unwrap();
    upload(
        &mut documents,
        header("unrelated.jpg", "image/jpeg"),
        &SMALLEST_JPEG,
    )
    .await
    .unwrap();

    let got = disputes
        .get_dispute(dpb::GetDisputeRequest {
            id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.dispute.unwrap(), created);
    assert_eq!(got.documents.len(), 1);
    assert_eq!(got.documents[0].id, document.id);
    assert_eq!(got.documents[0].sha256, sha256_hex(&pdf_of_size(2048)));

    let missing = disputes
        .get_dispute(dpb::GetDisputeRequest {
            id: DisputeId::generate().into_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(error_reason(&missing), "DISPUTE_NOT_FOUND");
    let malformed = disputes
        .get_dispute(dpb::GetDisputeRequest { id: "42".into() })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&malformed), vec!["id"]);

    // Issuer side.
    let issuer = create(&mut disputes, issuer_dispute("txn_9")).await;
    assert_eq!(issuer.stage, dpb::DisputeStage::Inquiry as i32);
    assert_eq!(issuer.credit_status, dpb::CreditStatus::None as i32);
    assert_eq!(issuer.date_customer_reported, "2026-11-20");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_create_requests_name_every_bad_field() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let request = dpb::CreateDisputeRequest {
        request_id: "has spaces".into(),
        side: 0,
        stage: 99,
        amount: 0,
        currency: "DOLLARS".into(),
        network: 0,
        reason: 1234,
        memo: "m".repeat(5001),
        date_customer_reported: "yesterday".into(),
        due_by: Some(Timestamp {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    };
    let status = disputes.create_dispute(request).await.unwrap_err();
    let fields = sorted_violated_fields(&status);
    assert_eq!(
        fields,
        vec![
            "amount",
            "currency",
            "date_customer_reported",
            "due_by",
            "memo",
            "network",
            "reason",
            "request_id",
            "side",
            "stage"
        ]
    );
    // Nothing was written, and the rejected request id is not remembered.
    let listed = disputes
        .list_disputes(dpb::ListDisputesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.disputes.is_empty());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_is_idempotent_on_request_id() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;

    let first = disputes
        .create_dispute(merchant_dispute("req-1", "ch_idem"))
        .await
        .unwrap()
        .into_inner();
    let second = disputes
        .create_dispute(merchant_dispute("req-1", "ch_idem"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, second, "a retry returns the first response");

    let mut different = merchant_dispute("req-1", "ch_idem");
    different.amount += 1;
    let status = disputes.create_dispute(different).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&status), "IDEMPOTENCY_KEY_REUSED");

    // A request rejected by validation is not remembered: fixing it with the same id works.
    let mut invalid = merchant_dispute("req-2", "ch_idem2");
    invalid.currency = "XYZ".into();
    disputes.create_dispute(invalid).await.unwrap_err();
    disputes
        .create_dispute(merchant_dispute("req-2", "ch_idem2"))
        .await
        .unwrap();

    // 50 concurrent identical requests: one effect, one answer.
    let mut calls = Vec::new();
    for _ in 0..50 {
        let mut client = disputes.clone();
        calls.push(tokio::spawn(async move {
            client
                .create_dispute(merchant_dispute("req-burst", "ch_burst"))
                .await
        }));
    }
    let mut ids = HashSet::new();
    for call in calls {
        match call.await.unwrap() {
            Ok(response) => {
                ids.insert(response.into_inner().dispute.unwrap().id);
            }
            // A retry arriving while the first runs may be told to retry, never to duplicate.
            Err(status) => assert_eq!(status.code(), Code::Aborted, "{status:?}"),
        }
    }
    assert_eq!(ids.len(), 1);
    let burst = disputes
        .list_disputes(dpb::ListDisputesRequest {
            charge: "ch_burst".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(burst.disputes.len(), 1);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_case_opens_one_dispute() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let mut request = merchant_dispute("", "ch_case");
    request.network_case_id = "VISA-CASE-1".into();
    disputes.create_dispute(request.clone()).await.unwrap();
    let status = disputes.create_dispute(request).await.unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    stack.stop().await;
}

async fn list_all(
    disputes: &mut harness::DisputesClient,
    mut request: dpb::ListDisputesRequest,
) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let page = disputes
            .list_disputes(request.clone())
            .await
            .unwrap()
            .into_inner();
        ids.extend(page.disputes.into_iter().map(|d| d.id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        request.page_token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_stays_correct_while_disputes_arrive() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let mut existing = Vec::new();
    for i in 0..45 {
        let d = create(
            &mut disputes,
            merchant_dispute("", &format!("ch_page_{}", i % 3)),
        )
        .await;
        existing.push(d.id);
    }

    // Insert 30 more concurrently while paging through with small pages.
    let mut writer = disputes.clone();
    let inserts = tokio::spawn(async move {
        let mut ids = Vec::new();
        for _ in 0..30 {
            let d = create(&mut writer, merchant_dispute("", "ch_page_new")).await;
            ids.push(d.id);
        }
        ids
    });
    let seen = list_all(
        &mut disputes,
        dpb::ListDisputesRequest {
            page_size: 4,
            ..Default::default()
        },
    )
    .await;
    let added = inserts.await.unwrap();

    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no dispute appears twice");
    for id in &existing {
        assert!(
            unique.contains(id),
            "{id} existed before paging and must be listed"
        );
    }
    assert!(
        seen.iter()
            .all(|id| existing.contains(id) || added.contains(id))
    );
    // Newest first: the pre-existing ones come in reverse creation order.
    let order: Vec<&String> = seen.iter().filter(|id| existing.contains(id)).collect();
    let expected: Vec<&String> = existing.iter().rev().collect();
    assert_eq!(order, expected);

    // Filters, and the default/maximum page sizes.
    let charge_0 = list_all(
        &mut disputes,
        dpb::ListDisputesRequest {
            charge: "ch_page_0".into(),
            page_size: 7,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(charge_0.len(), 15);
    let default_page = disputes
        .list_disputes(dpb::ListDisputesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(default_page.disputes.len(), 20);
    let max_page = disputes
        .list_disputes(dpb::ListDisputesRequest {
            page_size: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(max_page.disputes.len(), 75);
    assert!(max_page.next_page_token.is_empty());

    // A token reused with other filters is refused.
    let first = disputes
        .list_disputes(dpb::ListDisputesRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let status = disputes
        .list_disputes(dpb::ListDisputesRequest {
            page_size: 1,
            page_token: first.next_page_token,
            charge: "ch_page_1".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), vec!["page_token"]);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_by_side_stage_status_and_due_by() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let now = chrono::Utc::now();
    let mut soon = merchant_dispute("", "ch_due");
    soon.due_by = Some(timestamp(now + chrono::Duration::days(2)));
    let soon = create(&mut disputes, soon).await;
    let mut later = merchant_dispute("", "ch_due");
    later.due_by = Some(timestamp(now + chrono::Duration::days(20)));
    disputes.create_dispute(later).await.unwrap();
    let issuer = create(&mut disputes, issuer_dispute("txn_filter")).await;

    let due_before = list_all(
        &mut disputes,
        dpb::ListDisputesRequest {
            charge: "ch_due".into(),
            due_before: Some(timestamp(now + chrono::Duration::days(7))),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(due_before, vec![soon.id.clone()]);

    let issuers = list_all(
        &mut disputes,
        dpb::ListDisputesRequest {
            side: dpb::DisputeSide::Issuer.into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(issuers, vec![issuer.id.clone()]);
    let by_txn = list_all(
        &mut disputes,
        dpb::ListDisputesRequest {
            transaction_id: "txn_filter".into(),
            stage: dpb::DisputeStage::Inquiry.into(),
            status: dpb::DisputeStatus::NeedsResponse.into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_txn, vec![issuer.id.clone()]);
    let won = list_all(
        &mut disputes,
        dpb::ListDisputesRequest {
            status: dpb::DisputeStatus::Won.into(),
            ..Default::default()
        },
    )
    .await;
    assert!(won.is_empty());
    let created_window = list_all(
        &mut disputes,
        dpb::ListDisputesRequest {
            created_after: Some(timestamp(now - chrono::Duration::seconds(60))),
            created_before: Some(timestamp(now + chrono::Duration::seconds(3600))),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(created_window.len(), 3);

    let status = disputes
        .list_disputes(dpb::ListDisputesRequest {
            status: 42,
            page_size: -1,
            page_token: "%%%".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let fields = sorted_violated_fields(&status);
    assert_eq!(fields, vec!["page_size", "page_token", "status"]);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disputes_of_one_charge_never_exceed_its_original_amount() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let mut first = merchant_dispute("", "ch_split");
    first.amount = 6_000;
    first.original_amount = 10_000;
    disputes.create_dispute(first).await.unwrap();
    // The second dispute's request does not repeat the original amount: the first one knows it.
    let mut second = merchant_dispute("", "ch_split");
    second.amount = 4_000;
    disputes.create_dispute(second).await.unwrap();
    let mut third = merchant_dispute("", "ch_split");
    third.amount = 1;
    let status = disputes.create_dispute(third).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&status), "AMOUNT_EXCEEDS_ORIGINAL");

    // Concurrent partial disputes on one transaction: exactly as many fit as the amount allows.
    let mut calls = Vec::new();
    for _ in 0..10 {
        let mut client = disputes.clone();
        calls.push(tokio::spawn(async move {
            let mut request = issuer_dispute("txn_split");
            request.amount = 300;
            request.original_amount = 1_000;
            client.create_dispute(request).await
        }));
    }
    let mut created = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => created += 1,
            Err(status) => assert_eq!(error_reason(&status), "AMOUNT_EXCEEDS_ORIGINAL"),
        }
    }
    assert_eq!(created, 3);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_facts_set_regulation_e_windows() {
    use dispute_core::domain::deadlines::{add_business_days, end_of_day};
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let reported = chrono::Utc::now().date_naive() - chrono::Duration::days(1);
    let credit_due = |dispute: &dpb::Dispute| {
        dispute
            .available_actions
            .iter()
            .find(|a| a.action == dpb::DisputeActionType::ProvisionalCredit as i32)
            .and_then(|a| a.valid_until)
            .map(|t| t.seconds)
    };

    let mut established = issuer_dispute("txn_established");
    established.date_customer_reported = reported.format("%Y-%m-%d").to_string();
    let established = create(&mut disputes, established).await;
    assert_eq!(
        credit_due(&established),
        Some(end_of_day(add_business_days(reported, 10)).timestamp())
    );

    let mut new_account = issuer_dispute("txn_new_account");
    new_account.date_customer_reported = reported.format("%Y-%m-%d").to_string();
    new_account.issuer_facts = Some(dpb::IssuerFacts {
        transaction_date: (reported - chrono::Duration::days(3))
            .format("%Y-%m-%d")
            .to_string(),
        new_account: true,
        ..Default::default()
    });
    let new_account = create(&mut disputes, new_account).await;
    assert_eq!(
        credit_due(&new_account),
        Some(end_of_day(add_business_days(reported, 20)).timestamp())
    );
    let facts = new_account.issuer_facts.unwrap();
    assert!(facts.new_account);
    assert_eq!(facts.transaction_posted, Some(true));

    // Issuer facts belong to the issuer side, and a transaction is not reported before it
    // happens.
    let mut merchant = merchant_dispute("", "ch_facts");
    merchant.issuer_facts = Some(dpb::IssuerFacts::default());
    let status = disputes.create_dispute(merchant).await.unwrap_err();
    assert_eq!(violated_fields(&status), vec!["issuer_facts"]);
    let mut late = issuer_dispute("txn_late");
    late.issuer_facts = Some(dpb::IssuerFacts {
        transaction_date: "2026-11-21".into(),
        billing_cycle_closing_day: 40,
        ..Default::default()
    });
    let status = disputes.create_dispute(late).await.unwrap_err();
    assert_eq!(
        violated_fields(&status),
        vec![
            "issuer_facts.transaction_date",
            "issuer_facts.billing_cycle_closing_day"
        ]
    );
    stack.stop().await;
}
