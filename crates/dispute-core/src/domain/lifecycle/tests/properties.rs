//! Properties over random sequences of triggers.

use proptest::prelude::*;

use super::*;

fn any_network() -> impl Strategy<Value = Network> {
    prop::sample::select(vec![
        Network::Visa,
        Network::Mastercard,
        Network::Amex,
        Network::Discover,
        Network::Other,
    ])
}

fn any_case() -> impl Strategy<Value = CaseFacts> {
    (
        any::<bool>(),
        any_network(),
        prop::sample::select(vec![None, Some("4808"), Some("4837"), Some("10.4")]),
        prop::sample::select(vec![
            Regulation::None,
            Regulation::RegulationE,
            Regulation::RegulationZ,
        ]),
        any::<(bool, bool, bool, bool)>(),
    )
        .prop_map(|(merchant_side, network, code, regulation, flags)| {
            let (new_account, pos, three_ds, fraud) = flags;
            CaseFacts {
                side: if merchant_side {
                    Side::Merchant
                } else {
                    Side::Issuer
                },
                network,
                reason: if fraud {
                    Reason::Fraudulent
                } else {
                    Reason::ProductUnacceptable
                },
                network_reason_code: code.map(str::to_owned),
                currency: "USD".into(),
                original_amount: Some(10_000),
                applicable_regulation: if merchant_side {
                    Regulation::None
                } else {
                    regulation
                },
                date_customer_reported: Some(day("2026-05-28")),
                issuer: IssuerFacts {
                    transaction_date: Some(day("2026-05-01")),
                    regulation_e: RegulationEFacts {
                        new_account,
                        pos_or_foreign: pos,
                    },
                    three_ds_authenticated: three_ds,
                    ..IssuerFacts::default()
                },
            }
        })
}

fn any_event() -> impl Strategy<Value = NetworkEvent> {
    (
        prop::sample::select(NetworkEventKind::ALL.to_vec()),
        prop::option::weighted(0.2, 0..60u64),
        prop::option::weighted(0.2, 1..=10_000i64),
        prop::bool::weighted(0.8),
        prop::option::weighted(0.3, 0..=100i64),
    )
        .prop_map(|(kind, due_days, amount, response_allowed, won_percent)| {
            NetworkEvent {
                due_time: due_days.map(|days| deadlines::calendar_deadline(at(T0), days)),
                amount,
                response_allowed,
                // a share of a 10 000 amount; other amounts make it invalid, also fine
                amount_won: won_percent.map(|percent| percent * 100),
                ..NetworkEvent::new(kind)
            }
        })
}

fn any_trigger() -> impl Strategy<Value = Trigger> {
    prop_oneof![
        3 => (
            prop::sample::select(ActionType::ALL.to_vec()),
            prop::option::weighted(0.2, 1..=10_000i64),
        )
            .prop_map(|(action, amount)| Trigger::Tenant(TenantAction {
                amount: amount.filter(|_| action_takes_amount(action)),
                ..TenantAction::new(action)
            })),
        4 => any_event().prop_map(Trigger::Network),
        1 => Just(Trigger::DeadlinePassed),
    ]
}

/// An action as a tenant would send it: an issuer-side CLOSE names its reason.
fn complete_action(state: &LifecycleState, action: ActionType) -> TenantAction {
    TenantAction {
        close_reason: (state.case.side == Side::Issuer && action == ActionType::Close)
            .then_some(CloseReason::CardholderWithdrew),
        ..TenantAction::new(action)
    }
}

/// A step of a random walk: any trigger, or one of the actions offered at that moment
/// (so that walks get deep into the stages).
#[derive(Debug, Clone)]
enum Step {
    Any(Trigger),
    Offered(usize),
    /// A network event that leads further than where the dispute is (applies or is
    /// refused as out of order).
    Forward(usize, bool),
}

impl Step {
    fn trigger(&self, state: &LifecycleState, now: DateTime<Utc>) -> Option<Trigger> {
        match self {
            Step::Any(trigger) => Some(trigger.clone()),
            Step::Offered(index) => {
                let offered = available_actions(state, now);
                let chosen = offered.get(index % offered.len().max(1))?;
                Some(Trigger::Tenant(complete_action(state, chosen.action)))
            }
            Step::Forward(index, response_allowed) => {
                let forward: Vec<NetworkEventKind> = NetworkEventKind::ALL
                    .iter()
                    .copied()
                    .filter(|kind| kind.outcome().is_none())
                    .filter(|kind| {
                        event_progress(state.case.side, *kind, state.stage)
                            .is_some_and(|target| target > state.progress())
                    })
                    .collect();
                let kind = forward.get(index % forward.len().max(1))?;
                Some(Trigger::Network(NetworkEvent {
                    response_allowed: *response_allowed,
                    ..NetworkEvent::new(*kind)
                }))
            }
        }
    }
}

fn any_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => any_trigger().prop_map(Step::Any),
        2 => any::<usize>().prop_map(Step::Offered),
        2 => (any::<usize>(), prop::bool::weighted(0.9))
            .prop_map(|(index, allowed)| Step::Forward(index, allowed)),
    ]
}

fn any_opening() -> impl Strategy<Value = Opening> {
    prop_oneof![
        prop::sample::select(vec![Stage::Inquiry, Stage::Chargeback]).prop_map(|stage| {
            Opening::Tenant {
                stage,
                due_time: None,
            }
        }),
        prop::sample::select(vec![
            K::RetrievalRequest,
            K::ChargebackNotified,
            K::Chargeback
        ])
        .prop_map(|kind| Opening::Network(NetworkEvent::new(kind))),
    ]
}

fn any_policy() -> impl Strategy<Value = MoneyPolicy> {
    (
        prop::sample::select(vec![None, Some(0), Some(FEE)]),
        prop::sample::select(vec![None, Some(ARBITRATION_FEE)]),
        any::<bool>(),
    )
        .prop_map(|(fee, arbitration_fee, refund)| MoneyPolicy {
            dispute_fees: fee
                .map(|fee| format!("USD={fee}"))
                .unwrap_or_default()
                .parse()
                .unwrap(),
            arbitration_fees: arbitration_fee
                .map(|fee| format!("USD={fee}"))
                .unwrap_or_default()
                .parse()
                .unwrap(),
            refund_fee_on_win: refund,
            settlement_days: 7,
        })
}

/// Opens a dispute the case's side allows.
fn open(case: CaseFacts, opening: Opening, policy: &MoneyPolicy) -> Transition {
    let opening = match (case.side, opening) {
        (Side::Issuer, _) => Opening::Tenant {
            stage: Stage::Inquiry,
            due_time: None,
        },
        (_, opening) => opening,
    };
    open_dispute(case, 10_000, &opening, policy, at(T0)).unwrap()
}

fn is_reopen(transition: &Transition) -> bool {
    transition.events.first() == Some(&DisputeEvent::Reopened)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn random_sequences_keep_every_invariant(
        case in any_case(),
        opening in any_opening(),
        policy in any_policy(),
        steps in prop::collection::vec((any_step(), 0..12u64), 1..40),
    ) {
        let opened = open(case, opening, &policy);
        check_ledger_consistency(&opened.state, &policy)
            .map_err(TestCaseError::fail)?;
        let mut state = opened.state;
        let mut now = at(T0);
        for (next, days) in steps {
            now += chrono::Duration::days(days as i64);
            let Some(trigger) = next.trigger(&state, now) else {
                continue;
            };
            // available_actions is exactly what decide accepts
            let offered = available_actions(&state, now);
            for action in ActionType::ALL {
                let decided = decide(&state, &Trigger::Tenant(complete_action(&state, *action)), &policy, now);
                let is_offered = offered.iter().any(|a| a.action == *action);
                prop_assert_eq!(
                    decided.is_ok(), is_offered,
                    "{:?} offered {} but decided {:?} at {:?}", action, is_offered, decided, state
                );
            }
            let Ok(Decision::Apply(transition)) = decide(&state, &trigger, &policy, now) else {
                continue;
            };
            let after = &transition.state;

            // no move out of a final status except a network reopen (M15)
            if state.is_final() {
                prop_assert!(matches!(trigger, Trigger::Network(_)), "{:?} moved a final dispute", trigger);
                prop_assert!(is_reopen(&transition), "{:?} left {:?} without reopening", trigger, state.status);
                prop_assert_eq!(state.case.side, Side::Merchant);
                prop_assert!(matches!(state.status, Status::Won | Status::Closed));
            } else {
                prop_assert!(!is_reopen(&transition));
            }
            // stages never go backwards, except NETWORK_REJECTED (I7)
            let rejected = matches!(&trigger, Trigger::Network(e) if e.kind == K::NetworkRejected);
            prop_assert!(
                stage_rank(after.stage) >= stage_rank(state.stage) || rejected,
                "{:?} moved {:?} back to {:?}", trigger, state.stage, after.stage
            );
            // network events never lower the progress of an open dispute (H9)
            if let Trigger::Network(_) = trigger && !rejected && !state.is_final() {
                prop_assert!(after.progress() >= state.progress() || after.is_final(),
                    "{:?}: {:?} -> {:?}", trigger, state.progress(), after.progress());
            }
            // the entries are what the totals moved by
            let mut totals = state.ledger;
            for entry in &transition.ledger_entries {
                prop_assert!(entry.amount != 0 || entry.fee() != 0);
                totals.add_entry(entry);
            }
            prop_assert_eq!(totals, after.ledger);
            // the ledger matches the status, in every state reached
            check_ledger_consistency(after, &policy).map_err(TestCaseError::fail)?;
            prop_assert!(!transition.events.is_empty());
            prop_assert_eq!(after.due_time.is_some() && after.status != Status::NeedsResponse, false);
            // a duplicate changes nothing: the same trigger again does not apply
            let again = decide(after, &trigger, &policy, now);
            prop_assert!(
                !matches!(again, Ok(Decision::Apply(_))),
                "{:?} applied twice: {:?}", trigger, again
            );
            state = transition.state;
        }
    }

    #[test]
    fn the_sweeper_applies_each_deadline_once(
        case in any_case(),
        opening in any_opening(),
        policy in any_policy(),
        days in 0..200u64,
    ) {
        let state = open(case, opening, &policy).state;
        let now = at(T0) + chrono::Duration::days(days as i64);
        match decide(&state, &Trigger::DeadlinePassed, &policy, now).unwrap() {
            Decision::Apply(transition) => {
                prop_assert!(state.next_deadline().is_some_and(|due| due <= now));
                let second = decide(&transition.state, &Trigger::DeadlinePassed, &policy, now).unwrap();
                let nothing_due = matches!(
                    second,
                    Decision::Unchanged(Unchanged { kind: UnchangedKind::NothingDue, .. })
                );
                prop_assert!(nothing_due, "applied twice: {:?}", second);
                // the issuer side never decides on a deadline (I14)
                if state.case.side == Side::Issuer {
                    prop_assert_eq!(transition.state.status, state.status);
                    prop_assert!(transition.ledger_entries.is_empty());
                }
            }
            Decision::Unchanged(_) => {
                prop_assert!(state.next_deadline().is_none_or(|due| due > now));
            }
        }
    }
}
