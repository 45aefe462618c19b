//! The hazards of docs/lifecycle.md ("Hazards", H1–H9), end to end over gRPC, one test each
//! (two for H3), grouped by what they are about: outcomes (H1, H3, H4), funds and amounts
//! (H2, H5, H6, H7) and network events (H8, H9). Other rule ids (M…, I…) are those of
//! docs/lifecycle.md too.

use disputes_proto::disputes_v1 as dpb;
use dpb::DisputeStage as Stage;
use dpb::DisputeStatus as Status;
use dpb::NetworkEventType as Net;

use crate::fixtures::*;

mod funds;
mod network_events;
mod outcomes;

fn at(dispute: &dpb::Dispute) -> (Stage, Status) {
    (dispute.stage(), dispute.status())
}

/// A merchant-side Visa chargeback opened by CreateDispute with a network case id.
async fn merchant_chargeback(
    client: &mut harness::DisputesClient,
    charge: &str,
    case: &str,
) -> dpb::Dispute {
    let mut request = merchant_dispute("", charge);
    request.network_case_id = case.to_owned();
    create(client, request).await
}

async fn visa(
    client: &mut harness::DisputesClient,
    case: &str,
    event_id: &str,
    kind: Net,
) -> dpb::RecordNetworkEventResponse {
    record(
        client,
        network_event(dpb::CardNetwork::Visa, case, event_id, kind),
    )
    .await
    .unwrap()
}
