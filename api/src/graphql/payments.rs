//! GraphQL for card payments. Same service as `/v1/billing/top-ups`; the request and the
//! top-up are the domain's own types.

use async_graphql::{Context, Object};
use iocloud_control::Page;
use iocloud_control::billing::alerts::{BalanceAlert, BalanceAlertRequest};
use iocloud_control::payments::{
    AutoReload, AutoReloadRequest, Card, CardRequest, CardSetup, Receipt, Refund, RefundRequest,
    Refundable, TopUp, TopUpRequest,
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

    /// One refund of the organisation, with its parts.
    async fn refund(&self, ctx: &Context<'_>, id: String) -> GqlResult<Refund> {
        control(ctx)
            .payments
            .get_refund(actor(ctx)?, &id)
            .await
            .map_err(gql_error)
    }

    /// The receipt of a paid top-up (as `GET /v1/billing/top-ups/{id}/receipt`).
    async fn receipt(&self, ctx: &Context<'_>, top_up_id: String) -> GqlResult<Receipt> {
        control(ctx)
            .payments
            .receipt(actor(ctx)?, &top_up_id)
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

    /// Opens a card form (as `POST /v1/billing/cards/setup`): Stripe.js confirms it with the
    /// client secret, then `saveCard` saves it by `setupIntent`.
    async fn start_card_setup(&self, ctx: &Context<'_>) -> GqlResult<CardSetup> {
        control(ctx)
            .payments
            .start_card_setup(actor(ctx)?)
            .await
            .map_err(gql_error)
    }

    /// Makes a saved card the default (as `POST /v1/billing/cards/{id}/default`).
    async fn set_default_card(&self, ctx: &Context<'_>, id: String) -> GqlResult<Card> {
        control(ctx)
            .payments
            .set_default_card(actor(ctx)?, &id)
            .await
            .map_err(gql_error)
    }

    /// Removes a saved card (as `DELETE /v1/billing/cards/{id}`); true once it is gone.
    async fn remove_card(&self, ctx: &Context<'_>, id: String) -> GqlResult<bool> {
        control(ctx)
            .payments
            .remove_card(actor(ctx)?, &id)
            .await
            .map_err(gql_error)?;
        Ok(true)
    }

    /// Removes the low-balance alert of a currency (as `DELETE /v1/billing/low-balance/{currency}`).
    async fn remove_balance_alert(&self, ctx: &Context<'_>, currency: String) -> GqlResult<bool> {
        control(ctx)
            .billing
            .remove_balance_alert(actor(ctx)?, &currency)
            .await
            .map_err(gql_error)?;
        Ok(true)
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
