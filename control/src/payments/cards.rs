//! Saved cards: cards the organisation attached to its Stripe customer, one of them the
//! default that the command line's top-up and auto-reload charge.

use iocloud_db::ids::OrgId;
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, Timestamp, db_run, tx_run};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Payments;
use crate::{Action, Actor, Error, Result};

/// A card to save: the payment method the console's card form made (`pm_…`).
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::InputObject),
    graphql(name = "CardInput")
)]
#[serde(deny_unknown_fields)]
pub struct CardRequest {
    pub payment_method: String,
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

    /// Saves a card made by the card form: attached to the organisation's customer in Stripe,
    /// then listed here; the first card saved is the default.
    pub async fn save_card(&self, actor: &Actor, request: &CardRequest) -> Result<Card> {
        actor.authorize(Action::BillingManage)?;
        let rail = self.rail()?;
        let pm = request.payment_method.trim();
        if !super::top_ups::is_payment_method_id(pm) {
            return Err(Error::validation(
                "payment_method",
                "a payment method id looks like pm_…",
            ));
        }
        self.not_anothers_card(&actor.org_id, pm).await?;
        let org = self.directory.organization(&actor.org_id).await?;
        let customer = self.customer_of(&actor.org_id, &org.name).await?;
        let saved = rail
            .save_card(
                pm,
                &customer,
                &format!("iocloud-card-{}-{pm}", actor.org_id),
            )
            .await?;
        let mut tx = self.db.begin().await?;
        let has_default: i64 = tx_run!(&mut tx, |c| sqlx::query_scalar(
            "SELECT COUNT(*) FROM saved_cards WHERE org_id = $1 AND is_default"
        )
        .bind(&actor.org_id)
        .fetch_one(c)
        .await)
        .map_err(DbError::from)?;
        tx_run!(&mut tx, |c| sqlx::query(
            "INSERT INTO saved_cards (id, org_id, brand, last4, exp_month, exp_year, is_default, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING"
        )
        .bind(&saved.id)
        .bind(&actor.org_id)
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
        self.card(&actor.org_id, &saved.id).await
    }

    /// Makes a saved card the default.
    pub async fn set_default_card(&self, actor: &Actor, id: &str) -> Result<Card> {
        actor.authorize(Action::BillingManage)?;
        self.card(&actor.org_id, id).await?;
        let mut tx = self.db.begin().await?;
        tx_run!(&mut tx, |c| sqlx::query(
            "UPDATE saved_cards SET is_default = (id = $2) WHERE org_id = $1"
        )
        .bind(&actor.org_id)
        .bind(id)
        .execute(c)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
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
        tx_run!(&mut tx, |c| sqlx::query(
            "DELETE FROM saved_cards WHERE id = $1 AND org_id = $2"
        )
        .bind(id)
        .bind(&actor.org_id)
        .execute(c)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
        if card.is_default {
            tx_run!(&mut tx, |c| sqlx::query(
                "UPDATE saved_cards SET is_default = TRUE WHERE id = \
                 (SELECT id FROM saved_cards WHERE org_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1)"
            )
            .bind(&actor.org_id)
            .execute(c)
            .await
            .map(|_| ()))
            .map_err(DbError::from)?;
        }
        tx.commit().await?;
        Ok(())
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
