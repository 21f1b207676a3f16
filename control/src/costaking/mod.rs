//! Co-staking: a provider offers the stake one of its devices needs to others, for a share of
//! the device's block rewards and a term. Any organisation holding $IO takes an offer (one
//! co-staker per offer): its $IO moves into its own `stake` account and backs the provider's
//! device, each block's reward for the device is split by the share, and a slash of the device
//! takes from both stakes in proportion. Unstaking gives 7 days' notice (the stake still backs
//! the device and earns), then the 14-day cooldown, then the $IO may be withdrawn.

mod types;

pub use types::{CostakeOffer, CostakePosition, NewOffer, TakeOffer};

use std::collections::HashMap;
use std::sync::Arc;

use iocloud_billing::ledger::{NewTransaction, Posting, TransactionKind, post_in};
use iocloud_billing::staking::UNBONDING_MICROS;
use iocloud_billing::{AccountKind, AccountRef, Currency, Money};
use iocloud_db::ids::{OrgId, new_id};
use iocloud_db::time::{MICROS_PER_DAY, now_micros};
use iocloud_db::{Db, DbError, Tx, db_run, tx_run};

use crate::page::{Page, PageRequest};
use crate::providers::Catalog;
use crate::providers::devices::device_row;
use crate::providers::stake::{Stake, lock_stake};
use crate::{Action, Actor, Error, ErrorCode, Result};

/// The notice an unstaking co-stake gives before its cooldown.
pub const NOTICE_MICROS: i64 = 7 * MICROS_PER_DAY;

fn io(micros: i64) -> String {
    Money::from_micros(micros, Currency::Io).to_decimal()
}

/// Co-staking offers and positions. Cheap to clone.
#[derive(Clone)]
pub struct Costaking {
    db: Db,
    catalog: Arc<Catalog>,
    /// Lists the provider's devices a new co-stake covers.
    stake: Stake,
}

#[derive(sqlx::FromRow)]
struct OfferRow {
    id: String,
    device_id: String,
    provider_org_id: String,
    amount: i64,
    reward_share_bps: i64,
    term_days: i64,
    status: String,
    created_at: i64,
    gpu_model: Option<String>,
    gpu_count: i64,
    region: String,
    reliability_bps: i64,
}

const OFFER_COLUMNS: &str = "o.id, o.device_id, o.provider_org_id, o.amount, o.reward_share_bps, o.term_days, o.status, \
     o.created_at, d.gpu_model, d.gpu_count, d.region, d.reliability_bps";

impl From<OfferRow> for CostakeOffer {
    fn from(r: OfferRow) -> Self {
        CostakeOffer {
            id: r.id,
            device_id: r.device_id,
            gpu_model: r.gpu_model,
            gpu_count: r.gpu_count,
            region: r.region,
            reliability: r.reliability_bps as f64 / 10_000.0,
            amount: io(r.amount),
            reward_share_bps: r.reward_share_bps,
            term_days: r.term_days,
            status: r.status,
            created_at: r.created_at.into(),
        }
    }
}

#[derive(sqlx::FromRow)]
struct PositionRow {
    id: String,
    offer_id: String,
    device_id: String,
    amount: i64,
    reward_share_bps: i64,
    status: String,
    term_ends_at: i64,
    unstake_at: Option<i64>,
    available_at: Option<i64>,
    created_at: i64,
    earned: i64,
}

const POSITION_COLUMNS: &str = "p.id, p.offer_id, p.device_id, p.amount, \
     p.reward_share_bps, p.status, p.term_ends_at, p.unstake_at, p.available_at, p.created_at, \
     CAST(COALESCE((SELECT SUM(r.costaker_amount) FROM block_rewards r WHERE r.device_id = p.device_id \
         AND r.costaker_org_id = p.costaker_org_id AND r.hour * 3600000000 >= p.created_at), 0) AS BIGINT) AS earned";

impl PositionRow {
    fn state(&self, now: i64) -> &'static str {
        match (self.status.as_str(), self.unstake_at, self.available_at) {
            ("withdrawn", ..) => "withdrawn",
            ("unstaking", Some(u), _) if now < u => "notice",
            ("unstaking", _, Some(a)) if now < a => "cooldown",
            ("unstaking", ..) => "withdrawable",
            _ => "active",
        }
    }

    fn view(self, now: i64) -> CostakePosition {
        CostakePosition {
            state: self.state(now).to_string(),
            id: self.id,
            offer_id: self.offer_id,
            device_id: self.device_id,
            amount: io(self.amount),
            reward_share_bps: self.reward_share_bps,
            term_ends_at: self.term_ends_at.into(),
            unstake_at: self.unstake_at.map(Into::into),
            available_at: self.available_at.map(Into::into),
            earned: io(self.earned),
            created_at: self.created_at.into(),
        }
    }
}

/// A co-stake backing a device: the position, its co-staker, its $IO and its share.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct Backing {
    pub id: String,
    pub device_id: String,
    pub provider_org_id: String,
    pub costaker_org_id: String,
    pub amount: i64,
    pub reward_share_bps: i64,
}

/// Positions backing their device at `t`: active, or unstaking with the notice still running.
const BACKING_AT: &str = "(p.status = 'active' OR (p.status = 'unstaking' AND p.unstake_at > $1))";

/// Moves a co-staker's $IO between its available balance and its stake.
async fn move_in(
    tx: &mut Tx,
    org_id: &str,
    position: &str,
    micros: i64,
    into_stake: bool,
) -> Result<()> {
    if micros == 0 {
        return Ok(());
    }
    let available = AccountRef::org(org_id, AccountKind::Available, Currency::Io);
    let stake = AccountRef::org(org_id, AccountKind::Stake, Currency::Io);
    let (from, to, tail) = if into_stake {
        (available, stake, "in")
    } else {
        (stake, available, "out")
    };
    let postings: Vec<Posting> =
        Posting::transfer(from, to, Money::from_micros(micros, Currency::Io))?.into();
    post_in(
        tx,
        &NewTransaction {
            external_ref: format!("costake:{position}:{tail}"),
            kind: TransactionKind::Transfer,
            org_id: Some(org_id.to_string()),
            memo: format!("co-stake {position} {tail}"),
            postings,
        },
    )
    .await?;
    Ok(())
}

impl Costaking {
    pub(crate) fn new(db: Db, catalog: Arc<Catalog>, stake: Stake) -> Self {
        Costaking { db, catalog, stake }
    }

    /// $IO micro-units of co-stake backing the provider's devices at `now`.
    pub(crate) async fn backing_in(tx: &mut Tx, provider_org_id: &str, now: i64) -> Result<i64> {
        let sql = format!(
            "SELECT CAST(COALESCE(SUM(p.amount), 0) AS BIGINT) FROM costake_positions p \
             WHERE {BACKING_AT} AND p.provider_org_id = $2"
        );
        Ok(tx_run!(tx, |c| sqlx::query_scalar(&sql)
            .bind(now)
            .bind(provider_org_id)
            .fetch_one(c)
            .await)
        .map_err(DbError::from)?)
    }

    /// The co-stake backing one device at `now`, if any.
    pub(crate) async fn backing_device_in(
        tx: &mut Tx,
        device_id: &str,
        now: i64,
    ) -> Result<Option<Backing>> {
        let sql = format!(
            "SELECT p.id, p.device_id, p.provider_org_id, p.costaker_org_id, p.amount, p.reward_share_bps \
             FROM costake_positions p WHERE {BACKING_AT} AND p.device_id = $2 ORDER BY p.id LIMIT 1"
        );
        Ok(tx_run!(tx, |c| sqlx::query_as(&sql)
            .bind(now)
            .bind(device_id)
            .fetch_optional(c)
            .await)
        .map_err(DbError::from)?)
    }

    /// Co-stakes that backed their device for the whole of `[start, end)`, by device.
    pub(crate) async fn backing_through(
        db: &Db,
        start: i64,
        end: i64,
    ) -> Result<HashMap<String, Backing>> {
        let rows: Vec<Backing> = db_run!(db, |p| sqlx::query_as(
            "SELECT p.id, p.device_id, p.provider_org_id, p.costaker_org_id, p.amount, p.reward_share_bps \
             FROM costake_positions p WHERE p.created_at <= $2 \
             AND (p.status = 'active' OR (p.status IN ('unstaking', 'withdrawn') AND p.unstake_at >= $1)) ORDER BY p.id"
        )
        .bind(end)
        .bind(start)
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        Ok(rows.into_iter().map(|b| (b.device_id.clone(), b)).collect())
    }

    /// Gives a slashed co-stake's $IO back (an overturned case).
    pub(crate) async fn restore_in(tx: &mut Tx, position_id: &str, micros: i64) -> Result<()> {
        tx_run!(tx, |c| sqlx::query(
            "UPDATE costake_positions SET amount = amount + $1 WHERE id = $2"
        )
        .bind(micros)
        .bind(position_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        Ok(())
    }

    /// Takes a slash's part from a co-stake.
    pub(crate) async fn slash_in(tx: &mut Tx, position_id: &str, micros: i64) -> Result<()> {
        tx_run!(tx, |c| sqlx::query(
            "UPDATE costake_positions SET amount = amount - $1 WHERE id = $2 AND amount >= $1"
        )
        .bind(micros)
        .bind(position_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        Ok(())
    }

    /// A provider offers the stake one of its devices needs.
    pub async fn offer(&self, actor: &Actor, req: &NewOffer) -> Result<CostakeOffer> {
        actor.authorize(Action::BillingManage)?;
        let device = device_row(&self.db, &actor.org_id, req.device_id.trim()).await?;
        if device.status == "retired" {
            return Err(crate::providers::devices::retired(&device.id));
        }
        let needed = self
            .stake
            .required(device.gpu_model.as_deref(), device.gpu_count);
        let amount = Money::parse(req.amount.trim(), Currency::Io)
            .ok()
            .map(|m| m.micros())
            .filter(|m| *m > 0 && *m <= needed)
            .ok_or_else(|| {
                Error::validation(
                    "amount",
                    format!(
                        "$IO, more than zero and at most the {} the device needs",
                        io(needed)
                    ),
                )
            })?;
        if !(1..=10_000).contains(&req.reward_share_bps) {
            return Err(Error::validation(
                "reward_share_bps",
                "1 to 10000 basis points",
            ));
        }
        if !(1..=365).contains(&req.term_days) {
            return Err(Error::validation("term_days", "1 to 365 days"));
        }
        let id = new_id("cso");
        let now = now_micros();
        let inserted = db_run!(&self.db, |p| sqlx::query(
            "INSERT INTO costake_offers (id, device_id, provider_org_id, amount, reward_share_bps, term_days, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $7) ON CONFLICT DO NOTHING"
        )
        .bind(&id)
        .bind(&device.id)
        .bind(&actor.org_id)
        .bind(amount)
        .bind(req.reward_share_bps)
        .bind(req.term_days)
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        if inserted == 0 {
            return Err(Error::conflict(
                ErrorCode::InvalidState,
                format!("device {} has an offer open or taken already", device.id),
            ));
        }
        self.offer_row(&id).await.map(Into::into)
    }

    async fn offer_row(&self, id: &str) -> Result<OfferRow> {
        let sql = format!(
            "SELECT {OFFER_COLUMNS} FROM costake_offers o JOIN devices d ON d.id = o.device_id WHERE o.id = $1"
        );
        db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(p)
            .await)
        .map_err(DbError::from)?
        .ok_or(Error::NotFound("offer"))
    }

    /// The provider takes back an offer nobody has taken.
    pub async fn withdraw_offer(&self, actor: &Actor, id: &str) -> Result<CostakeOffer> {
        actor.authorize(Action::BillingManage)?;
        let row = self.offer_row(id).await?;
        if row.provider_org_id != actor.org_id.as_str() {
            return Err(Error::NotFound("offer"));
        }
        let moved = db_run!(&self.db, |p| sqlx::query(
            "UPDATE costake_offers SET status = 'withdrawn', updated_at = $1 WHERE id = $2 AND status = 'open'"
        )
        .bind(now_micros())
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        if moved == 0 {
            return Err(Error::conflict(
                ErrorCode::InvalidState,
                format!(
                    "offer {id} is {}: only an open offer can be withdrawn",
                    row.status
                ),
            ));
        }
        self.offer_row(id).await.map(Into::into)
    }

    /// Open offers any organisation may take, oldest first: only a GPU model's (`model`), at
    /// least `min_reliability` (0 to 1).
    pub async fn market(
        &self,
        actor: &Actor,
        model: Option<&str>,
        min_reliability: Option<f64>,
        page: &PageRequest,
    ) -> Result<Page<CostakeOffer>> {
        actor.authorize(Action::ResourcesRead)?;
        self.open_offers(model, min_reliability, page).await
    }

    /// The open offers, oldest first, as anyone may see them (IO Explorer shows them too):
    /// only public fields of the device, never its provider.
    pub async fn open_offers(
        &self,
        model: Option<&str>,
        min_reliability: Option<f64>,
        page: &PageRequest,
    ) -> Result<Page<CostakeOffer>> {
        if let Some(m) = model
            && self.catalog.gpu_model(m).is_none()
        {
            return Err(Error::validation(
                "model",
                "a GPU model of the catalog, e.g. h100-sxm",
            ));
        }
        let min_bps = match min_reliability {
            Some(r) if (0.0..=1.0).contains(&r) => (r * 10_000.0).round() as i64,
            Some(_) => return Err(Error::validation("min_reliability", "0 to 1")),
            None => 0,
        };
        let sql = format!(
            "SELECT {OFFER_COLUMNS} FROM costake_offers o JOIN devices d ON d.id = o.device_id \
             WHERE o.status = 'open' AND ($1 IS NULL OR d.gpu_model = $1) AND d.reliability_bps >= $2 \
             AND o.id > $3 ORDER BY o.id LIMIT $4"
        );
        let rows: Vec<OfferRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(model)
            .bind(min_bps)
            .bind(page.after_id())
            .bind(page.fetch_limit())
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        Ok(Page::from_rows(rows, page, |r| &r.id).map(Into::into))
    }

    /// The provider's own offers, oldest first.
    pub async fn my_offers(&self, actor: &Actor, page: &PageRequest) -> Result<Page<CostakeOffer>> {
        actor.authorize(Action::BillingRead)?;
        let sql = format!(
            "SELECT {OFFER_COLUMNS} FROM costake_offers o JOIN devices d ON d.id = o.device_id \
             WHERE o.provider_org_id = $1 AND o.id > $2 ORDER BY o.id LIMIT $3"
        );
        let rows: Vec<OfferRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(&actor.org_id)
            .bind(page.after_id())
            .bind(page.fetch_limit())
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        Ok(Page::from_rows(rows, page, |r| &r.id).map(Into::into))
    }

    /// Takes an open offer: the organisation's $IO moves into its stake and backs the device.
    pub async fn take(&self, actor: &Actor, id: &str, req: &TakeOffer) -> Result<CostakePosition> {
        actor.authorize(Action::BillingManage)?;
        let offer = self.offer_row(id).await?;
        if offer.status != "open" {
            return Err(Error::conflict(
                ErrorCode::OfferTaken,
                format!("offer {id} is {}", offer.status),
            ));
        }
        if offer.provider_org_id == actor.org_id.as_str() {
            return Err(Error::conflict(
                ErrorCode::InvalidState,
                "this is your own device's offer: stake for it directly",
            ));
        }
        let amount = Money::parse(req.amount.trim(), Currency::Io)
            .ok()
            .map(|m| m.micros())
            .filter(|m| *m > 0 && *m <= offer.amount)
            .ok_or_else(|| {
                Error::validation(
                    "amount",
                    format!(
                        "$IO, more than zero and at most the {} offered",
                        io(offer.amount)
                    ),
                )
            })?;
        // A part of the offer earns its part of the share.
        let share = (i128::from(offer.reward_share_bps) * i128::from(amount)
            / i128::from(offer.amount)) as i64;
        let now = now_micros();
        let position = new_id("csp");
        let mut tx = self.db.begin().await?;
        let provider = OrgId::trusted(offer.provider_org_id.clone());
        lock_stake(&mut tx, &provider).await?;
        let taken = tx_run!(&mut tx, |c| sqlx::query(
            "UPDATE costake_offers SET status = 'taken', updated_at = $1 WHERE id = $2 AND status = 'open'"
        )
        .bind(now)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        if taken == 0 {
            return Err(Error::conflict(
                ErrorCode::OfferTaken,
                format!("offer {id} was taken by someone else"),
            ));
        }
        tx_run!(&mut tx, |c| sqlx::query(
            "INSERT INTO costake_positions (id, offer_id, device_id, provider_org_id, costaker_org_id, amount, reward_share_bps, \
             status, term_ends_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', $8, $9, $9)"
        )
        .bind(&position)
        .bind(id)
        .bind(&offer.device_id)
        .bind(&offer.provider_org_id)
        .bind(&actor.org_id)
        .bind(amount)
        .bind(share)
        .bind(now + offer.term_days * MICROS_PER_DAY)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        move_in(&mut tx, &actor.org_id, &position, amount, true).await?;
        // Devices of the provider waiting for stake may be covered now.
        self.stake.list_covered_in(&mut tx, &provider).await?;
        tx.commit().await?;
        self.position(actor, &position).await
    }

    async fn position_row(&self, org_id: &str, id: &str) -> Result<PositionRow> {
        let sql = format!(
            "SELECT {POSITION_COLUMNS} FROM costake_positions p WHERE p.id = $1 AND p.costaker_org_id = $2"
        );
        db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(id)
            .bind(org_id)
            .fetch_optional(p)
            .await)
        .map_err(DbError::from)?
        .ok_or(Error::NotFound("co-stake"))
    }

    /// One of the organisation's co-stakes.
    pub async fn position(&self, actor: &Actor, id: &str) -> Result<CostakePosition> {
        actor.authorize(Action::BillingRead)?;
        Ok(self
            .position_row(&actor.org_id, id)
            .await?
            .view(now_micros()))
    }

    /// The organisation's co-stakes, oldest first.
    pub async fn positions(
        &self,
        actor: &Actor,
        page: &PageRequest,
    ) -> Result<Page<CostakePosition>> {
        actor.authorize(Action::BillingRead)?;
        let sql = format!(
            "SELECT {POSITION_COLUMNS} FROM costake_positions p WHERE p.costaker_org_id = $1 AND p.id > $2 ORDER BY p.id LIMIT $3"
        );
        let rows: Vec<PositionRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(&actor.org_id)
            .bind(page.after_id())
            .bind(page.fetch_limit())
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        let now = now_micros();
        Ok(Page::from_rows(rows, page, |r| &r.id).map(|r| r.view(now)))
    }

    /// Starts unstaking a co-stake whose term is over: 7 days' notice (it still backs the
    /// device and earns), then the 14-day cooldown. Asking again changes nothing.
    pub async fn unstake(&self, actor: &Actor, id: &str) -> Result<CostakePosition> {
        actor.authorize(Action::BillingManage)?;
        let row = self.position_row(&actor.org_id, id).await?;
        let now = now_micros();
        if row.status != "active" {
            return Ok(row.view(now));
        }
        if now < row.term_ends_at {
            return Err(Error::conflict(
                ErrorCode::CostakeInTerm,
                format!(
                    "co-stake {id} is in its term until {}",
                    iocloud_db::time::to_rfc3339(row.term_ends_at)
                ),
            ));
        }
        let mut tx = self.db.begin().await?;
        tx_run!(&mut tx, |c| sqlx::query(
            "UPDATE costake_positions SET status = 'unstaking', unstake_at = $1, available_at = $2, updated_at = $3 \
             WHERE id = $4 AND status = 'active'"
        )
        .bind(now + NOTICE_MICROS)
        .bind(now + NOTICE_MICROS + UNBONDING_MICROS)
        .bind(now)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        // The device may be offered again: the provider has the notice to find new stake.
        tx_run!(&mut tx, |c| sqlx::query(
            "UPDATE costake_offers SET status = 'ended', updated_at = $1 WHERE id = $2 AND status = 'taken'"
        )
        .bind(now)
        .bind(&row.offer_id)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        tx.commit().await?;
        Ok(self.position_row(&actor.org_id, id).await?.view(now))
    }

    /// Moves an unstaked co-stake's $IO back to the organisation's balance once its cooldown is
    /// over. Withdrawing twice changes nothing.
    pub async fn withdraw(&self, actor: &Actor, id: &str) -> Result<CostakePosition> {
        actor.authorize(Action::BillingManage)?;
        let row = self.position_row(&actor.org_id, id).await?;
        let now = now_micros();
        match row.state(now) {
            "withdrawn" => return Ok(row.view(now)),
            "withdrawable" => {}
            state => {
                return Err(Error::Conflict {
                    code: ErrorCode::StakeLocked,
                    message: format!(
                        "co-stake {id} is {state}: it can be withdrawn from {}",
                        row.available_at.map_or(
                            "after unstaking and its cooldown".to_string(),
                            iocloud_db::time::to_rfc3339
                        )
                    ),
                });
            }
        }
        let mut tx = self.db.begin().await?;
        let moved = tx_run!(&mut tx, |c| {
            sqlx::query(
            "UPDATE costake_positions SET status = 'withdrawn', withdrawn_at = $1, updated_at = $1 \
             WHERE id = $2 AND status = 'unstaking'"
        )
        .bind(now)
        .bind(id)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
        })
        .map_err(DbError::from)?;
        if moved == 1 {
            // The amount as it is now: a case opened during the notice took its part.
            let amount: i64 = tx_run!(&mut tx, |c| sqlx::query_scalar(
                "SELECT amount FROM costake_positions WHERE id = $1"
            )
            .bind(id)
            .fetch_one(c)
            .await)
            .map_err(DbError::from)?;
            move_in(&mut tx, &actor.org_id, id, amount, false).await?;
        }
        tx.commit().await?;
        Ok(self.position_row(&actor.org_id, id).await?.view(now))
    }
}
