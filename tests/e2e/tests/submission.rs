//! Submitting evidence locks its documents in document-store outside dispute-core's
//! transaction: a stalled document-store cannot exhaust dispute-core's pool, a submission
//! that fails after the lock releases it and records nothing, and the repair worker releases
//! the lock of a submission that crashed half-way.

use std::time::Duration;

use chrono::Utc;
use dispute_core::app::{App, Disputes};
use dispute_core::clients::documents::{BackgroundCredential, DocumentsClient};
use dispute_core::domain::requests::CreateAction;
use dispute_core::domain::{
    ActionType, DisputeError, EnumInput, MoneyPolicy, Network, NewDispute, NewDisputeDraft, Reason,
    Side, Stage, TenantAction,
};
use disputes_proto::disputes_v1 as dpb;
use disputes_proto::documents_v1 as pb;
use domain_kit::ids::{DisputeId, DocumentId};
use service_kit::auth::{Caller, TokenVerifier};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::fixtures::*;

const TENANT: &str = "acme";

/// dispute-core's use cases over `pool`, calling document-store at `document_store_url`;
/// background work uses development tokens minted with the stack's key.
fn app(stack: &harness::Stack, pool: PgPool, document_store_url: &str) -> App {
    app_with(
        BackgroundCredential::DevMinted(stack.jwt_secret.clone()),
        pool,
        document_store_url,
    )
}

/// [`app`] with `background` as dispute-core's background credential.
fn app_with(background: BackgroundCredential, pool: PgPool, document_store_url: &str) -> App {
    Disputes {
        pool,
        documents: DocumentsClient::connect_lazy(document_store_url)
            .unwrap()
            .with_background_credential(background),
        policy: MoneyPolicy::default(),
    }
    .with_snapshots(
        dispute_core::grpc::encode_dispute,
        dispute_core::grpc::status::encode_refusal,
    )
}

async fn caller(stack: &harness::Stack) -> Caller {
    TokenVerifier::new(&stack.jwt_secret)
        .unwrap()
        .verify_header(Some(&format!("Bearer {}", stack.full_token(TENANT))))
        .await
        .unwrap()
}

async fn lock_intents(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from document_lock_intents")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn lock_time(
    documents: &mut harness::DocumentsClient,
    id: &str,
) -> Option<prost_types::Timestamp> {
    documents
        .get_document(pb::GetDocumentRequest { id: id.to_owned() })
        .await
        .unwrap()
        .into_inner()
        .document
        .unwrap()
        .lock_time
}

/// A merchant dispute with `receipt` staged as evidence.
async fn dispute_with_receipt(
    disputes: &mut harness::DisputesClient,
    documents: &mut harness::DocumentsClient,
) -> (dpb::Dispute, String) {
    let dispute = create(disputes, merchant_dispute("", "ch_submission")).await;
    let mut h = header("receipt.pdf", "application/pdf");
    h.dispute_id = dispute.id.clone();
    let receipt = upload(documents, h, &pdf_of_size(100)).await.unwrap();
    let staged = update(
        disputes,
        dpb::UpdateDisputeRequest {
            id: dispute.id.clone(),
            evidence: Some(dpb::EvidenceUpdate {
                receipt: Some(receipt.id.clone()),
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .await;
    (staged, receipt.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_failing_after_the_lock_releases_it_and_records_nothing() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of(TENANT).await;
    let mut documents = stack.documents_of(TENANT).await;
    let db = PgPool::connect(&stack.dispute_db_url).await.unwrap();
    let (dispute, receipt) = dispute_with_receipt(&mut disputes, &mut documents).await;

    // The second step (the transaction recording the submission) fails.
    sqlx::query(
        "create function refuse_history() returns trigger as $$
         begin raise exception 'history refused on purpose'; end;
         $$ language plpgsql",
    )
    .execute(&db)
    .await
    .unwrap();
    sqlx::query(
        "create trigger refuse_history before insert on dispute_actions
             for each row execute function refuse_history()",
    )
    .execute(&db)
    .await
    .unwrap();
    for via_update in [false, true] {
        let refused = if via_update {
            disputes
                .update_dispute(submit_request(&dispute.id))
                .await
                .unwrap_err()
        } else {
            act(
                &mut disputes,
                &dispute.id,
                dpb::DisputeActionType::SubmitEvidence,
            )
            .await
            .unwrap_err()
        };
        assert_eq!(refused.code(), tonic::Code::Internal, "{refused:?}");
        let after = get_dispute(&mut disputes, &dispute.id).await;
        assert_eq!(after.status, dpb::DisputeStatus::NeedsResponse as i32);
        assert_eq!(after.version, dispute.version);
        assert!(
            lock_time(&mut documents, &receipt).await.is_none(),
            "the receipt stayed locked after a failed submission"
        );
        assert_eq!(lock_intents(&db).await, 0);
    }

    // Once the transaction can commit, the same submission locks the receipt for good.
    sqlx::query("drop trigger refuse_history on dispute_actions")
        .execute(&db)
        .await
        .unwrap();
    let submitted = submit(&mut disputes, &dispute.id).await;
    assert_eq!(submitted.status, dpb::DisputeStatus::UnderReview as i32);
    assert!(lock_time(&mut documents, &receipt).await.is_some());
    assert_eq!(lock_intents(&db).await, 0);
    let history = submitted.action_history.last().unwrap();
    assert!(
        history.message.contains(&format!("{receipt} sha256=")),
        "{}",
        history.message
    );

    db.close().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repair_worker_releases_the_lock_of_a_crashed_submission() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of(TENANT).await;
    let mut documents = stack.documents_of(TENANT).await;
    let db = PgPool::connect(&stack.dispute_db_url).await.unwrap();
    let (dispute, receipt) = dispute_with_receipt(&mut disputes, &mut documents).await;
    let mut h = header("policy.pdf", "application/pdf");
    h.dispute_id = dispute.id.clone();
    let policy = upload(&mut documents, h, &pdf_of_size(100))
        .await
        .unwrap()
        .id;
    // The policy is also locked by a submission that happened (another holder).
    documents
        .lock_documents(pb::LockDocumentsRequest {
            ids: vec![policy.clone()],
            lock_id: "lck_done".into(),
        })
        .await
        .unwrap();

    // A crash after step 1: the intent is recorded and both documents are locked under
    // it, but no submission followed.
    sqlx::query(
        "insert into document_lock_intents (tenant_id, lock_id, dispute_id, document_ids, created_at)
         values ($1, 'lck_crashed', $2, $3, now() - interval '2 minutes')",
    )
    .bind(TENANT)
    .bind(&dispute.id)
    .bind(vec![receipt.clone(), policy.clone()])
    .execute(&db)
    .await
    .unwrap();
    documents
        .lock_documents(pb::LockDocumentsRequest {
            ids: vec![receipt.clone(), policy.clone()],
            lock_id: "lck_crashed".into(),
        })
        .await
        .unwrap();
    assert!(lock_time(&mut documents, &receipt).await.is_some());

    // The repairer reads its background credential from a file, as in production (a
    // token of the identity provider naming no tenant, with `documents:lock` only).
    let credentials = tempfile::tempdir().unwrap();
    let token_file = credentials.path().join("background-token");
    let document_store_url = format!("http://{}", stack.document_store_addr);
    let missing = app_with(
        BackgroundCredential::TokenFile(token_file.clone()),
        db.clone(),
        &document_store_url,
    );
    assert_eq!(
        missing
            .release_stale_document_locks(Duration::from_secs(60))
            .await
            .unwrap(),
        (0, 1),
        "without its token the release fails and is retried later"
    );
    let token = background_token(&stack);
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let repairer = app_with(
        BackgroundCredential::TokenFile(token_file),
        db.clone(),
        &document_store_url,
    );
    // A young intent is left alone (its submission may still be running).
    assert_eq!(
        repairer
            .release_stale_document_locks(Duration::from_secs(600))
            .await
            .unwrap(),
        (0, 0)
    );
    assert_eq!(
        repairer
            .release_stale_document_locks(Duration::from_secs(60))
            .await
            .unwrap(),
        (1, 0)
    );
    assert!(lock_time(&mut documents, &receipt).await.is_none());
    assert!(
        lock_time(&mut documents, &policy).await.is_some(),
        "a lock another submission holds stays"
    );
    assert_eq!(lock_intents(&db).await, 0);
    let after = get_dispute(&mut disputes, &dispute.id).await;
    assert_eq!(after.status, dpb::DisputeStatus::NeedsResponse as i32);

    db.close().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_document_store_does_not_hold_dispute_core_connections() {
    let stack = stack().await;
    // document-store stalls: it accepts connections and never answers.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let black_hole_url = format!("http://{}", black_hole.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = black_hole.accept().await {
            sockets.push(socket);
        }
    });
    // Two connections, and a caller waits at most a second for one.
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(1))
        .connect(&stack.dispute_db_url)
        .await
        .unwrap();
    let app = app(&stack, pool.clone(), &black_hole_url);
    let caller = caller(&stack).await;
    let new_dispute = || {
        NewDispute::parse(
            NewDisputeDraft {
                side: Some(EnumInput::Known(Side::Merchant)),
                stage: Some(EnumInput::Known(Stage::Chargeback)),
                amount: 1_000,
                currency: "usd".into(),
                network: Some(EnumInput::Known(Network::Visa)),
                reason: Some(EnumInput::Known(Reason::Fraudulent)),
                ..Default::default()
            },
            Utc::now(),
        )
        .unwrap()
    };
    let dispute = match app
        .create_dispute(TENANT, new_dispute(), None)
        .await
        .unwrap()
    {
        dispute_core::app::Outcome::Done(view) => view.dispute,
        dispute_core::app::Outcome::Replayed(_) => unreachable!(),
    };
    // Evidence naming a document, staged directly (checking it would need document-store).
    sqlx::query(
        "update disputes set evidence = jsonb_build_object('receipt', $2::text) where id = $1",
    )
    .bind(&dispute.id)
    .bind(DocumentId::generate().as_str())
    .execute(&pool)
    .await
    .unwrap();

    // Four submissions wait on document-store: twice as many as the pool has connections.
    let submissions: Vec<_> = (0..4)
        .map(|_| {
            let app = app.clone();
            let caller = caller.clone();
            let id = DisputeId::parse("id", &dispute.id).unwrap();
            tokio::spawn(async move {
                app.create_action(
                    &caller,
                    CreateAction {
                        dispute_id: id,
                        request_id: None,
                        expected_version: None,
                        action: TenantAction::new(ActionType::SubmitEvidence),
                        filing: Default::default(),
                    },
                    None,
                )
                .await
            })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(30), async {
        while lock_intents(&pool).await < 4 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every submission reached document-store");

    // Meanwhile every other call gets a connection.
    for _ in 0..10 {
        app.create_dispute(TENANT, new_dispute(), None)
            .await
            .expect("a call unrelated to document-store waits for no submission");
    }
    for submission in submissions {
        let refused = submission.await.unwrap().unwrap_err();
        assert!(
            matches!(refused, DisputeError::DocumentsUnavailable),
            "{refused:?}"
        );
    }
    // Nothing was submitted; the intents stay for the repair worker (document-store may
    // have locked the documents before it stalled).
    let status: String = sqlx::query_scalar("select status from disputes where id = $1")
        .bind(&dispute.id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "needs_response");
    assert_eq!(lock_intents(&pool).await, 4);

    held.abort();
    pool.close().await;
    stack.stop().await;
}
