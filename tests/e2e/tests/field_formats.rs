//! Field names and formats of the API: the deadline is named `due_by`,
//! `date_customer_reported` takes RFC 3339 timestamps, and hostile text or instants (NUL
//! characters, years outside 1–9999) are refused as INVALID_ARGUMENT naming the field. The
//! `point_<N>_` prefixes of test names are the points of issue 11.

use disputes_proto::disputes_v1 as dpb;
use disputes_proto::documents_v1 as pb;
use prost::Message;
use prost_types::{FileDescriptorSet, Timestamp};
use service_kit::time::{MAX_REQUEST_SECONDS, MIN_REQUEST_SECONDS};
use tonic_types::StatusExt;

use crate::fixtures::*;

/// Field names of `message` in the descriptor set the services serve over reflection.
fn descriptor_fields(message: &str) -> Vec<String> {
    let set = FileDescriptorSet::decode(disputes_proto::FILE_DESCRIPTOR_SET).unwrap();
    set.file
        .iter()
        .filter(|f| f.package() == "disputes.v1")
        .flat_map(|f| f.message_type.iter())
        .find(|m| m.name() == message)
        .map(|m| m.field.iter().map(|f| f.name().to_owned()).collect())
        .unwrap_or_else(|| panic!("no message {message}"))
}

/// The violations of an INVALID_ARGUMENT status as (field, description).
fn violations(status: &tonic::Status) -> Vec<(String, String)> {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status
        .get_error_details()
        .bad_request()
        .map(|b| {
            b.field_violations
                .iter()
                .map(|v| (v.field.clone(), v.description.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn nul(field: &str) -> (String, String) {
    (
        field.to_owned(),
        "must not contain NUL characters".to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_1_the_deadline_is_named_due_by() {
    // The schema clients see (reflection serves this descriptor set).
    for message in [
        "EvidenceDetails",
        "CreateDisputeRequest",
        "RecordNetworkEventRequest",
        "GetEvidenceRequirementsResponse",
    ] {
        let fields = descriptor_fields(message);
        assert!(
            fields.iter().any(|f| f == "due_by"),
            "{message}: {fields:?}"
        );
        assert!(
            !fields.iter().any(|f| f == "due_time"),
            "{message}: {fields:?}"
        );
    }

    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    // CreateDispute's due_by becomes evidence_details.due_by and the requirements' due_by.
    // Whole seconds: PostgreSQL keeps microseconds.
    let in_days = |days| Timestamp {
        seconds: (chrono::Utc::now() + chrono::Duration::days(days)).timestamp(),
        nanos: 0,
    };
    let due = in_days(3);
    let mut request = merchant_dispute("", "ch_due_by");
    request.due_by = Some(due);
    let created = create(&mut disputes, request).await;
    assert_eq!(created.evidence_details.unwrap().due_by, Some(due));
    let requirements = disputes
        .get_evidence_requirements(dpb::GetEvidenceRequirementsRequest {
            dispute_id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(requirements.due_by, Some(due));

    // RecordNetworkEvent's due_by sets the deadline of the case it opens.
    let event_due = in_days(9);
    let mut event = network_event(
        dpb::CardNetwork::Visa,
        "VISA-DUE-BY",
        "evt-1",
        dpb::NetworkEventType::RetrievalRequest,
    );
    event.due_by = Some(event_due);
    event.new_case = Some(merchant_case(900, "ch_due_by_event"));
    let opened = record(&mut disputes, event).await.unwrap();
    assert!(opened.created);
    let opened = opened.dispute.unwrap();
    assert_eq!(opened.evidence_details.unwrap().due_by, Some(event_due));

    // A bad one is named `due_by`.
    let mut past = merchant_dispute("", "ch_due_by_past");
    past.due_by = Some(in_millis(-60_000));
    let status = disputes.create_dispute(past).await.unwrap_err();
    assert_eq!(
        violations(&status),
        vec![("due_by".to_owned(), "must be in the future".to_owned())]
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_7_date_customer_reported_accepts_rfc3339_timestamps() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    // Seed 002's format.
    let mut seed = issuer_dispute("txn_rfc3339");
    seed.date_customer_reported = "2024-05-28T12:25:00Z".into();
    let created = create(&mut disputes, seed).await;
    assert_eq!(created.date_customer_reported, "2024-05-28");
    // An offset counts by its UTC day.
    let mut offset = issuer_dispute("txn_rfc3339_offset");
    offset.date_customer_reported = "2024-05-28T23:30:00-05:00".into();
    let created = create(&mut disputes, offset).await;
    assert_eq!(created.date_customer_reported, "2024-05-29");
    // Dates still work.
    let mut date = issuer_dispute("txn_date");
    date.date_customer_reported = "2024-05-28".into();
    assert_eq!(
        create(&mut disputes, date).await.date_customer_reported,
        "2024-05-28"
    );
    // Anything else, or a timestamp in the future, is refused naming the field.
    for bad in [
        "2024-05-28T12:25:00".to_owned(),
        "28/05/2024".to_owned(),
        (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339(),
    ] {
        let mut request = issuer_dispute("txn_bad_report");
        request.date_customer_reported = bad.clone();
        let status = disputes.create_dispute(request).await.unwrap_err();
        assert_eq!(
            violated_fields(&status),
            vec!["date_customer_reported"],
            "{bad}"
        );
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_10_nul_characters_are_refused_naming_the_field() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;

    // CreateDispute: memo and a metadata value (both answered INTERNAL before).
    let mut request = merchant_dispute("", "ch_nul");
    request.memo = "before\0after".into();
    request.metadata.insert("order".into(), "A\0".into());
    let status = disputes.create_dispute(request).await.unwrap_err();
    assert_eq!(
        violations(&status),
        vec![nul("memo"), nul("metadata[\"order\"]")]
    );
    // A NUL in a metadata key, and in RecordNetworkEvent's new case and message.
    let mut request = merchant_dispute("", "ch_nul_key");
    request.metadata.insert("or\0der".into(), "x".into());
    let status = disputes.create_dispute(request).await.unwrap_err();
    assert_eq!(violations(&status), vec![nul("metadata[\"or\\0der\"]")]);
    let mut event = network_event(
        dpb::CardNetwork::Visa,
        "VISA-NUL",
        "evt-\0",
        dpb::NetworkEventType::Chargeback,
    );
    event.message = "\0".into();
    let mut case = merchant_case(500, "ch_nul_case");
    case.memo = "\0".into();
    event.new_case = Some(case);
    let status = record(&mut disputes, event).await.unwrap_err();
    assert_eq!(
        violations(&status),
        vec![nul("event_id"), nul("message"), nul("new_case.memo")]
    );

    // UpdateDispute: a metadata value and evidence text; CreateAction: the message.
    let dispute = create(&mut disputes, merchant_dispute("", "ch_nul_ok")).await;
    let mut update = dpb::UpdateDisputeRequest {
        id: dispute.id.clone(),
        evidence: Some(dpb::EvidenceUpdate {
            uncategorized_text: Some("line one\nline\0two".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    update.metadata.insert("note".into(), "\0".into());
    let status = disputes.update_dispute(update).await.unwrap_err();
    assert_eq!(
        violations(&status),
        vec![
            nul("evidence.uncategorized_text"),
            nul("metadata[\"note\"]")
        ]
    );
    let mut accept = action_request(&dispute.id, dpb::DisputeActionType::Accept);
    accept.message = "ok\0".into();
    let status = disputes.create_action(accept).await.unwrap_err();
    assert_eq!(violations(&status), vec![nul("message")]);
    // Nothing changed.
    let unchanged = get_dispute(&mut disputes, &dispute.id).await;
    assert_eq!(unchanged.version, dispute.version);
    assert!(unchanged.metadata.is_empty());

    // ListDisputes filters.
    let status = disputes
        .list_disputes(dpb::ListDisputesRequest {
            charge: "ch_\0".into(),
            transaction_id: "\0".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        violations(&status),
        vec![nul("charge"), nul("transaction_id")]
    );

    // document-store: an upload's filename.
    let mut documents = stack.documents_of("acme").await;
    let status = upload(
        &mut documents,
        header("receipt\0.pdf", "application/pdf"),
        &pdf_of_size(1024),
    )
    .await
    .unwrap_err();
    assert_eq!(violations(&status), vec![nul("header.filename")]);
    assert_eq!(document_rows(&stack).await, 0);
    // ...a listing's filter and page token, batch ids and a lock id: NUL first, then the
    // other bad fields.
    let status = documents
        .list_documents(pb::ListDocumentsRequest {
            dispute_id: "\0".into(),
            page_size: -1,
            page_token: "x\0".into(),
        })
        .await
        .unwrap_err();
    let fields: Vec<String> = violations(&status).into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, vec!["dispute_id", "page_token", "page_size"]);
    assert_eq!(
        violations(&status)[..2],
        [nul("dispute_id"), nul("page_token")]
    );
    let status = documents
        .batch_get_documents(pb::BatchGetDocumentsRequest {
            ids: vec!["doc_\0".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&status), vec![nul("ids[0]")]);
    let status = documents
        .lock_documents(pb::LockDocumentsRequest {
            ids: vec![domain_kit::ids::DocumentId::generate().into_string()],
            lock_id: "lock\0".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&status), vec![nul("lock_id")]);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_10_timestamps_outside_years_1_to_9999_are_refused_naming_the_field() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let at = |seconds| Some(Timestamp { seconds, nanos: 0 });
    let out_of_range = "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z".to_owned();

    // ListDisputes: just outside both ends, and the far ends of the wire type.
    let status = disputes
        .list_disputes(dpb::ListDisputesRequest {
            created_after: at(MIN_REQUEST_SECONDS - 1),
            created_before: at(MAX_REQUEST_SECONDS + 1),
            due_before: at(i64::MIN),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        violations(&status),
        vec![
            ("created_after".to_owned(), out_of_range.clone()),
            ("created_before".to_owned(), out_of_range.clone()),
            ("due_before".to_owned(), out_of_range.clone()),
        ]
    );
    // The ends themselves are fine (PostgreSQL stores them).
    let listed = disputes
        .list_disputes(dpb::ListDisputesRequest {
            created_after: at(MIN_REQUEST_SECONDS),
            created_before: at(MAX_REQUEST_SECONDS),
            due_before: at(MAX_REQUEST_SECONDS),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.disputes.is_empty());

    // CreateDispute's and RecordNetworkEvent's deadlines.
    let mut request = merchant_dispute("", "ch_far_future");
    request.due_by = at(i64::MAX);
    let status = disputes.create_dispute(request).await.unwrap_err();
    assert_eq!(
        violations(&status),
        vec![("due_by".to_owned(), out_of_range.clone())]
    );
    let mut event = network_event(
        dpb::CardNetwork::Visa,
        "VISA-FAR",
        "evt-far",
        dpb::NetworkEventType::Chargeback,
    );
    event.due_by = at(MAX_REQUEST_SECONDS + 1);
    event.occur_time = at(MIN_REQUEST_SECONDS - 1);
    let mut case = merchant_case(700, "ch_far_case");
    case.due_by = at(MAX_REQUEST_SECONDS + 1);
    event.new_case = Some(case);
    let status = record(&mut disputes, event).await.unwrap_err();
    let mut fields = violations(&status);
    fields.sort();
    assert_eq!(
        fields,
        vec![
            ("due_by".to_owned(), out_of_range.clone()),
            ("new_case.due_by".to_owned(), out_of_range.clone()),
            ("occur_time".to_owned(), out_of_range.clone()),
        ]
    );
    let listed = disputes
        .list_disputes(dpb::ListDisputesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.disputes.is_empty());
    stack.stop().await;
}
