//! Saved cards: cards the organisation attached to its Stripe customer, one of them the
//! default that the command line's top-up and auto-reload charge.

use iocloud_db::ids::OrgId;
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, Timestamp, db_run, tx_run};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use iocloud_billing::rails::stripe::SavedCard;

use super::Payments;
use crate::defaults::{Defaulted, make_default_in, remove_in};
use crate::{Action, Actor, Error, Result};

/// A card to save, exactly one of: the card form's confirmed SetupIntent (`seti_…`, the way
/// the console saves cards, 3-D Secure included), or a payment method (`pm_…`) made
/// elsewhere with Stripe.js.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::InputObject),
    graphql(name = "CardInput")
)]
#[serde(deny_unknown_fields)]
pub struct CardRequest {
    pub setup_intent: Option<String>,
    pub payment_method: Option<String>,
}

/// A card form to fill in: Stripe.js confirms the SetupIntent with its client secret and
/// the publishable key, then the card is saved with `setup_intent`.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "CardSetup")
)]
pub struct CardSetup {
    /// `seti_…`.
    pub setup_intent: String,
    /// Shown only in this answer.
    pub client_secret: String,
    /// Stripe's publishable key, for Stripe.js.
    pub publishable_key: Option<String>,
}

/// A saved card. Its number never reaches the platform: only what identifies it to people.
#[derive(Clone, Debug, Serialize, ToSchema, sqlx::FromRow)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "Card")
)]
pub struct Card {
    /// Stripe's payment method (`pm_…`).
    pub id: String,
    /// `visa`, `mastercard`, …
    pub brand: String,
    pub last4: String,
    pub exp_month: i64,
    pub exp_year: i64,
    /// The card charged when none is named.
    pub is_default: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

const CARD_COLUMNS: &str = "id, brand, last4, exp_month, exp_year, is_default, created_at";

impl Payments {
    /// The organisation's saved cards, oldest first.
    pub async fn cards(&self, actor: &Actor) -> Result<Vec<Card>> {
        actor.authorize(Action::BillingRead)?;
        self.cards_of(&actor.org_id).await
    }

    async fn cards_of(&self, org_id: &OrgId) -> Result<Vec<Card>> {
        let sql = format!(
            "SELECT {CARD_COLUMNS} FROM saved_cards WHERE org_id = $1 ORDER BY created_at, id"
        );
        Ok(db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(org_id)
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?)
    }

    /// Opens a card form: a SetupIntent for the organisation's customer, to be confirmed in
    /// the browser and then saved with [`Payments::save_card`].
    pub async fn start_card_setup(&self, actor: &Actor) -> Result<CardSetup> {
        actor.authorize(Action::BillingManage)?;
        let rail = self.rail()?;
        let org = self.directory.organization(&actor.org_id).await?;
        let customer = self.customer_of(&actor.org_id, &org.name).await?;
        // A new form each time: a key per request, since every form is its own SetupIntent.
        let setup = rail
            .start_card_setup(&customer, &iocloud_db::ids::new_id("iocloud-setup"))
            .await?;
        Ok(CardSetup {
            setup_intent: setup.id,
            client_secret: setup.client_secret,
            publishable_key: self.publishable_key.clone(),
        })
    }

    /// Saves a card, from a confirmed card form or a payment method: attached to the
    /// organisation's customer in Stripe, then listed here; the first card saved is the
    /// default.
    pub async fn save_card(&self, actor: &Actor, request: &CardRequest) -> Result<Card> {
        actor.authorize(Action::BillingManage)?;
        let rail = self.rail()?;
        // Both ids are checked before anything is asked of Stripe.
        let source = match (&request.setup_intent, &request.payment_method) {
            (Some(setup), None) if is_setup_intent_id(setup.trim()) => {
                CardSource::Form(setup.trim())
            }
            (Some(_), None) => {
                return Err(Error::validation(
                    "setup_intent",
                    "a card form's id looks like seti_…",
                ));
            }
            (None, Some(pm)) if super::top_ups::is_payment_method_id(pm.trim()) => {
                CardSource::PaymentMethod(pm.trim())
            }
            (None, Some(_)) => {
                return Err(Error::validation(
                    "payment_method",
                    "a payment method id looks like pm_…",
                ));
            }
            _ => {
                return Err(Error::validation(
                    "setup_intent",
                    "give either the card form's setup_intent or a payment_method",
                ));
            }
        };
        let org = self.directory.organization(&actor.org_id).await?;
        let customer = self.customer_of(&actor.org_id, &org.name).await?;
        let pm = match source {
            CardSource::Form(setup) => self.confirmed_setup(rail, setup, &customer).await?,
            CardSource::PaymentMethod(pm) => pm.to_string(),
        };
        let pm = pm.as_str();
        self.not_anothers_card(&actor.org_id, pm).await?;
        let saved = rail
            .save_card(
                pm,
                &customer,
                &format!("iocloud-card-{}-{pm}", actor.org_id),
            )
            .await?;
        self.store_card(&actor.org_id, &saved).await?;
        self.card(&actor.org_id, &saved.id).await
    }

    /// Lists a card attached in Stripe; the organisation's first is its default.
    async fn store_card(&self, org_id: &OrgId, saved: &SavedCard) -> Result<()> {
        let mut tx = self.db.begin().await?;
        let has_default: i64 = tx_run!(&mut tx, |c| sqlx::query_scalar(
            "SELECT COUNT(*) FROM saved_cards WHERE org_id = $1 AND is_default"
        )
        .bind(org_id)
        .fetch_one(c)
        .await)
        .map_err(DbError::from)?;
        tx_run!(&mut tx, |c| sqlx::query(
            "INSERT INTO saved_cards (id, org_id, brand, last4, exp_month, exp_year, is_default, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING"
        )
        .bind(&saved.id)
        .bind(org_id)
        .bind(&saved.brand)
        .bind(&saved.last4)
        .bind(saved.exp_month)
        .bind(saved.exp_year)
        .bind(has_default == 0)
        .bind(now_micros())
        .execute(c)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
        tx.commit().await?;
        Ok(())
    }

    /// Saves the card a card-form top-up was paid with, when its payer asked to keep it:
    /// once, by whoever clears the top-up's flag first. The payment is credited whatever
    /// happens here; a card Stripe will not attach is only logged.
    pub(super) async fn keep_paid_card(&self, top_up_id: &str) {
        let claimed: std::result::Result<Option<(String, Option<String>)>, _> = db_run!(
            &self.db,
            |p| {
                sqlx::query_as(
                "UPDATE top_ups SET save_card = FALSE WHERE id = $1 AND save_card AND status = 'succeeded' \
                 RETURNING org_id, payment_method"
            )
            .bind(top_up_id)
            .fetch_optional(p)
            .await
            }
        );
        let (org, pm) = match claimed {
            Ok(Some((org, Some(pm)))) => (OrgId::trusted(org), pm),
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, top_up = top_up_id, "could not claim a card to keep");
                return;
            }
        };
        let kept = async {
            let rail = self.rail()?;
            let name = self.directory.organization(&org).await?.name;
            let customer = self.customer_of(&org, &name).await?;
            let saved = rail
                .save_card(&pm, &customer, &format!("iocloud-card-{org}-{pm}"))
                .await?;
            self.store_card(&org, &saved).await
        };
        if let Err(e) = kept.await {
            tracing::warn!(error = %e, top_up = top_up_id, "could not keep the card a top-up paid with");
        }
    }

    /// Makes a saved card the default.
    pub async fn set_default_card(&self, actor: &Actor, id: &str) -> Result<Card> {
        actor.authorize(Action::BillingManage)?;
        self.card(&actor.org_id, id).await?;
        let mut tx = self.db.begin().await?;
        make_default_in(&mut tx, Defaulted::SavedCards, &actor.org_id, id).await?;
        tx.commit().await?;
        self.card(&actor.org_id, id).await
    }

    /// Removes a saved card (detached in Stripe: it can be charged no more). If it was the
    /// default, the newest card left becomes the default.
    pub async fn remove_card(&self, actor: &Actor, id: &str) -> Result<()> {
        actor.authorize(Action::BillingManage)?;
        let rail = self.rail()?;
        let card = self.card(&actor.org_id, id).await?;
        rail.forget_card(id).await?;
        let mut tx = self.db.begin().await?;
        remove_in(
            &mut tx,
            Defaulted::SavedCards,
            &actor.org_id,
            id,
            card.is_default,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The card a confirmed card form of this customer's gave. Another customer's form reads
    /// as none at all.
    async fn confirmed_setup(
        &self,
        rail: &iocloud_billing::rails::stripe::StripeRail,
        setup: &str,
        customer: &str,
    ) -> Result<String> {
        let state = match rail.card_setup(setup).await {
            Ok(state) => state,
            // Stripe's `resource_missing`: no such SetupIntent (on this account).
            Err(iocloud_billing::BillingError::Stripe(f)) if f.status == Some(404) => {
                return Err(Error::NotFound("card setup"));
            }
            Err(e) => return Err(e.into()),
        };
        if state.customer.as_deref() != Some(customer) {
            return Err(Error::NotFound("card setup"));
        }
        match (state.succeeded, state.payment_method) {
            (true, Some(pm)) => Ok(pm),
            _ => Err(Error::conflict(
                crate::ErrorCode::InvalidState,
                "the card form is not confirmed yet: confirm it with Stripe.js first",
            )),
        }
    }

    async fn card(&self, org_id: &OrgId, id: &str) -> Result<Card> {
        let sql = format!("SELECT {CARD_COLUMNS} FROM saved_cards WHERE id = $1 AND org_id = $2");
        let card: Option<Card> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(id)
            .bind(org_id)
            .fetch_optional(p)
            .await)
        .map_err(DbError::from)?;
        card.ok_or(Error::NotFound("card"))
    }

    /// The organisation's default card, if it saved one.
    pub(super) async fn default_card(&self, org_id: &OrgId) -> Result<Option<String>> {
        Ok(db_run!(&self.db, |p| sqlx::query_scalar(
            "SELECT id FROM saved_cards WHERE org_id = $1 AND is_default"
        )
        .bind(org_id)
        .fetch_optional(p)
        .await)
        .map_err(DbError::from)?)
    }

    /// A card another organisation saved reads as no card at all here.
    pub(super) async fn not_anothers_card(&self, org_id: &OrgId, pm: &str) -> Result<()> {
        let owner: Option<String> = db_run!(&self.db, |p| sqlx::query_scalar(
            "SELECT org_id FROM saved_cards WHERE id = $1"
        )
        .bind(pm)
        .fetch_optional(p)
        .await)
        .map_err(DbError::from)?;
        match owner {
            Some(owner) if owner != org_id.as_str() => Err(Error::NotFound("card")),
            _ => Ok(()),
        }
    }
}

/// Where a card to save comes from.
enum CardSource<'a> {
    /// A confirmed card form (`seti_…`).
    Form(&'a str),
    /// A payment method made elsewhere (`pm_…`).
    PaymentMethod(&'a str),
}

/// `seti_` and Stripe's id alphabet, at most 255 characters: anything else never reaches Stripe.
fn is_setup_intent_id(text: &str) -> bool {
    text.len() <= 255
        && text
            .strip_prefix("seti_")
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}
