//! The dispute's enumerations, with their storage names.

/// Declares an enum whose variants have a stable lower-case storage name.
macro_rules! stored_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// Name used in the database.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses a storage name.
            pub fn parse(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

stored_enum!(
    /// Which party we serve.
    Side { Merchant => "merchant", Issuer => "issuer" }
);
stored_enum!(
    /// Where in the network process the dispute is.
    Stage {
        Inquiry => "inquiry",
        Chargeback => "chargeback",
        Representment => "representment",
        PreArbitration => "pre_arbitration",
        Arbitration => "arbitration",
    }
);
stored_enum!(
    /// Where the dispute stands for the side we serve.
    Status {
        NeedsResponse => "needs_response",
        UnderReview => "under_review",
        Won => "won",
        Lost => "lost",
        Closed => "closed",
    }
);
stored_enum!(
    Network {
        Visa => "visa",
        Mastercard => "mastercard",
        Amex => "amex",
        Discover => "discover",
        Jcb => "jcb",
        Unionpay => "unionpay",
        Diners => "diners",
        Other => "other",
    }
);
stored_enum!(
    PaymentMethodType { Card => "card", BankAccount => "bank_account" }
);
stored_enum!(
    /// Stripe's dispute reasons.
    Reason {
        BankCannotProcess => "bank_cannot_process",
        CheckReturned => "check_returned",
        CreditNotProcessed => "credit_not_processed",
        CustomerInitiated => "customer_initiated",
        DebitNotAuthorized => "debit_not_authorized",
        Duplicate => "duplicate",
        Fraudulent => "fraudulent",
        General => "general",
        IncorrectAccountDetails => "incorrect_account_details",
        InsufficientFunds => "insufficient_funds",
        ProductNotReceived => "product_not_received",
        ProductUnacceptable => "product_unacceptable",
        SubscriptionCanceled => "subscription_canceled",
        Unrecognized => "unrecognized",
    }
);
stored_enum!(
    Regulation { RegulationE => "regulation_e", RegulationZ => "regulation_z", None => "none" }
);
stored_enum!(
    CreditStatus { None => "none", Provisional => "provisional", Final => "final", Reversed => "reversed" }
);
stored_enum!(
    /// Who caused a change.
    Actor { Tenant => "tenant", Network => "network", System => "system" }
);
stored_enum!(
    BalanceTransactionType {
        Withdrawal => "withdrawal",
        DisputeFee => "dispute_fee",
        Reinstatement => "reinstatement",
        ProvisionalCredit => "provisional_credit",
        ProvisionalCreditReversal => "provisional_credit_reversal",
        WriteOff => "write_off",
        ArbitrationFee => "arbitration_fee",
    }
);
stored_enum!(
    /// Which fee a balance transaction's fee detail is.
    FeeType { DisputeFee => "dispute_fee", ArbitrationFee => "arbitration_fee" }
);
stored_enum!(
    /// Whether a balance transaction's money is usable yet (`available_on` passed).
    BalanceTransactionStatus { Pending => "pending", Available => "available" }
);
stored_enum!(
    /// What the tenant can do to a dispute.
    ActionType {
        Accept => "accept",
        SubmitEvidence => "submit_evidence",
        ProvisionalCredit => "provisional_credit",
        WriteOff => "write_off",
        Deny => "deny",
        Chargeback => "chargeback",
        AcceptRepresentment => "accept_representment",
        PreArbitration => "pre_arbitration",
        Arbitration => "arbitration",
        Close => "close",
    }
);
stored_enum!(
    /// Issuer side: a deadline whose passing the sweeper flags (I14, `dispute.overdue`):
    /// the Reg E provisional-credit due date, the Reg E / Z decision date, or the window of
    /// the last network action (`due_by`).
    OverdueDeadline {
        ProvisionalCreditDue => "provisional_credit_due",
        DecisionDue => "decision_due",
        ResponseDue => "response_due",
    }
);
stored_enum!(
    /// Why a dispute was closed by its tenant (issuer-side CLOSE).
    CloseReason { CardholderWithdrew => "cardholder_withdrew" }
);

impl Status {
    /// WON, LOST and CLOSED end a dispute (until a network reopens it).
    pub fn is_final(self) -> bool {
        matches!(self, Status::Won | Status::Lost | Status::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_names_round_trip() {
        for stage in Stage::ALL {
            assert_eq!(Stage::parse(stage.as_str()), Some(*stage));
        }
        for reason in Reason::ALL {
            assert_eq!(Reason::parse(reason.as_str()), Some(*reason));
        }
        assert_eq!(Reason::ALL.len(), 14);
        assert_eq!(Status::parse("nope"), None);
    }

    #[test]
    fn final_statuses() {
        assert!(Status::Won.is_final());
        assert!(Status::Closed.is_final());
        assert!(!Status::NeedsResponse.is_final());
    }
}
