//! The calls the workers make while the faults run, each with a client deadline, and
//! the probe that times recovery.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use disputes_proto::disputes_v1 as dpb;
use disputes_proto::documents_v1 as pb;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use crate::fixtures::{merchant_case, merchant_dispute, network_event, sha256_hex};

use super::ledger::{AcceptWrite, CreateWrite, EventWrite, Ledger, SubmissionWrite, UploadWrite};
use super::platform::Clients;
use super::{
    ATTEMPTS, HANG_MARGIN, PART_SIZE, RECOVERY_LIMIT, UNARY_DEADLINE, UPLOAD_DEADLINE, ms,
};

/// Runs one call with its outer hang guard and records how it ended.
pub async fn call<T>(
    ledger: &Ledger,
    what: &str,
    deadline: Duration,
    future: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<T, Code> {
    let started = Instant::now();
    let outcome = tokio::time::timeout(deadline + HANG_MARGIN, future).await;
    let elapsed = started.elapsed();
    let mut record = ledger.lock().unwrap();
    record.calls += 1;
    record.slowest = record.slowest.max(elapsed);
    match outcome {
        Err(_) => {
            *record.refused.entry("HUNG".to_owned()).or_default() += 1;
            record
                .hung
                .push(format!("{what}: no answer {elapsed:?} after it started"));
            Err(Code::DeadlineExceeded)
        }
        Ok(Ok(value)) => {
            record.acknowledged += 1;
            Ok(value)
        }
        Ok(Err(status)) => {
            let code = format!("{:?}", status.code());
            *record.refused.entry(code.clone()).or_default() += 1;
            *record
                .refused_by_call
                .entry(format!("{what} {code}"))
                .or_default() += 1;
            record
                .samples
                .entry(code)
                .or_insert_with(|| format!("{what}: {}", status.message()));
            Err(status.code())
        }
    }
}

/// Codes after which the same request (same request id or event id) is sent again.
fn worth_retrying(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Internal
            | Code::Aborted
            | Code::ResourceExhausted
    )
}

fn with_deadline<T>(message: T, deadline: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(deadline);
    request
}

/// Sends a unary call (a fresh request each time) until it is acknowledged, refused for
/// good or out of attempts; the answer if it was acknowledged.
async fn with_retries<T, Fut>(
    ledger: &Ledger,
    what: &str,
    mut send: impl FnMut() -> Fut,
) -> Option<T>
where
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    for attempt in 1..=ATTEMPTS {
        match call(ledger, what, UNARY_DEADLINE, send()).await {
            Ok(response) => return Some(response.into_inner()),
            Err(code) if worth_retrying(code) => backoff(attempt).await,
            Err(_) => return None,
        }
    }
    None
}

async fn backoff(attempt: usize) {
    tokio::time::sleep(ms(150 * attempt as u64)).await;
}

/// CreateDispute with one request id, retried; records the write.
async fn create_dispute(clients: &mut Clients, ledger: &Ledger, key: &str) -> Option<String> {
    let charge = format!("ch_{key}");
    let request = dpb::CreateDisputeRequest {
        request_id: format!("create-{key}"),
        ..merchant_dispute("", &charge)
    };
    let response = with_retries(ledger, "CreateDispute", || {
        let mut disputes = clients.disputes.clone();
        let request = with_deadline(request.clone(), UNARY_DEADLINE);
        async move { disputes.create_dispute(request).await }
    })
    .await;
    let acked = response.and_then(|r| r.dispute).map(|d| d.id);
    ledger.lock().unwrap().creates.push(CreateWrite {
        charge,
        acked: acked.clone(),
    });
    acked
}

/// GetDispute (which asks document-store for the documents), then ACCEPT with one request id,
/// retried; records the write.
async fn accept_dispute(clients: &mut Clients, ledger: &Ledger, dispute_id: &str) {
    let _ = call(
        ledger,
        "GetDispute",
        UNARY_DEADLINE,
        clients.disputes.get_dispute(with_deadline(
            dpb::GetDisputeRequest {
                id: dispute_id.to_owned(),
            },
            UNARY_DEADLINE,
        )),
    )
    .await;
    let request = dpb::CreateActionRequest {
        dispute_id: dispute_id.to_owned(),
        request_id: format!("accept-{dispute_id}"),
        action: dpb::DisputeActionType::Accept.into(),
        message: "not worth fighting".to_owned(),
        ..Default::default()
    };
    let response = with_retries(ledger, "CreateAction", || {
        let mut disputes = clients.disputes.clone();
        let request = with_deadline(request.clone(), UNARY_DEADLINE);
        async move { disputes.create_action(request).await }
    })
    .await;
    let acked = response.is_some();
    ledger.lock().unwrap().accepts.push(AcceptWrite {
        dispute_id: dispute_id.to_owned(),
        acked,
    });
}

/// A CHARGEBACK opening a new network case, redelivered with the same event id; records it.
async fn record_event(clients: &mut Clients, ledger: &Ledger, key: &str) {
    let case_id = format!("case-{key}");
    let event_id = format!("evt-{key}-chargeback");
    let request = dpb::RecordNetworkEventRequest {
        amount: 9_900,
        new_case: Some(merchant_case(9_900, &format!("ch_case_{key}"))),
        ..network_event(
            dpb::CardNetwork::Visa,
            &case_id,
            &event_id,
            dpb::NetworkEventType::Chargeback,
        )
    };
    let response = with_retries(ledger, "RecordNetworkEvent", || {
        let mut disputes = clients.disputes.clone();
        let request = with_deadline(request.clone(), UNARY_DEADLINE);
        async move { disputes.record_network_event(request).await }
    })
    .await;
    let acked = response.and_then(|r| r.dispute).map(|d| d.id);
    ledger.lock().unwrap().events.push(EventWrite {
        case_id,
        event_id,
        acked,
    });
}

/// A PDF of `size` bytes whose content depends on `seed`.
fn pdf(size: usize, seed: u64) -> Vec<u8> {
    let mut bytes = b"%PDF-1.7\n".to_vec();
    let mut state = seed | 1;
    while bytes.len() < size {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(size);
    bytes
}

/// How an upload is sent.
#[derive(Debug, Clone)]
pub struct UploadShape {
    pub size: usize,
    /// Header states the SHA-256 and size.
    pub state_digest: bool,
    /// Sent 64 KiB every 50 ms with a 700 ms deadline: the client's deadline always passes
    /// mid-file, so the call is cancelled with part of the file sent.
    pub trickle: bool,
    pub dispute_id: Option<String>,
}

/// Chunks of a trickled upload, the pause between them and its deadline (shorter than the
/// whole stream takes).
const TRICKLE_CHUNK: usize = 64 * 1024;
const TRICKLE_PAUSE: Duration = ms(50);
const TRICKLE_DEADLINE: Duration = ms(700);

/// One upload (never retried: uploads take no request id); records it.
pub async fn upload(
    clients: &mut Clients,
    ledger: &Ledger,
    key: &str,
    seed: u64,
    shape: UploadShape,
) -> Option<String> {
    let UploadShape {
        size,
        state_digest,
        trickle,
        dispute_id,
    } = shape;
    let bytes = pdf(size, seed);
    let sha256 = sha256_hex(&bytes);
    let filename = format!("fault-{key}.pdf");
    let header = pb::DocumentHeader {
        filename: filename.clone(),
        content_type: "application/pdf".to_owned(),
        expected_sha256: if state_digest {
            sha256.clone()
        } else {
            String::new()
        },
        expected_size_bytes: if state_digest { size as u64 } else { 0 },
        dispute_id: dispute_id.unwrap_or_default(),
    };
    let mut messages = vec![pb::UploadDocumentRequest {
        payload: Some(pb::upload_document_request::Payload::Header(header)),
    }];
    let chunk_size = if trickle { TRICKLE_CHUNK } else { 256 * 1024 };
    for chunk in bytes.chunks(chunk_size) {
        messages.push(pb::UploadDocumentRequest {
            payload: Some(pb::upload_document_request::Payload::Chunk(
                bytes::Bytes::copy_from_slice(chunk),
            )),
        });
    }
    let outcome = if trickle {
        use futures::StreamExt;
        let stream = futures::stream::iter(messages).then(|message| async move {
            tokio::time::sleep(TRICKLE_PAUSE).await;
            message
        });
        call(
            ledger,
            "UploadDocument (trickled)",
            TRICKLE_DEADLINE,
            clients
                .documents
                .upload_document(with_deadline(stream, TRICKLE_DEADLINE)),
        )
        .await
    } else {
        call(
            ledger,
            "UploadDocument",
            UPLOAD_DEADLINE,
            clients
                .documents
                .upload_document(with_deadline(tokio_stream::iter(messages), UPLOAD_DEADLINE)),
        )
        .await
    };
    let acked = outcome
        .ok()
        .and_then(|response| response.into_inner().document.map(|d| d.id));
    ledger.lock().unwrap().uploads.push(UploadWrite {
        filename,
        sha256,
        size,
        acked: acked.clone(),
    });
    acked
}

/// Uploads a document for the dispute, then submits it as evidence (UpdateDispute
/// submit=true, one request id, retried); records the submission.
async fn submit_dispute(clients: &mut Clients, ledger: &Ledger, dispute_id: &str, seed: u64) {
    let shape = UploadShape {
        size: 20 * 1024,
        state_digest: true,
        trickle: false,
        dispute_id: Some(dispute_id.to_owned()),
    };
    let Some(document_id) = upload(
        clients,
        ledger,
        &format!("evidence-{dispute_id}"),
        seed,
        shape,
    )
    .await
    else {
        return;
    };
    let request = dpb::UpdateDisputeRequest {
        id: dispute_id.to_owned(),
        request_id: format!("submit-{dispute_id}"),
        evidence: Some(dpb::EvidenceUpdate {
            shipping_documentation: Some(document_id.clone()),
            shipping_tracking_number: Some("1Z999AA10123456784".to_owned()),
            ..Default::default()
        }),
        submit: true,
        ..Default::default()
    };
    let response = with_retries(ledger, "UpdateDispute (submit)", || {
        let mut disputes = clients.disputes.clone();
        let request = with_deadline(request.clone(), UNARY_DEADLINE);
        async move { disputes.update_dispute(request).await }
    })
    .await;
    let acked = response.is_some();
    ledger.lock().unwrap().submissions.push(SubmissionWrite {
        dispute_id: dispute_id.to_owned(),
        document_id,
        acked,
    });
}

/// One load worker: creates, then GetDispute + ACCEPT or evidence submission, network events
/// and uploads (small, multipart, trickled past the deadline), in turn, until `stop`.
pub async fn worker(
    worker: usize,
    mut clients: Clients,
    ledger: Arc<Ledger>,
    stop: CancellationToken,
) {
    let mut to_accept: Vec<String> = Vec::new();
    let mut n: u64 = 0;
    while !stop.is_cancelled() {
        n += 1;
        let key = format!("w{worker}-{n}");
        match n % 4 {
            1 => {
                if let Some(id) = create_dispute(&mut clients, &ledger, &key).await {
                    to_accept.push(id);
                }
            }
            2 => match to_accept.pop() {
                Some(id) if (n / 4).is_multiple_of(2) => {
                    accept_dispute(&mut clients, &ledger, &id).await
                }
                Some(id) => submit_dispute(&mut clients, &ledger, &id, seed(worker, n)).await,
                None => {
                    create_dispute(&mut clients, &ledger, &key).await;
                }
            },
            3 => record_event(&mut clients, &ledger, &key).await,
            _ => {
                // Small (one PUT), multipart (two parts) and trickled in turn; every other
                // round of three states the digest.
                let round = n / 4;
                let jitter = n as usize % 1000;
                let shape = UploadShape {
                    size: match round % 3 {
                        0 => 40 * 1024 + jitter,
                        1 => PART_SIZE + 512 * 1024 + jitter,
                        _ => 24 * TRICKLE_CHUNK + jitter,
                    },
                    state_digest: (round / 3) % 2 == 1,
                    trickle: round % 3 == 2,
                    dispute_id: None,
                };
                upload(&mut clients, &ledger, &key, seed(worker, n), shape).await;
            }
        }
    }
}

fn seed(worker: usize, n: u64) -> u64 {
    (worker as u64) << 32 | n
}

/// Waits until a create and a small upload both succeed; the time that took.
pub async fn recovery(clients: &mut Clients, ledger: &Ledger, probe: &str) -> Option<Duration> {
    let started = Instant::now();
    let mut attempt: u64 = 0;
    let mut created = false;
    let mut uploaded = false;
    while started.elapsed() < RECOVERY_LIMIT {
        attempt += 1;
        let key = format!("{probe}-{attempt}");
        if !created {
            created = create_dispute(clients, ledger, &key).await.is_some();
        }
        if !uploaded {
            let shape = UploadShape {
                size: 4 * 1024,
                state_digest: true,
                trickle: false,
                dispute_id: None,
            };
            uploaded = upload(clients, ledger, &key, attempt, shape)
                .await
                .is_some();
        }
        if created && uploaded {
            return Some(started.elapsed());
        }
        tokio::time::sleep(ms(100)).await;
    }
    None
}
