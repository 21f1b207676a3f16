//! The $IO supply at any instant, from the ledger: minted by blocks, burned by slashing, locked
//! in stake and slash escrow, and what circulates. The explorer's numbers come from here.

use std::collections::HashMap;

use iocloud_billing::{AccountKind, Currency, Money};
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, Timestamp, db_run};
use serde::Serialize;

use super::Rewards;
use crate::{Error, Result};

/// The $IO supply at one instant.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "Supply")
)]
pub struct Supply {
    /// The instant the figures are for.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// $IO in existence before the first block.
    pub launch_supply: String,
    /// The most $IO that will ever exist.
    pub cap: String,
    /// Minted by hourly blocks so far.
    pub emitted: String,
    /// Burned by slashing so far.
    pub burned: String,
    /// launch + emitted − burned.
    pub total: String,
    /// Staked by providers for their devices (and by co-stakers for others').
    pub staked: String,
    /// Held in slash escrow while cases are open.
    pub in_escrow: String,
    /// Minted and not yet earned by any device (a pool with nobody eligible).
    pub undistributed: String,
    /// total − staked − in escrow − undistributed.
    pub circulating: String,
    /// Still to be minted before the cap.
    pub to_be_emitted: String,
}

fn io(micros: i64) -> String {
    Money::from_micros(micros, Currency::Io).to_decimal()
}

impl Rewards {
    /// The supply at `at` (now by default; a future instant is refused). Public: nothing in it
    /// belongs to anyone.
    pub async fn supply(&self, at: Option<Timestamp>) -> Result<Supply> {
        let now = now_micros();
        let at = at.map_or(now, Timestamp::micros);
        if at > now {
            return Err(Error::validation(
                "at",
                "the supply of the future is not known",
            ));
        }
        let sums: Vec<(String, i64)> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT a.kind, CAST(COALESCE(SUM(p.amount), 0) AS BIGINT) FROM ledger_postings p \
             JOIN ledger_accounts a ON a.id = p.account_id \
             WHERE p.currency = $1 AND p.created_at <= $2 AND a.kind IN ($3, $4, $5, $6, $7) GROUP BY a.kind"
        )
        .bind(Currency::Io.code())
        .bind(at)
        .bind(AccountKind::Emission.as_str())
        .bind(AccountKind::Burn.as_str())
        .bind(AccountKind::Stake.as_str())
        .bind(AccountKind::SlashEscrow.as_str())
        .bind(AccountKind::RewardsPool.as_str())
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let sums: HashMap<String, i64> = sums.into_iter().collect();
        let of = |k: AccountKind| sums.get(k.as_str()).copied().unwrap_or(0);
        let params = self.schedule.params();
        let emitted = -of(AccountKind::Emission);
        let burned = of(AccountKind::Burn);
        let total = params.launch_supply_micro + emitted - burned;
        let staked = of(AccountKind::Stake);
        let in_escrow = of(AccountKind::SlashEscrow);
        let undistributed = of(AccountKind::RewardsPool);
        Ok(Supply {
            at: at.into(),
            launch_supply: io(params.launch_supply_micro),
            cap: io(params.cap_micro),
            emitted: io(emitted),
            burned: io(burned),
            total: io(total),
            staked: io(staked),
            in_escrow: io(in_escrow),
            undistributed: io(undistributed),
            circulating: io(total - staked - in_escrow - undistributed),
            to_be_emitted: io(params.cap_micro - params.launch_supply_micro - emitted),
        })
    }
}
