//! One hourly block: judge every device by the rules, score the eligible ones, share the
//! hour's emission between the pools and among them, and write the block, its rows and its
//! ledger transaction in one database transaction. The block's hour is its key and the ledger
//! reference is derived from it: a block written twice (two replicas, a retry after a crash)
//! is written once.

use std::collections::{BTreeMap, HashMap};

use iocloud_billing::ledger::{
    AccountKind, AccountRef, NewTransaction, Posting, TransactionKind, batch_fast_in,
};
use iocloud_billing::rewards::{
    self, HourFacts, Pool, Reason, RewardParams, connectivity_permille, judge,
};
use iocloud_billing::{Currency, Money};
use iocloud_db::time::{now_micros, to_rfc3339};
use iocloud_db::{Db, DbError, tx_run};

use super::facts::Facts;
use crate::Result;
use crate::governance::ProtocolParams;
use crate::providers::Catalog;

/// What a block decided for one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DeviceOutcome {
    pub device_id: String,
    pub org_id: String,
    pub pool: Pool,
    pub score: i64,
    pub amount: i64,
    pub rented: bool,
    pub reason: Option<Reason>,
    pub evidence: Option<String>,
    /// The co-staker of the device and its part of `amount` (the provider has the rest).
    pub costaker: Option<(String, i64)>,
}

/// A block worked out and not yet written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Computed {
    pub emission: i64,
    pub gpu_pool: i64,
    pub cpu_pool: i64,
    pub gpu_paid: i64,
    pub cpu_paid: i64,
    pub gpu_score: i64,
    pub cpu_score: i64,
    pub rows: Vec<DeviceOutcome>,
    /// The network as the hour saw it, for the explorer.
    pub network: Tally,
}

/// Devices and GPUs listed in an hour, and those of them that served a rental.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Count {
    pub devices: i64,
    pub gpus: i64,
    pub rented_devices: i64,
    pub rented_gpus: i64,
}

impl Count {
    fn add(&mut self, gpus: i64, rented: bool) {
        self.devices += 1;
        self.gpus += gpus;
        if rented {
            self.rented_devices += 1;
            self.rented_gpus += gpus;
        }
    }
}

/// What a block keeps of the network for the explorer: the totals, by model and by region,
/// the ineligible devices by reason, and the top earners.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub total: Count,
    pub by_model: BTreeMap<String, Count>,
    pub by_region: BTreeMap<String, Count>,
    pub by_reason: BTreeMap<&'static str, i64>,
    /// (device, model, region, amount), highest amount first.
    pub top: Vec<(String, String, String, i64)>,
    /// $IO micro-units backing the network in the hour.
    pub staked: i64,
}

/// How many earners a block keeps for the explorer.
const TOP_EARNERS: usize = 10;

impl Tally {
    /// One pass over the block's rows, keyed by borrowed names (a block has a hundred thousand
    /// rows and a few dozen keys): only the keys and the ten earners are copied out.
    fn of(facts: &Facts, rows: &[DeviceOutcome]) -> Tally {
        let mut by_model: HashMap<&str, Count> = HashMap::new();
        let mut by_region: HashMap<&str, Count> = HashMap::new();
        let mut t = Tally {
            staked: facts.staked,
            ..Tally::default()
        };
        let mut earners: Vec<(usize, i64)> = Vec::new();
        for (i, (d, r)) in facts.devices.iter().zip(rows).enumerate() {
            if let Some(reason) = r.reason {
                *t.by_reason.entry(reason.as_str()).or_default() += 1;
            }
            if r.reason == Some(Reason::NotListed) {
                continue;
            }
            t.total.add(d.gpu_count, r.rented);
            by_model
                .entry(d.gpu_model.as_deref().unwrap_or("cpu"))
                .or_default()
                .add(d.gpu_count, r.rented);
            by_region
                .entry(d.region.as_str())
                .or_default()
                .add(d.gpu_count, r.rented);
            if r.amount > 0 {
                earners.push((i, r.amount));
            }
        }
        // Highest amount first, then device id: the ten first found without sorting them all.
        let order = |a: &(usize, i64), b: &(usize, i64)| {
            b.1.cmp(&a.1)
                .then_with(|| facts.devices[a.0].id.cmp(&facts.devices[b.0].id))
        };
        if earners.len() > TOP_EARNERS {
            earners.select_nth_unstable_by(TOP_EARNERS - 1, order);
            earners.truncate(TOP_EARNERS);
        }
        earners.sort_unstable_by(order);
        t.top = earners
            .into_iter()
            .map(|(i, amount)| {
                let d = &facts.devices[i];
                let model = d.gpu_model.clone().unwrap_or_else(|| "cpu".into());
                (d.id.clone(), model, d.region.clone(), amount)
            })
            .collect();
        let owned = |m: HashMap<&str, Count>| -> BTreeMap<String, Count> {
            m.into_iter().map(|(k, c)| (k.to_string(), c)).collect()
        };
        t.by_model = owned(by_model);
        t.by_region = owned(by_region);
        t
    }

    /// The tallies by key as the block row keeps them (JSON).
    fn json_of(by: &BTreeMap<String, Count>) -> String {
        let rows: Vec<serde_json::Value> = by
            .iter()
            .map(|(key, c)| {
                serde_json::json!({"key": key, "devices": c.devices, "gpus": c.gpus,
                "rented_devices": c.rented_devices, "rented_gpus": c.rented_gpus})
            })
            .collect();
        serde_json::Value::Array(rows).to_string()
    }
}

impl Computed {
    pub fn eligible(&self) -> i64 {
        self.rows.iter().filter(|r| r.reason.is_none()).count() as i64
    }
}

/// The hour `[start, end)` judged and shared.
pub(crate) fn compute(
    params: &RewardParams,
    protocol: &ProtocolParams,
    catalog: &Catalog,
    facts: &Facts,
    emission: i64,
    (start, end): (i64, i64),
    timeout: i64,
) -> Computed {
    let mut rows = Vec::with_capacity(facts.devices.len());
    for d in &facts.devices {
        let model = d.gpu_model.as_deref().and_then(|m| catalog.gpu_model(m));
        let is_cpu = d.gpu_model.is_none();
        let rented = facts.rented.contains(&d.id);
        let proof = facts
            .proofs
            .get(&d.id)
            .map(|(o, detail)| (o.as_deref(), detail.as_deref()));
        let hour = HourFacts {
            start,
            end,
            listing: facts.listing(&d.id),
            stake_short: facts.stake_short.get(&d.org_id).copied(),
            heard: facts.heard(&d.id),
            timeout,
            rented,
            proof,
            gpu_class: model.map(|m| m.class.as_str()),
            is_cpu,
            open_case: facts.open_cases.get(&d.id).map(String::as_str),
        };
        let verdict = judge(params, &hour);
        let (pool, multiplier, units) = if is_cpu {
            (Pool::Cpu, 1, d.cpu_cores)
        } else {
            (
                Pool::Gpu,
                protocol.multiplier(catalog, d.gpu_model.as_deref()),
                d.gpu_count,
            )
        };
        let score = match verdict {
            Some(_) => 0,
            None => rewards::score(
                params,
                multiplier,
                units,
                connectivity_permille(d.bandwidth_up_mbps, d.bandwidth_down_mbps),
                rented,
            ),
        };
        rows.push(DeviceOutcome {
            device_id: d.id.clone(),
            org_id: d.org_id.clone(),
            pool,
            score,
            amount: 0,
            rented,
            reason: verdict.as_ref().map(|v| v.reason),
            evidence: verdict.map(|v| v.evidence),
            costaker: None,
        });
    }
    let (gpu_pool, cpu_pool) = rewards::split_emission(emission, params.gpu_share_bps);
    let mut block = Computed {
        emission,
        gpu_pool,
        cpu_pool,
        ..Default::default()
    };
    for (pool, amount) in [(Pool::Gpu, gpu_pool), (Pool::Cpu, cpu_pool)] {
        let members: Vec<usize> = (0..rows.len()).filter(|i| rows[*i].pool == pool).collect();
        let scores: Vec<i64> = members.iter().map(|i| rows[*i].score).collect();
        let shares = rewards::share_pool(amount, &scores);
        let (mut paid, mut total) = (0, 0);
        for (i, share) in members.into_iter().zip(shares) {
            rows[i].amount = share;
            paid += share;
            total += rows[i].score;
        }
        match pool {
            Pool::Gpu => (block.gpu_paid, block.gpu_score) = (paid, total),
            Pool::Cpu => (block.cpu_paid, block.cpu_score) = (paid, total),
        }
    }
    // Each co-staked device's reward split by its co-staker's share, rounded down: the
    // provider keeps the rest.
    for r in rows.iter_mut().filter(|r| r.amount > 0) {
        if let Some(b) = facts.costakes.get(&r.device_id) {
            let part = (i128::from(r.amount) * i128::from(b.reward_share_bps.clamp(0, 10_000))
                / 10_000) as i64;
            r.costaker = Some((b.costaker_org_id.clone(), part));
        }
    }
    block.network = Tally::of(facts, &rows);
    block.rows = rows;
    block
}

/// The ledger transaction of a block: the emission minted out of the emission account, what
/// no device earned kept in the rewards pool, and each provider's devices' rewards into its
/// `$IO` earnings.
fn transaction(hour: i64, block: &Computed) -> Result<Option<NewTransaction>> {
    if block.emission == 0 {
        return Ok(None);
    }
    let io = |m| Money::from_micros(m, Currency::Io);
    let mut per_org: BTreeMap<&str, i64> = BTreeMap::new();
    for r in block.rows.iter().filter(|r| r.amount > 0) {
        let part = r.costaker.as_ref().map_or(0, |(_, part)| *part);
        *per_org.entry(r.org_id.as_str()).or_default() += r.amount - part;
        if let Some((costaker, part)) = r.costaker.as_ref().filter(|(_, p)| *p > 0) {
            *per_org.entry(costaker.as_str()).or_default() += part;
        }
    }
    per_org.retain(|_, amount| *amount != 0);
    let mut postings = vec![Posting {
        account: AccountRef::platform(AccountKind::Emission, Currency::Io),
        amount: io(-block.emission),
    }];
    let kept = block.emission - block.gpu_paid - block.cpu_paid;
    if kept != 0 {
        postings.push(Posting {
            account: AccountRef::platform(AccountKind::RewardsPool, Currency::Io),
            amount: io(kept),
        });
    }
    for (org, amount) in per_org {
        postings.push(Posting {
            account: AccountRef::org(org, AccountKind::ProviderEarnings, Currency::Io),
            amount: io(amount),
        });
    }
    Ok(Some(NewTransaction {
        external_ref: format!("block:{hour}"),
        kind: TransactionKind::Reward,
        org_id: None,
        memo: format!("block {}", to_rfc3339(hour * super::MICROS_PER_HOUR)),
        postings,
    }))
}

/// Rows written per statement: a block of a hundred thousand devices goes in a few.
const ROWS_PER_INSERT: usize = 20_000;

/// Writes the block: `false` when it had been written already (nothing changes then).
pub(crate) async fn write(
    db: &Db,
    hour: i64,
    params_version: i64,
    block: &Computed,
) -> Result<bool> {
    let mut tx = db.begin().await?;
    let now = now_micros();
    let eligible = block.eligible();
    let net = &block.network;
    let by_reason =
        serde_json::to_string(&net.by_reason).map_err(|e| crate::Error::Internal(e.to_string()))?;
    let top = serde_json::Value::Array(
        net.top
            .iter()
            .map(|(device, model, region, amount)| {
                serde_json::json!({"device_id": device, "gpu_model": model, "region": region, "amount": amount})
            })
            .collect(),
    )
    .to_string();
    let by_model = Tally::json_of(&net.by_model);
    let by_region = Tally::json_of(&net.by_region);
    let claimed = tx_run!(&mut tx, |c| sqlx::query(
        "INSERT INTO reward_blocks (hour, params_version, emission, gpu_pool, cpu_pool, gpu_paid, cpu_paid, \
         gpu_score, cpu_score, eligible_devices, ineligible_devices, created_at, \
         listed_devices, listed_gpus, rented_devices, rented_gpus, ineligible_by_reason, top_earners, by_model, by_region, staked) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) \
         ON CONFLICT (hour) DO NOTHING"
    )
    .bind(hour)
    .bind(params_version)
    .bind(block.emission)
    .bind(block.gpu_pool)
    .bind(block.cpu_pool)
    .bind(block.gpu_paid)
    .bind(block.cpu_paid)
    .bind(block.gpu_score)
    .bind(block.cpu_score)
    .bind(eligible)
    .bind(block.rows.len() as i64 - eligible)
    .bind(now)
    .bind(net.total.devices)
    .bind(net.total.gpus)
    .bind(net.total.rented_devices)
    .bind(net.total.rented_gpus)
    .bind(&by_reason)
    .bind(&top)
    .bind(&by_model)
    .bind(&by_region)
    .bind(net.staked)
    .execute(c)
    .await
    .map(|r| r.rows_affected()))
    .map_err(DbError::from)?;
    if claimed == 0 {
        return Ok(false);
    }
    let src = tx.engine().json_rows("$1");
    let insert = format!(
        "INSERT INTO block_rewards (hour, device_id, org_id, pool, score, amount, rented, reason, evidence, \
         costaker_org_id, costaker_amount) \
         SELECT $2, value ->> 0, value ->> 1, value ->> 2, CAST(value ->> 3 AS BIGINT), CAST(value ->> 4 AS BIGINT), \
         CAST(value ->> 5 AS BOOLEAN), value ->> 6, value ->> 7, value ->> 8, CAST(value ->> 9 AS BIGINT) FROM {src}"
    );
    for chunk in block.rows.chunks(ROWS_PER_INSERT) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|r| {
                (
                    r.device_id.as_str(),
                    r.org_id.as_str(),
                    r.pool.as_str(),
                    r.score,
                    r.amount,
                    i64::from(r.rented),
                    r.reason.map(Reason::as_str),
                    r.evidence.as_deref(),
                    r.costaker.as_ref().map(|(org, _)| org.as_str()),
                    r.costaker.as_ref().map_or(0, |(_, part)| *part),
                )
            })
            .collect();
        let json =
            serde_json::to_string(&rows).map_err(|e| crate::Error::Internal(e.to_string()))?;
        tx_run!(&mut tx, |c| sqlx::query(&insert)
            .bind(&json)
            .bind(hour)
            .execute(c)
            .await
            .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
    }
    if let Some(t) = transaction(hour, block)? {
        // The set-based path refuses only a reused reference or an overdraft: the block's
        // reference is new (its hour was just claimed) and minting only credits, so a refusal
        // is a bug, and the whole block rolls back.
        let id = batch_fast_in(&mut tx, std::slice::from_ref(&t))
            .await?
            .and_then(|ids| ids.into_iter().next())
            .ok_or_else(|| {
                crate::Error::Internal(format!("the ledger refused block {hour}'s minting"))
            })?;
        tx_run!(&mut tx, |c| sqlx::query(
            "UPDATE reward_blocks SET transaction_id = $1 WHERE hour = $2"
        )
        .bind(&id)
        .bind(hour)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
    }
    tx.commit().await?;
    Ok(true)
}
