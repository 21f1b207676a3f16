//! Every `code` a client can read: REST's problem documents and GraphQL's `extensions.code`
//! both render this one enum, so a code cannot be misspelt, and the API document lists them all.
//! A code never changes once published: clients branch on it.

use serde::{Deserialize, Serialize};

macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = $text:literal, )*) => {
        /// A stable, machine-readable error code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )* ];

            pub fn as_str(self) -> &'static str {
                match self {
                    $( ErrorCode::$variant => $text, )*
                }
            }
        }
    };
}

codes! {
    // The request itself.
    /// A field's value is out of its range or form; `field` names it.
    ValidationFailed = "validation_failed",
    /// A name or reason holds invisible or direction-changing characters.
    InvisibleCharacters = "invisible_characters",
    /// An agent reported an endpoint that is not an address.
    InvalidEndpoint = "invalid_endpoint",
    MalformedJson = "malformed_json",
    InvalidBody = "invalid_body",
    UnsupportedMediaType = "unsupported_media_type",
    BodyTooLarge = "body_too_large",
    BadRequest = "bad_request",
    MethodNotAllowed = "method_not_allowed",
    NotFound = "not_found",
    Timeout = "timeout",
    /// GraphQL: the query nests deeper than the schema allows.
    QueryTooDeep = "query_too_deep",
    /// GraphQL: the query selects more fields than one request may.
    QueryTooComplex = "query_too_complex",
    /// GraphQL: the query does not parse or does not fit the schema.
    InvalidQuery = "invalid_query",
    /// GraphQL: signUp, logIn and refresh run alone.
    OneAuthMutationPerRequest = "one_auth_mutation_per_request",

    // Who is asking.
    Unauthenticated = "unauthenticated",
    InvalidCredentials = "invalid_credentials",
    InvalidToken = "invalid_token",
    TokenExpired = "token_expired",
    RefreshTokenReused = "refresh_token_reused",
    TooManyLoginAttempts = "too_many_login_attempts",
    Forbidden = "forbidden",
    /// A user with no organisation asked for something that needs one.
    NoOrganization = "no_organization",
    /// A subscription's role changed since it began.
    RoleChanged = "role_changed",

    // Limits.
    RateLimited = "rate_limited",
    /// This replica is stopping: reconnect (another replica answers) and resume a stream from
    /// the last event seen. `Retry-After` says when.
    ServerStopping = "server_stopping",
    /// The database could not be reached (a restart, a network cut). Retry after
    /// `Retry-After`; a create with the same `Idempotency-Key`, since the outcome of a request
    /// cut at its very end is unknown.
    DatabaseUnavailable = "database_unavailable",
    /// This replica has more requests than it can serve in time: nothing of this one was done.
    /// Retry after `Retry-After` seconds.
    Overloaded = "overloaded",
    TooManySubscriptions = "too_many_subscriptions",
    QuotaExceeded = "quota_exceeded",

    // Idempotency.
    IdempotencyKeyReused = "idempotency_key_reused",
    IdempotencyKeyInFlight = "idempotency_key_in_flight",
    IdempotencyOutcomeUnknown = "idempotency_outcome_unknown",

    // State conflicts.
    /// The caller's `resource_version` is not the resource's current one.
    StaleResourceVersion = "stale_resource_version",
    ConcurrentUpdate = "concurrent_update",
    /// The resource is not in a state that allows this step.
    InvalidState = "invalid_state",
    NameTaken = "name_taken",
    /// The organisation holds this SSH key already (the same fingerprint), under another name.
    SshKeyExists = "ssh_key_exists",
    EmailTaken = "email_taken",
    AlreadyMember = "already_member",
    LastOwner = "last_owner",
    InvitationPending = "invitation_pending",
    InvitationExpired = "invitation_expired",
    InvitationRevoked = "invitation_revoked",
    InvitationUsed = "invitation_used",
    /// A cluster has no credentials to give (yet, or for its kind).
    NoCredentials = "no_credentials",
    /// An agent answered a challenge that was never issued or has passed.
    NoChallenge = "no_challenge",
    /// A device asked for its hourly proof while it needs none: it is not listed, or it serves
    /// a rental (its nodes' reports prove it).
    ProofNotNeeded = "proof_not_needed",
    /// This hour's proof is answered already; the next hour brings a new one.
    ProofAnswered = "proof_answered",
    /// A node reported ready before its node test passed.
    NodeTestPending = "node_test_pending",
    /// A node's test is answered already; the first answer stands.
    NodeTestAnswered = "node_test_answered",
    /// A slashing case's appeal came after its window closed.
    AppealWindowClosed = "appeal_window_closed",
    /// A slashing case asked for more $IO than the provider's stake and unwithdrawn rewards.
    SlashExceedsHoldings = "slash_exceeds_holdings",
    /// A co-staking offer is taken (or withdrawn) already.
    OfferTaken = "offer_taken",
    /// A co-stake cannot be unstaked before its term ends.
    CostakeInTerm = "costake_in_term",
    /// Proposing needs more $IO staked than the organisation has.
    ProposalStakeShort = "proposal_stake_short",
    /// A vote came after its proposal's vote closed.
    VotingClosed = "voting_closed",
    /// The organisation had no $IO staked when the vote opened.
    NoVotingWeight = "no_voting_weight",
    /// The audit feed broke; events may have been missed.
    StreamInterrupted = "stream_interrupted",

    // Devices and capacity.
    DeviceRetired = "device_retired",
    DeviceBusy = "device_busy",
    DeviceUnavailable = "device_unavailable",
    /// A device needs stake before it can take work.
    StakeRequired = "stake_required",
    InsufficientCapacity = "insufficient_capacity",
    /// Another request took the capacity this one was placed on; retrying places it again.
    CapacityContended = "capacity_contended",
    /// Another replica is settling the same holds; retrying is safe.
    SettlementContended = "settlement_contended",

    // Money.
    InvalidAmount = "invalid_amount",
    CurrencyMismatch = "currency_mismatch",
    AmountOverflow = "amount_overflow",
    InsufficientFunds = "insufficient_funds",
    UnbalancedTransaction = "unbalanced_transaction",
    ExternalRefReused = "external_ref_reused",
    HoldExceeded = "hold_exceeded",
    PriceFeedUnavailable = "price_feed_unavailable",
    QuoteExpired = "quote_expired",
    StakeLocked = "stake_locked",
    NotReversible = "not_reversible",
    /// A card payment was declined; the message says why, as the card's issuer gave it.
    CardDeclined = "card_declined",
    /// The payment provider refused the request (an unknown or unusable payment method).
    PaymentRefused = "payment_refused",
    /// Too many top-ups are waiting for their card; finish those first.
    TooManyPendingTopUps = "too_many_pending_top_ups",
    /// More was asked to be refunded than is refundable; the message says how much is.
    RefundExceedsRefundable = "refund_exceeds_refundable",
    /// The organisation owes money (a disputed card payment already spent): pay it first.
    DebtOutstanding = "debt_outstanding",
    /// This deployment takes no payments on this rail (its settings are not given).
    RailNotConfigured = "rail_not_configured",
    /// The payment provider did not answer in time or failed; retrying later is safe.
    RailUnavailable = "rail_unavailable",
    /// A payout smaller than the smallest one paid; the message says how small.
    PayoutBelowMinimum = "payout_below_minimum",
    /// A payout over what the provider may be paid today; the message says what is left.
    PayoutLimitExceeded = "payout_limit_exceeded",
    /// A webhook whose signature does not verify, is too old, or does not parse.
    WebhookRejected = "webhook_rejected",

    /// Something went wrong on our side; the detail is in the log, under the request id.
    Internal = "internal",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn each_code_is_written_once_and_as_serde_writes_it() {
        let mut seen = std::collections::HashSet::new();
        for &code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{code} twice");
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, code.as_str(), "serde and as_str disagree");
            assert!(
                code.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code}"
            );
        }
    }
}
