//! GraphQL for card payments. Same service as `/v1/billing/top-ups`; the request and the
//! top-up are the domain's own types.

use async_graphql::{Context, Object};
use iocloud_control::Page;
use iocloud_control::billing::alerts::{BalanceAlert, BalanceAlertRequest};
use iocloud_control::payments::{
    AutoReload, AutoReloadRequest, Card, CardRequest, Refund, RefundRequest, Refundable, TopUp,
    TopUpRequest,
};

use super::schema::{actor, control, gql_error, list_cost, page};

type GqlResult<T> = async_graphql::Result<T>;

#[derive(Default)]
pub struct PaymentsQuery;

#[Object]
impl PaymentsQuery {
    /// The organisation's card top-ups, oldest first.
    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn top_ups(
        &self,
        ctx: &Context<'_>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<TopUp>> {
        control(ctx)
            .payments
            .top_ups(actor(ctx)?, &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }

    /// The organisation's refunds of card credit, oldest first.
    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn refunds(
        &self,
        ctx: &Context<'_>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<Refund>> {
        control(ctx)
            .payments
            .refunds(actor(ctx)?, &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }

    /// The organisation's low-balance alerts, each with whether the balance is under it.
    async fn balance_alerts(&self, ctx: &Context<'_>) -> GqlResult<Vec<BalanceAlert>> {
        control(ctx)
            .billing
            .balance_alerts(actor(ctx)?)
            .await
            .map_err(gql_error)
    }

    /// The organisation's saved cards.
    async fn cards(&self, ctx: &Context<'_>) -> GqlResult<Vec<Card>> {
        control(ctx)
            .payments
            .cards(actor(ctx)?)
            .await
            .map_err(gql_error)
    }

    /// The organisation's auto-reload settings.
    async fn auto_reload(&self, ctx: &Context<'_>) -> GqlResult<AutoReload> {
        control(ctx)
            .payments
            .auto_reload(actor(ctx)?)
            .await
            .map_err(gql_error)
    }

    /// How much card credit could be refunded now.
    async fn refundable(&self, ctx: &Context<'_>) -> GqlResult<Refundable> {
        control(ctx)
            .payments
            .refundable(actor(ctx)?)
            .await
            .map_err(gql_error)
    }

    /// One card top-up of the organisation.
    async fn top_up(&self, ctx: &Context<'_>, id: String) -> GqlResult<TopUp> {
        control(ctx)
            .payments
            .get_top_up(actor(ctx)?, &id)
            .await
            .map_err(gql_error)
    }
}

#[derive(Default)]
pub struct PaymentsMutation;

#[Object]
impl PaymentsMutation {
    /// Tops up the organisation's USD balance by card (as `POST /v1/billing/top-ups`): with
    /// `paymentMethod` the card is charged now (`card_declined` when it is refused); without,
    /// the answer's `clientSecret` lets the card form confirm it.
    async fn top_up(&self, ctx: &Context<'_>, input: TopUpRequest) -> GqlResult<TopUp> {
        control(ctx)
            .payments
            .top_up(actor(ctx)?, &input)
            .await
            .map_err(gql_error)
    }

    /// Sets the low-balance alert of a currency (as `PUT /v1/billing/low-balance`).
    async fn set_balance_alert(
        &self,
        ctx: &Context<'_>,
        input: BalanceAlertRequest,
    ) -> GqlResult<BalanceAlert> {
        control(ctx)
            .billing
            .set_balance_alert(actor(ctx)?, &input)
            .await
            .map_err(gql_error)
    }

    /// Saves a card the card form made (as `POST /v1/billing/cards`).
    async fn save_card(&self, ctx: &Context<'_>, input: CardRequest) -> GqlResult<Card> {
        control(ctx)
            .payments
            .save_card(actor(ctx)?, &input)
            .await
            .map_err(gql_error)
    }

    /// Sets auto-reload (as `PUT /v1/billing/auto-reload`).
    async fn set_auto_reload(
        &self,
        ctx: &Context<'_>,
        input: AutoReloadRequest,
    ) -> GqlResult<AutoReload> {
        control(ctx)
            .payments
            .set_auto_reload(actor(ctx)?, &input)
            .await
            .map_err(gql_error)
    }

    /// Refunds unused card credit (as `POST /v1/billing/refunds`).
    async fn refund(&self, ctx: &Context<'_>, input: RefundRequest) -> GqlResult<Refund> {
        control(ctx)
            .payments
            .refund(actor(ctx)?, &input)
            .await
            .map_err(gql_error)
    }
}
