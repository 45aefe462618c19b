//! Money as seed 004 shows it: balance transactions carry `fee`, `fee_details`, `net`,
//! `status`, `reporting_category` and `available_on`; dispute fees and arbitration fees are
//! configured per currency (JPY in yen); the cap on the disputes of one charge counts per
//! currency. The `point_6_` prefix of test names is issue 11's point 6.

use disputes_proto::disputes_v1 as dpb;
use dpb::BalanceTransactionType as Txn;
use dpb::DisputeActionType as Action;
use dpb::DisputeStage as Stage;
use dpb::DisputeStatus as Status;
use dpb::NetworkEventType as Net;
use tonic::Code;

use crate::fixtures::*;

/// The arbitration fee the stack configures for USD (dispute-core's default: USD 500.00).
const ARBITRATION_FEE: i64 = 50_000;

/// Each balance transaction as (type, amount, fee, net).
fn money(dispute: &dpb::Dispute) -> Vec<(Txn, i64, i64, i64)> {
    dispute
        .balance_transactions
        .iter()
        .map(|t| (t.r#type(), t.amount, t.fee, t.net))
        .collect()
}

/// Each fee detail of a balance transaction as (type, amount, currency, description).
fn fee_details(t: &dpb::BalanceTransaction) -> Vec<(dpb::FeeType, i64, String, String)> {
    t.fee_details
        .iter()
        .map(|d| {
            (
                d.r#type(),
                d.amount,
                d.currency.clone(),
                d.description.clone(),
            )
        })
        .collect()
}

/// A merchant-side chargeback opened by the tenant, with a network case id.
fn merchant_chargeback(
    amount: i64,
    currency: &str,
    charge: &str,
    case: &str,
) -> dpb::CreateDisputeRequest {
    dpb::CreateDisputeRequest {
        amount,
        currency: currency.to_owned(),
        network_case_id: case.to_owned(),
        ..merchant_dispute("", charge)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_6_withdrawal_carries_fee_and_net() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;

    // Seed 004: a withdrawal of -50 with a 1500 dispute fee reads fee 1500, net -1550.
    let dispute = create(
        &mut disputes,
        merchant_chargeback(50, "usd", "ch_p6_seed", "VISA-P6-1"),
    )
    .await;
    let dispute = get_dispute(&mut disputes, &dispute.id).await;
    assert_eq!(money(&dispute), vec![(Txn::Withdrawal, -50, FEE, -1_550)]);
    let withdrawal = &dispute.balance_transactions[0];
    assert_eq!(withdrawal.currency, "USD");
    assert_eq!(
        fee_details(withdrawal),
        vec![(
            dpb::FeeType::DisputeFee,
            FEE,
            "USD".to_owned(),
            "dispute fee (USD 15.00)".to_owned()
        )]
    );
    assert_eq!(withdrawal.reporting_category, "dispute");
    assert_eq!(withdrawal.status(), dpb::BalanceTransactionStatus::Pending);
    // available at midnight UTC seven days after the day it was created
    let created = withdrawal.create_time.as_ref().unwrap();
    let created = chrono::DateTime::from_timestamp(created.seconds, 0).unwrap();
    let expected = (created.date_naive() + chrono::Days::new(7))
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    assert_eq!(withdrawal.available_on, Some(timestamp(expected)));
    assert_eq!(net(&dispute), -1_550);

    // WON: the funds come back; the fee stays (no refund configured).
    let mut won = network_event(dpb::CardNetwork::Visa, "VISA-P6-1", "won", Net::Won);
    won.message = "issuer withdrew".into();
    let won = record(&mut disputes, won).await.unwrap().dispute.unwrap();
    assert_eq!(won.status(), Status::Won);
    assert_eq!(
        money(&won),
        vec![
            (Txn::Withdrawal, -50, FEE, -1_550),
            (Txn::Reinstatement, 50, 0, 50)
        ]
    );
    assert_eq!(
        won.balance_transactions[1].reporting_category,
        "dispute_reversal"
    );
    assert_eq!((net(&won), fee(&won)), (-FEE, FEE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_6_won_with_fee_refund_reinstates_fee_and_funds() {
    let stack = stack_with(harness::StackOptions {
        refund_fee_on_win: true,
        ..Default::default()
    })
    .await;
    let mut disputes = stack.disputes_of("acme").await;
    let dispute = create(
        &mut disputes,
        merchant_chargeback(50, "USD", "ch_p6_refund", "VISA-P6-2"),
    )
    .await;
    let won = record(
        &mut disputes,
        network_event(dpb::CardNetwork::Visa, "VISA-P6-2", "won", Net::Won),
    )
    .await
    .unwrap()
    .dispute
    .unwrap();
    assert_eq!(won.id, dispute.id);
    // The reinstatement carries the refund: fee -1500, net +1550.
    assert_eq!(
        money(&won),
        vec![
            (Txn::Withdrawal, -50, FEE, -1_550),
            (Txn::Reinstatement, 50, -FEE, 1_550)
        ]
    );
    assert_eq!(
        fee_details(&won.balance_transactions[1]),
        vec![(
            dpb::FeeType::DisputeFee,
            -FEE,
            "USD".to_owned(),
            "dispute fee refunded (USD 15.00)".to_owned()
        )]
    );
    assert_eq!((net(&won), fee(&won)), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_6_fees_per_currency_with_jpy_in_yen() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;

    // JPY has no decimals: 3000 is ¥3,000 and the configured fee JPY=2000 is ¥2,000.
    let yen = create(
        &mut disputes,
        merchant_chargeback(3_000, "jpy", "ch_p6_jpy", "VISA-P6-JPY"),
    )
    .await;
    assert_eq!(yen.currency, "JPY");
    assert_eq!(money(&yen), vec![(Txn::Withdrawal, -3_000, 2_000, -5_000)]);
    assert_eq!(
        fee_details(&yen.balance_transactions[0]),
        vec![(
            dpb::FeeType::DisputeFee,
            2_000,
            "JPY".to_owned(),
            "dispute fee (JPY 2000)".to_owned()
        )]
    );

    // EUR has its own fee, in cents.
    let euro = create(
        &mut disputes,
        merchant_chargeback(9_900, "EUR", "ch_p6_eur", "VISA-P6-EUR"),
    )
    .await;
    assert_eq!(
        money(&euro),
        vec![(Txn::Withdrawal, -9_900, 1_500, -11_400)]
    );

    // A currency without a configured fee: no fee, and the history says why.
    let franc = create(
        &mut disputes,
        merchant_chargeback(5_000, "CHF", "ch_p6_chf", "VISA-P6-CHF"),
    )
    .await;
    assert_eq!(money(&franc), vec![(Txn::Withdrawal, -5_000, 0, -5_000)]);
    assert!(franc.balance_transactions[0].fee_details.is_empty());
    let created = franc.action_history.last().unwrap();
    assert!(
        created
            .message
            .contains("no dispute fee is configured for CHF"),
        "{}",
        created.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_6_arbitration_fee_on_both_sides() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;

    // Merchant side (M12, via H8's Mastercard 4808): arbitration charges the fee as its own
    // entry; a network WON gives it back (the losing party bears it).
    let mut request = merchant_chargeback(12_500, "USD", "ch_p6_arb", "MC-P6-ARB");
    request.network = dpb::CardNetwork::Mastercard.into();
    request.network_reason_code = "4808".into();
    let dispute = create(&mut disputes, request).await;
    submit(&mut disputes, &dispute.id).await;
    let arbitration = record(
        &mut disputes,
        network_event(
            dpb::CardNetwork::Mastercard,
            "MC-P6-ARB",
            "arb",
            Net::Arbitration,
        ),
    )
    .await
    .unwrap()
    .dispute
    .unwrap();
    assert_eq!(arbitration.stage(), Stage::Arbitration);
    assert_eq!(
        money(&arbitration),
        vec![
            (Txn::Withdrawal, -12_500, FEE, -14_000),
            (Txn::ArbitrationFee, 0, ARBITRATION_FEE, -ARBITRATION_FEE)
        ]
    );
    let charged = &arbitration.balance_transactions[1];
    assert_eq!(charged.reporting_category, "fee");
    assert_eq!(
        fee_details(charged),
        vec![(
            dpb::FeeType::ArbitrationFee,
            ARBITRATION_FEE,
            "USD".to_owned(),
            "arbitration fee (USD 500.00)".to_owned()
        )]
    );
    let won = record(
        &mut disputes,
        network_event(dpb::CardNetwork::Mastercard, "MC-P6-ARB", "won", Net::Won),
    )
    .await
    .unwrap()
    .dispute
    .unwrap();
    assert_eq!(won.status(), Status::Won);
    assert_eq!(
        money(&won)[2..],
        [
            (Txn::Reinstatement, 12_500, 0, 12_500),
            (Txn::ArbitrationFee, 0, -ARBITRATION_FEE, ARBITRATION_FEE)
        ]
    );
    assert_eq!(net(&won), -FEE, "only the dispute fee stays");

    // Issuer side (I11 → I12): filing ARBITRATION charges the issuer the fee; the
    // cardholder's money (the amounts) does not move, and a loss keeps the fee.
    let mut request = issuer_dispute("txn_p6_arb");
    request.date_customer_reported = today();
    let issuer = create(&mut disputes, request).await;
    apply_action(
        &mut disputes,
        dpb::CreateActionRequest {
            network_case_id: "MC-P6-ISS".into(),
            ..action_request(&issuer.id, Action::Chargeback)
        },
    )
    .await
    .unwrap();
    record(
        &mut disputes,
        network_event(
            dpb::CardNetwork::Mastercard,
            "MC-P6-ISS",
            "rep",
            Net::Representment,
        ),
    )
    .await
    .unwrap();
    act(&mut disputes, &issuer.id, Action::PreArbitration)
        .await
        .unwrap();
    let answered = record(
        &mut disputes,
        network_event(
            dpb::CardNetwork::Mastercard,
            "MC-P6-ISS",
            "pre-arb-response",
            Net::PreArbitrationResponse,
        ),
    )
    .await
    .unwrap()
    .dispute
    .unwrap();
    assert!(money(&answered).is_empty(), "no fee before arbitration");
    assert!(available(&answered).contains(&Action::Arbitration));
    let filed = act(&mut disputes, &issuer.id, Action::Arbitration)
        .await
        .unwrap();
    assert_eq!(filed.stage(), Stage::Arbitration);
    assert_eq!(
        money(&filed),
        vec![(Txn::ArbitrationFee, 0, ARBITRATION_FEE, -ARBITRATION_FEE)]
    );
    assert_eq!(filed.balance_transactions[0].reporting_category, "fee");
    let lost = record(
        &mut disputes,
        network_event(dpb::CardNetwork::Mastercard, "MC-P6-ISS", "lost", Net::Lost),
    )
    .await
    .unwrap()
    .dispute
    .unwrap();
    assert_eq!(lost.status(), Status::Lost);
    assert_eq!(
        money(&lost),
        vec![(Txn::ArbitrationFee, 0, ARBITRATION_FEE, -ARBITRATION_FEE)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_6_original_amount_cap_counts_per_currency() {
    let stack = stack().await;
    let mut disputes = stack.disputes_of("acme").await;
    let claim = |amount: i64, currency: &str| dpb::CreateDisputeRequest {
        original_amount: 20_000,
        ..merchant_chargeback(amount, currency, "ch_p6_cap", "")
    };

    // 12,000 USD and 15,000 EUR of one charge: each within its own 20,000, never summed.
    create(&mut disputes, claim(12_000, "USD")).await;
    let euro = create(&mut disputes, claim(15_000, "EUR")).await;
    assert_eq!(euro.currency, "EUR");

    // A USD dispute past the USD original is refused; the EUR side still has 5,000 left.
    let refused = disputes
        .create_dispute(claim(9_000, "USD"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(error_reason(&refused), "AMOUNT_EXCEEDS_ORIGINAL");
    create(&mut disputes, claim(5_000, "EUR")).await;
    let refused = disputes.create_dispute(claim(1, "EUR")).await.unwrap_err();
    assert_eq!(error_reason(&refused), "AMOUNT_EXCEEDS_ORIGINAL");
    create(&mut disputes, claim(8_000, "USD")).await;
}
