//! GraphQL for deposits on Solana and payout wallets. Same services as `/v1/billing/deposits`,
//! `/v1/admin/chain-deposits` and `/v1/payouts/wallets`; the inputs and answers are the
//! domain's own types.

use async_graphql::{Context, Object};
use iocloud_control::Page;
use iocloud_control::deposits::{AssignRequest, ChainDeposit, DepositIntent, DepositRequest};
use iocloud_control::payouts::{Wallet, WalletChallenge, WalletChallengeRequest, WalletRequest};

use super::schema::{actor, control, gql_error, list_cost, page};

type GqlResult<T> = async_graphql::Result<T>;

#[derive(Default)]
pub struct DepositsQuery;

#[Object]
impl DepositsQuery {
    /// The organisation's deposit intents, oldest first.
    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn deposits(
        &self,
        ctx: &Context<'_>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<DepositIntent>> {
        control(ctx)
            .deposits
            .deposits(actor(ctx)?, &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }

    /// One deposit intent of the organisation.
    async fn deposit(&self, ctx: &Context<'_>, id: String) -> GqlResult<DepositIntent> {
        control(ctx)
            .deposits
            .deposit(actor(ctx)?, &id)
            .await
            .map_err(gql_error)
    }

    /// The organisation's payout wallets.
    async fn wallets(&self, ctx: &Context<'_>) -> GqlResult<Vec<Wallet>> {
        control(ctx)
            .payouts
            .wallets(actor(ctx)?)
            .await
            .map_err(gql_error)
    }

    /// Transfers into the treasury credited to nobody, and those that failed on chain
    /// (platform operators only).
    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn unmatched_deposits(
        &self,
        ctx: &Context<'_>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<ChainDeposit>> {
        control(ctx)
            .deposits
            .unmatched_deposits(actor(ctx)?, &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }
}

#[derive(Default)]
pub struct DepositsMutation;

#[Object]
impl DepositsMutation {
    /// Asks for a deposit (as `POST /v1/billing/deposits`): a Solana Pay transfer request.
    async fn create_deposit(
        &self,
        ctx: &Context<'_>,
        input: DepositRequest,
    ) -> GqlResult<DepositIntent> {
        control(ctx)
            .deposits
            .create_deposit(actor(ctx)?, &input)
            .await
            .map_err(gql_error)
    }

    /// A challenge to sign with a wallet's key (as `POST /v1/payouts/wallets/challenges`).
    async fn wallet_challenge(
        &self,
        ctx: &Context<'_>,
        input: WalletChallengeRequest,
    ) -> GqlResult<WalletChallenge> {
        control(ctx)
            .payouts
            .wallet_challenge(actor(ctx)?, &input)
            .await
            .map_err(gql_error)
    }

    /// Adds the wallet a signed challenge proves (as `POST /v1/payouts/wallets`).
    async fn add_wallet(&self, ctx: &Context<'_>, input: WalletRequest) -> GqlResult<Wallet> {
        control(ctx)
            .payouts
            .add_wallet(actor(ctx)?, &input)
            .await
            .map_err(gql_error)
    }

    /// Credits an unmatched deposit (`cdp_…`) to an organisation, once
    /// (platform operators only).
    async fn assign_deposit(
        &self,
        ctx: &Context<'_>,
        id: String,
        org_id: String,
    ) -> GqlResult<ChainDeposit> {
        control(ctx)
            .deposits
            .assign_deposit(actor(ctx)?, &id, &AssignRequest { org_id })
            .await
            .map_err(gql_error)
    }
}
