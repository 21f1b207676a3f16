//! Ledger accounts: who owns them, what they hold, and which may go below zero.

use serde::Serialize;

use crate::money::Currency;

/// The owner of the platform's own accounts and of the external (rail) accounts.
pub const PLATFORM: &str = "platform";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// An organisation's spendable balance.
    Available,
    /// An organisation's funds reserved by holds.
    Held,
    /// What a provider organisation has earned and not yet been paid out.
    ProviderEarnings,
    /// $IO a provider has staked.
    Stake,
    /// The platform's fees.
    PlatformRevenue,
    /// The source of credits the platform grants (promotions, SLA credits, sign-up credit).
    Promotions,
    /// Money that arrived by card (Stripe); goes negative as it is credited to organisations.
    ExternalStripe,
    /// $IOSD and $IO deposited on Solana.
    ExternalSolana,
    /// Money paid out to providers.
    ExternalPayouts,
    /// $IO set aside for hourly block rewards.
    RewardsPool,
    /// $IO burnt (slashing).
    Burn,
    /// An organisation's card money on its way back to the card: out of `available` when a
    /// refund is asked, out of the ledger when Stripe has refunded it, back if it fails.
    RefundPending,
    /// What an organisation owes: a disputed card payment it had already spent. Runs
    /// negative; new clusters wait until it is paid back to zero.
    Debt,
    /// A provider's earnings on their way to its wallet on chain: out of `provider_earnings`
    /// when a payout is asked, out of the ledger once the transfer is finalized, back if it
    /// fails for good.
    PayoutPending,
    /// $IO minted by hourly blocks: runs negative, and minus its balance is everything
    /// emitted since launch.
    Emission,
    /// A provider's $IO taken by an open slashing case: burned when the case is upheld (or
    /// unanswered) and its appeal window has ended, returned when it is overturned.
    SlashEscrow,
}

impl AccountKind {
    pub const ALL: [AccountKind; 16] = [
        AccountKind::Available,
        AccountKind::Held,
        AccountKind::ProviderEarnings,
        AccountKind::Stake,
        AccountKind::PlatformRevenue,
        AccountKind::Promotions,
        AccountKind::ExternalStripe,
        AccountKind::ExternalSolana,
        AccountKind::ExternalPayouts,
        AccountKind::RewardsPool,
        AccountKind::Burn,
        AccountKind::RefundPending,
        AccountKind::Debt,
        AccountKind::PayoutPending,
        AccountKind::Emission,
        AccountKind::SlashEscrow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Available => "available",
            AccountKind::Held => "held",
            AccountKind::ProviderEarnings => "provider_earnings",
            AccountKind::Stake => "stake",
            AccountKind::PlatformRevenue => "platform_revenue",
            AccountKind::Promotions => "promotions",
            AccountKind::ExternalStripe => "external_stripe",
            AccountKind::ExternalSolana => "external_solana",
            AccountKind::ExternalPayouts => "external_payouts",
            AccountKind::RewardsPool => "rewards_pool",
            AccountKind::Burn => "burn",
            AccountKind::RefundPending => "refund_pending",
            AccountKind::Debt => "debt",
            AccountKind::PayoutPending => "payout_pending",
            AccountKind::Emission => "emission",
            AccountKind::SlashEscrow => "slash_escrow",
        }
    }

    pub fn parse(s: &str) -> Option<AccountKind> {
        AccountKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// External accounts mirror money outside the ledger and the promotions account issues
    /// credit, so they run negative; every other account refuses to be overdrawn.
    pub fn allows_negative(self) -> bool {
        matches!(
            self,
            AccountKind::Promotions
                | AccountKind::ExternalStripe
                | AccountKind::ExternalSolana
                | AccountKind::ExternalPayouts
                | AccountKind::Debt
                | AccountKind::Emission
        )
    }
}

/// Names one account: its owner, kind and currency. Its id is derived from them, so accounts
/// are created on first use without a lookup.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountRef {
    pub owner: String,
    pub kind: AccountKind,
    pub currency: Currency,
}

impl AccountRef {
    pub fn org(org_id: &str, kind: AccountKind, currency: Currency) -> AccountRef {
        AccountRef {
            owner: org_id.to_string(),
            kind,
            currency,
        }
    }

    pub fn platform(kind: AccountKind, currency: Currency) -> AccountRef {
        AccountRef {
            owner: PLATFORM.to_string(),
            kind,
            currency,
        }
    }

    /// Where the account comes in the order every transaction locks accounts in: first the
    /// accounts many transactions share (the platform's, a provider's earnings), then an
    /// organisation's own balances; by id within each. A settlement batch waiting its turn
    /// for a shared account then holds no customer's balance meanwhile, so that customer's
    /// creates (which place holds on those balances) do not queue behind the whole batch.
    pub fn lock_rank(&self) -> u8 {
        match self.kind {
            AccountKind::Available
            | AccountKind::Held
            | AccountKind::Stake
            | AccountKind::RefundPending
            | AccountKind::PayoutPending
            | AccountKind::SlashEscrow
            | AccountKind::Debt => 1,
            _ => 0,
        }
    }

    /// `acc_<owner>_<kind>_<currency>`, readable in logs and support tickets.
    pub fn id(&self) -> String {
        format!(
            "acc_{}_{}_{}",
            self.owner,
            self.kind.as_str(),
            self.currency.code().to_lowercase()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_kinds() {
        let a = AccountRef::org("org_1", AccountKind::Available, Currency::Usd);
        assert_eq!(a.id(), "acc_org_1_available_usd");
        assert_eq!(
            AccountRef::platform(AccountKind::Promotions, Currency::Io).id(),
            "acc_platform_promotions_io"
        );
        for k in AccountKind::ALL {
            assert_eq!(AccountKind::parse(k.as_str()), Some(k));
        }
        assert!(!AccountKind::Available.allows_negative());
        assert!(AccountKind::ExternalStripe.allows_negative());
    }

    #[test]
    fn shared_accounts_are_locked_before_an_organisations_own() {
        let usd = Currency::Usd;
        // By id alone the customer's accounts ("acc_org_…") would come before the platform's.
        let mut accounts = [
            AccountRef::org("org_a", AccountKind::Held, usd),
            AccountRef::platform(AccountKind::PlatformRevenue, usd),
            AccountRef::org("org_a", AccountKind::Available, usd),
            AccountRef::org("org_p", AccountKind::ProviderEarnings, usd),
        ];
        accounts.sort_by_key(|a| (a.lock_rank(), a.id()));
        let order: Vec<String> = accounts.iter().map(AccountRef::id).collect();
        assert_eq!(
            order,
            [
                "acc_org_p_provider_earnings_usd",
                "acc_platform_platform_revenue_usd",
                "acc_org_a_available_usd",
                "acc_org_a_held_usd",
            ]
        );
    }
}
