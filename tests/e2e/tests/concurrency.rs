//! Concurrent calls: 50 identical actions under one `request_id` have one effect and replay
//! one answer, of two conflicting actions on the same version one wins and the other gets
//! ABORTED (VERSION_CONFLICT), and deadline sweepers on several replicas apply each deadline
//! once.

use std::time::Duration;

use disputes_proto::disputes_v1 as dpb;
use dpb::BalanceTransactionType as Txn;
use dpb::DisputeActionType as Action;
use tonic::Code;

use crate::fixtures::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_actions_have_one_effect() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let mut request = issuer_dispute("txn_burst");
    request.date_customer_reported = today();
    let dispute = create(&mut disputes, request).await;

    let mut calls = Vec::new();
    for _ in 0..50 {
        let mut client = disputes.clone();
        let request = dpb::CreateActionRequest {
            request_id: "credit-once".into(),
            amount: 4_000,
            ..action_request(&dispute.id, Action::ProvisionalCredit)
        };
        calls.push(tokio::spawn(
            async move { client.create_action(request).await },
        ));
    }
    let mut answers = Vec::new();
    for call in calls {
        match call.await.unwrap() {
            Ok(response) => answers.push(response.into_inner().dispute.unwrap()),
            Err(status) => assert_eq!(status.code(), Code::Aborted, "{status:?}"),
        }
    }
    assert!(!answers.is_empty());
    assert!(
        answers.iter().all(|a| a == &answers[0]),
        "every successful answer is the first one"
    );
    let after = get_dispute(&mut disputes, &dispute.id).await;
    assert_eq!(after.version, dispute.version + 1);
    assert_eq!(answers[0].version, after.version);
    assert_eq!(ledger(&after), vec![(Txn::ProvisionalCredit, 4_000)]);
    assert_eq!(
        history(&after),
        vec![
            (dpb::Actor::Tenant, "created".to_owned()),
            (dpb::Actor::Tenant, "PROVISIONAL_CREDIT".to_owned())
        ]
    );
    assert_eq!(
        event_types(&stack, &dispute.id).await,
        vec!["dispute.created", "dispute.updated"]
    );
    // A later retry replays too; the same key with another request is refused.
    let replay = apply_action(
        &mut disputes,
        dpb::CreateActionRequest {
            request_id: "credit-once".into(),
            amount: 4_000,
            ..action_request(&dispute.id, Action::ProvisionalCredit)
        },
    )
    .await
    .unwrap();
    assert_eq!(replay, answers[0]);
    let status = disputes
        .create_action(dpb::CreateActionRequest {
            request_id: "credit-once".into(),
            amount: 4_100,
            ..action_request(&dispute.id, Action::ProvisionalCredit)
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(error_reason(&status), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(
        get_dispute(&mut disputes, &dispute.id).await.version,
        after.version
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_actions_with_the_same_version_one_wins() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    for round in 0..5 {
        let dispute = create(
            &mut disputes,
            merchant_dispute("", &format!("ch_race_{round}")),
        )
        .await;
        let (mut a, mut b) = (disputes.clone(), disputes.clone());
        let accept = dpb::CreateActionRequest {
            expected_version: Some(dispute.version),
            ..action_request(&dispute.id, Action::Accept)
        };
        let defend = dpb::CreateActionRequest {
            expected_version: Some(dispute.version),
            ..action_request(&dispute.id, Action::SubmitEvidence)
        };
        let (accepted, defended) = tokio::join!(
            tokio::spawn(async move { a.create_action(accept).await }),
            tokio::spawn(async move { b.create_action(defend).await }),
        );
        let results = [accepted.unwrap(), defended.unwrap()];
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let loser = results.iter().find_map(|r| r.as_ref().err()).unwrap();
        assert_eq!(loser.code(), Code::Aborted, "{loser:?}");
        assert_eq!(error_reason(loser), "VERSION_CONFLICT");

        let after = get_dispute(&mut disputes, &dispute.id).await;
        assert_eq!(after.version, dispute.version + 1);
        let tenant_actions: Vec<_> = history(&after)
            .into_iter()
            .filter(|(actor, what)| *actor == dpb::Actor::Tenant && what != "created")
            .collect();
        assert_eq!(tenant_actions.len(), 1, "{tenant_actions:?}");
        let winner = winners[0].get_ref().dispute.as_ref().unwrap();
        assert_eq!(winner.version, after.version);
        match tenant_actions[0].1.as_str() {
            "ACCEPT" => assert_eq!(after.status(), dpb::DisputeStatus::Lost),
            "SUBMIT_EVIDENCE" => assert_eq!(after.status(), dpb::DisputeStatus::UnderReview),
            other => panic!("unexpected {other}"),
        }
        assert_eq!(ledger(&after), vec![(Txn::Withdrawal, -12_500)]);
        assert_eq!(fee(&after), FEE);
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweeper_replicas_apply_each_deadline_once() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    // Deadlines close together, each still in the future when its dispute is created (on a
    // busy machine the 20 creates may take longer than the first deadline's lead).
    let mut due = chrono::Utc::now() + chrono::Duration::milliseconds(1800);
    let mut ids = Vec::new();
    for i in 0..20 {
        due = due.max(chrono::Utc::now() + chrono::Duration::milliseconds(300));
        let mut request = merchant_dispute("", &format!("ch_sweep_{i}"));
        request.due_by = Some(timestamp(due));
        ids.push(create(&mut disputes, request).await.id);
    }

    // Two more replicas of the sweeper on the same database, racing the stack's own.
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let replica = dispute_core::app::Disputes {
            pool: dispute_core::connect_database(&stack.dispute_db_url, 5)
                .await
                .unwrap(),
            documents: dispute_core::clients::documents::DocumentsClient::connect_lazy(&format!(
                "http://{}",
                stack.document_store_addr
            ))
            .unwrap(),
            policy: dispute_core::domain::MoneyPolicy::default(),
        }
        .with_snapshots(
            dispute_core::grpc::encode_dispute,
            dispute_core::grpc::status::encode_refusal,
        );
        replicas.push(tokio::spawn(async move {
            let stop = due + chrono::Duration::milliseconds(1500);
            let mut applied = 0;
            while chrono::Utc::now() < stop {
                applied += replica
                    .sweep_deadlines_once(chrono::Utc::now())
                    .await
                    .unwrap()
                    .applied as usize;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            replica.pool().close().await;
            applied
        }));
    }
    let mut applied_by_replicas = 0;
    for replica in replicas {
        applied_by_replicas += replica.await.unwrap();
    }
    assert!(applied_by_replicas <= ids.len(), "{applied_by_replicas}");

    for id in &ids {
        let dispute = get_dispute(&mut disputes, id).await;
        assert_eq!(dispute.status(), dpb::DisputeStatus::Lost, "{id}");
        let system: Vec<_> = history(&dispute)
            .into_iter()
            .filter(|(actor, _)| *actor == dpb::Actor::System)
            .collect();
        assert_eq!(
            system,
            vec![(dpb::Actor::System, "system:DEADLINE_PASSED".to_owned())],
            "{id}"
        );
        assert_eq!(ledger(&dispute), vec![(Txn::Withdrawal, -12_500)], "{id}");
        assert_eq!(fee(&dispute), FEE);
        assert_eq!(
            event_types(&stack, id).await,
            vec![
                "dispute.created",
                "dispute.funds_withdrawn",
                "dispute.defense_period_ended",
                "dispute.lost"
            ],
            "{id}"
        );
    }
    stack.stop().await;
}
