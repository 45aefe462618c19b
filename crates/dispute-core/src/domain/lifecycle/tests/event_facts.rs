//! What a network event says about itself (issue 11, point 4): the windows it opens count
//! from its `occur_time`, and its `network_reason_code` becomes the case's (H8 reads it).

use super::*;

#[test]
fn windows_count_from_when_the_event_occurred() {
    let state = tenant_opened(issuer(Regulation::RegulationZ), Stage::Inquiry);
    let filed = step(&state, &action(A::Chargeback), "2026-06-02T00:00:00Z");
    // occurred on 1 June, reached us on 10 June: 45 days from 1 June
    let late = event_with(K::Representment, |e| {
        e.occur_time = Some(at("2026-06-01T08:00:00Z"));
    });
    let transition = apply(&filed, &late, "2026-06-10T08:00:00Z");
    assert_eq!(
        transition.state.due_time,
        Some(at("2026-07-17T00:00:00Z")),
        "not the 26 July an arrival on 10 June would give"
    );
    // a time a little ahead of our clock counts as now
    let ahead = event_with(K::Representment, |e| {
        e.occur_time = Some(at("2026-06-10T08:03:00Z"));
    });
    let transition = apply(&filed, &ahead, "2026-06-10T08:00:00Z");
    assert_eq!(transition.state.due_time, Some(at("2026-07-26T00:00:00Z")));
}

#[test]
fn merchant_windows_count_from_the_occurrence_and_an_explicit_due_time_wins() {
    let chargeback = |edit: fn(&mut NetworkEvent)| {
        let mut event = NetworkEvent::new(K::Chargeback);
        edit(&mut event);
        opened(merchant(Network::Visa), Opening::Network(event))
    };
    let on_arrival = chargeback(|_| {});
    let occurred = chargeback(|e| e.occur_time = Some(at("2026-05-25T10:00:00Z")));
    let arrival_due = on_arrival.due_time.unwrap();
    let occurred_due = occurred.due_time.unwrap();
    assert_eq!(arrival_due - occurred_due, chrono::Duration::days(7));
    let explicit = chargeback(|e| {
        e.occur_time = Some(at("2026-05-25T10:00:00Z"));
        e.due_time = Some(at("2026-06-20T00:00:00Z"));
    });
    assert_eq!(explicit.due_time, Some(at("2026-06-20T00:00:00Z")));
}

#[test]
fn the_events_reason_code_replaces_the_disputes_and_applies_h8() {
    // a Mastercard chargeback opened without a code; the arbitration event says 4808
    let chargeback = opened(
        merchant(Network::Mastercard),
        Opening::Network(NetworkEvent::new(K::Chargeback)),
    );
    let defended = step(
        &chargeback,
        &action(A::SubmitEvidence),
        "2026-06-02T00:00:00Z",
    );
    let error = refusal(&defended, &event(K::Arbitration), "2026-06-20T00:00:00Z");
    assert!(error.to_string().contains("H8"), "{error}");
    let coded = event_with(K::Arbitration, |e| {
        e.network_reason_code = Some("4808".into());
    });
    let arbitration = apply(&defended, &coded, "2026-06-20T00:00:00Z");
    assert_eq!(arbitration.state.stage, Stage::Arbitration);
    assert_eq!(
        arbitration.state.case.network_reason_code.as_deref(),
        Some("4808")
    );

    // a code that leaves H8 is recorded too, and the skip no longer applies
    let case = CaseFacts {
        network_reason_code: Some("4808".into()),
        ..merchant(Network::Mastercard)
    };
    let chargeback = opened(case, Opening::Network(NetworkEvent::new(K::Chargeback)));
    let defended = step(
        &chargeback,
        &action(A::SubmitEvidence),
        "2026-06-02T00:00:00Z",
    );
    let recoded = event_with(K::Arbitration, |e| {
        e.network_reason_code = Some("4837".into());
    });
    let error = refusal(&defended, &recoded, "2026-06-20T00:00:00Z");
    assert!(error.to_string().contains("H8"), "{error}");

    // a new case takes the code of the event that opens it
    let opened_coded = opened(
        merchant(Network::Mastercard),
        Opening::Network(NetworkEvent {
            network_reason_code: Some("4870".into()),
            ..NetworkEvent::new(K::Chargeback)
        }),
    );
    assert_eq!(
        opened_coded.case.network_reason_code.as_deref(),
        Some("4870")
    );
}
