//! Unit tests of `dispute.rs`: validation of new disputes, metadata and filters.

use super::*;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap()
}

fn merchant_draft() -> NewDisputeDraft {
    NewDisputeDraft {
        side: Some(EnumInput::Known(Side::Merchant)),
        amount: 1000,
        currency: "usd".into(),
        network: Some(EnumInput::Known(Network::Visa)),
        reason: Some(EnumInput::Known(Reason::Fraudulent)),
        charge: "ch_123".into(),
        ..Default::default()
    }
}

fn violated_fields(result: Result<NewDispute, DisputeError>) -> Vec<String> {
    match result {
        Err(DisputeError::Validation(v)) => v.into_iter().map(|v| v.field).collect(),
        other => panic!("expected validation error, got {other:?}"),
    }
}

#[test]
fn a_minimal_merchant_dispute_gets_defaults() {
    let dispute = NewDispute::parse(merchant_draft(), now()).unwrap();
    assert_eq!(dispute.stage, Stage::Inquiry);
    assert_eq!(dispute.status, Status::NeedsResponse);
    assert_eq!(dispute.currency.as_str(), "USD");
    assert_eq!(dispute.payment_method_type, PaymentMethodType::Card);
    assert_eq!(dispute.applicable_regulation, Regulation::None);
    assert_eq!(dispute.charge.as_deref(), Some("ch_123"));
    assert_eq!(dispute.original_amount, None);
}

#[test]
fn every_bad_field_is_named() {
    let draft = NewDisputeDraft {
        side: Some(EnumInput::Unspecified),
        stage: Some(EnumInput::Unknown(42)),
        amount: -5,
        currency: "usdollar".into(),
        network: None,
        reason: Some(EnumInput::Unknown(99)),
        memo: "x".repeat(MAX_MEMO_CHARS + 1),
        charge: "c".repeat(256),
        date_customer_reported: "25/11/2026".into(),
        due_time: Some(now()),
        ..Default::default()
    };
    let mut fields = violated_fields(NewDispute::parse(draft, now()));
    fields.sort();
    assert_eq!(
        fields,
        vec![
            "amount",
            "charge",
            "currency",
            "date_customer_reported",
            "due_by",
            "memo",
            "network",
            "reason",
            "side",
            "stage"
        ]
    );
}

#[test]
fn issuer_disputes_need_the_report_date_and_open_in_inquiry() {
    let draft = NewDisputeDraft {
        side: Some(EnumInput::Known(Side::Issuer)),
        stage: Some(EnumInput::Known(Stage::Chargeback)),
        ..merchant_draft()
    };
    assert_eq!(
        violated_fields(NewDispute::parse(draft, now())),
        vec!["stage", "date_customer_reported"]
    );
    let draft = NewDisputeDraft {
        side: Some(EnumInput::Known(Side::Issuer)),
        date_customer_reported: "2026-11-20".into(),
        applicable_regulation: Some(EnumInput::Known(Regulation::RegulationE)),
        ..merchant_draft()
    };
    let dispute = NewDispute::parse(draft, now()).unwrap();
    assert_eq!(dispute.applicable_regulation, Regulation::RegulationE);
    assert_eq!(
        dispute.date_customer_reported,
        NaiveDate::from_ymd_opt(2026, 11, 20)
    );
}

#[test]
fn issuer_facts_are_checked_and_issuer_only() {
    let facts = IssuerFactsDraft {
        transaction_date: "2026-11-21".into(),
        new_account: true,
        billing_cycle_closing_day: 32,
        ..Default::default()
    };
    let draft = NewDisputeDraft {
        side: Some(EnumInput::Known(Side::Issuer)),
        date_customer_reported: "2026-11-20".into(),
        issuer_facts: Some(facts.clone()),
        ..merchant_draft()
    };
    assert_eq!(
        violated_fields(NewDispute::parse(draft, now())),
        vec![
            "issuer_facts.transaction_date",
            "issuer_facts.billing_cycle_closing_day"
        ]
    );
    let draft = NewDisputeDraft {
        side: Some(EnumInput::Known(Side::Issuer)),
        date_customer_reported: "2026-11-20".into(),
        issuer_facts: Some(IssuerFactsDraft {
            transaction_date: "2026-11-02".into(),
            billing_cycle_closing_day: 15,
            ..facts.clone()
        }),
        ..merchant_draft()
    };
    let issuer = NewDispute::parse(draft, now()).unwrap().issuer;
    assert!(issuer.regulation_e.new_account);
    assert_eq!(issuer.billing_cycle_closing_day, Some(15));
    assert!(issuer.transaction_posted);
    let merchant = NewDisputeDraft {
        issuer_facts: Some(IssuerFactsDraft::default()),
        ..merchant_draft()
    };
    assert_eq!(
        violated_fields(NewDispute::parse(merchant, now())),
        vec!["issuer_facts"]
    );
}

#[test]
fn report_date_cannot_be_in_the_future() {
    let draft = NewDisputeDraft {
        date_customer_reported: "2026-11-26".into(),
        ..merchant_draft()
    };
    assert_eq!(
        violated_fields(NewDispute::parse(draft, now())),
        vec!["date_customer_reported"]
    );
}

#[test]
fn merchant_side_has_no_consumer_regulation() {
    let draft = NewDisputeDraft {
        applicable_regulation: Some(EnumInput::Known(Regulation::RegulationZ)),
        ..merchant_draft()
    };
    assert_eq!(
        violated_fields(NewDispute::parse(draft, now())),
        vec!["applicable_regulation"]
    );
}

#[test]
fn amount_limits() {
    for (amount, ok) in [
        (0, false),
        (1, true),
        (MAX_AMOUNT, true),
        (MAX_AMOUNT + 1, false),
    ] {
        let draft = NewDisputeDraft {
            amount,
            ..merchant_draft()
        };
        assert_eq!(NewDispute::parse(draft, now()).is_ok(), ok, "{amount}");
    }
}

#[test]
fn original_amount_must_cover_the_dispute() {
    let draft = NewDisputeDraft {
        original_amount: 999,
        ..merchant_draft()
    };
    assert_eq!(
        violated_fields(NewDispute::parse(draft, now())),
        vec!["original_amount"]
    );
    let draft = NewDisputeDraft {
        original_amount: 1000,
        ..merchant_draft()
    };
    assert_eq!(
        NewDispute::parse(draft, now()).unwrap().original_amount,
        Some(1000)
    );
}

#[test]
fn metadata_limits() {
    let mut metadata = BTreeMap::new();
    metadata.insert("".to_owned(), "v".to_owned());
    metadata.insert("k".repeat(41), "v".to_owned());
    metadata.insert("ok".to_owned(), "v".repeat(501));
    metadata.insert("fine".to_owned(), "v".to_owned());
    assert_eq!(validate_metadata(&metadata).len(), 3);
    let many: BTreeMap<String, String> =
        (0..51).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    assert_eq!(validate_metadata(&many).len(), 1);
}

#[test]
fn request_ids() {
    assert_eq!(validate_request_id(""), Ok(None));
    assert_eq!(validate_request_id("req-1"), Ok(Some("req-1".into())));
    assert!(validate_request_id("has space").is_err());
    assert!(validate_request_id(&"a".repeat(256)).is_err());
}

#[test]
fn filter_fingerprints_differ_by_filter() {
    let a = DisputeFilter::default();
    let b = DisputeFilter {
        charge: Some("ch_1".into()),
        ..Default::default()
    };
    assert_ne!(a.canonical(), b.canonical());
    assert_eq!(a.canonical(), DisputeFilter::default().canonical());
}

#[test]
fn customer_report_dates_accept_dates_and_rfc3339_timestamps() {
    let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d);
    assert_eq!(reported_date("2024-05-28"), day(2024, 5, 28));
    assert_eq!(reported_date("2024-05-28T12:25:00Z"), day(2024, 5, 28));
    assert_eq!(
        reported_date("2024-05-28T12:25:00.5+02:00"),
        day(2024, 5, 28)
    );
    // The UTC calendar day counts.
    assert_eq!(reported_date("2024-05-28T23:30:00-05:00"), day(2024, 5, 29));
    for bad in [
        "28/05/2024",
        "2024-05-28T12:25:00",
        "2024-05-28 12:25",
        "yesterday",
    ] {
        assert_eq!(reported_date(bad), None, "{bad}");
    }
}
