//! The watcher: follows the treasury's token accounts and each open intent's reference from
//! a stored cursor, reads every new transaction (many in flight while catching up), and
//! applies each token transfer once. One replica at a time runs it (a lease); a second one,
//! a restart or a replay finds each transfer's row and changes nothing.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use iocloud_billing::ledger::{NewTransaction, Posting, post_in};
use iocloud_billing::rails::solana::{ChainTransaction, ChainTransfer, MintInfo, SolanaRail};
use iocloud_billing::{AccountKind, AccountRef, Money, TransactionKind};
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, Tx, db_run, tx_run};

use super::Deposits;
use super::intents::{INTENT_COLUMNS, IntentRow};
use crate::{Error, Result};

/// The lease one replica holds while it watches.
const LEASE: &str = "solana-deposit-watcher";
const LEASE_TTL: Duration = Duration::from_secs(60);
/// Signatures asked for per page (the node's most).
const PAGE: usize = 1_000;
/// Transactions read at once while catching up.
const IN_FLIGHT: usize = 16;
/// Transactions applied per database transaction (with the cursor): a crash loses at most
/// that much work, and none of it twice, since applying is idempotent.
const CHUNK: usize = 64;

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchPass {
    /// Addresses read (treasury accounts and open references).
    pub followed: usize,
    /// Transactions applied.
    pub transactions: usize,
    pub credited: usize,
    pub unmatched: usize,
    /// False when another replica holds the lease.
    pub ran: bool,
}

/// What a transfer is to us.
enum Verdict<'a> {
    Credit {
        intent: &'a IntentRow,
        mint: &'a MintInfo,
        amount: u64,
    },
    Unmatched(&'static str),
    Failed,
    /// Neither into the treasury nor carrying a reference of ours.
    NotOurs,
}

impl Deposits {
    /// One pass of the watcher, if this replica holds (or takes) the lease.
    pub async fn watch(&self) -> Result<WatchPass> {
        let rail = self.rail()?;
        if !self.leases.acquire(LEASE, LEASE_TTL).await? {
            return Ok(WatchPass::default());
        }
        let mut pass = WatchPass {
            ran: true,
            ..WatchPass::default()
        };
        let now = now_micros();
        db_run!(&self.db, |p| sqlx::query(
            "UPDATE deposit_intents SET status = 'expired' WHERE status = 'open' AND expires_at < $1"
        )
        .bind(now)
        .execute(p)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
        let references: Vec<String> = db_run!(&self.db, |p| sqlx::query_scalar(
            "SELECT reference FROM deposit_intents WHERE status = 'open' ORDER BY id"
        )
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let mut addresses: Vec<String> = rail
            .mints()
            .iter()
            .map(|m| m.treasury_account.to_string())
            .collect();
        addresses.extend(references);
        for address in &addresses {
            self.follow(rail, address, &mut pass).await?;
            pass.followed += 1;
        }
        Ok(pass)
    }

    /// Reads `address`'s history since its cursor and applies it, oldest first, a chunk of
    /// transactions per database transaction, which also moves the cursor past them.
    async fn follow(&self, rail: &SolanaRail, address: &str, pass: &mut WatchPass) -> Result<()> {
        let key = address
            .parse()
            .map_err(|_| Error::corrupt("chain address", address))?;
        let cursor: Option<String> = db_run!(&self.db, |p| sqlx::query_scalar(
            "SELECT last_signature FROM chain_cursors WHERE address = $1"
        )
        .bind(address)
        .fetch_optional(p)
        .await)
        .map_err(DbError::from)?;
        let until = match &cursor {
            Some(c) => Some(
                c.parse()
                    .map_err(|_| Error::corrupt("chain_cursors.last_signature", c))?,
            ),
            None => None,
        };
        // Newest first, page after page back to the cursor.
        let mut found = Vec::new();
        let mut before = None;
        loop {
            let page = rail.signatures(&key, until, before, PAGE).await?;
            let full = page.len() == PAGE;
            before = page.last().map(|s| s.signature);
            found.extend(page);
            if !full {
                break;
            }
        }
        found.reverse();
        // Each read owns what it needs: the stream outlives no borrow of this frame.
        let reads = futures::stream::iter(found.into_iter().map(|s| {
            let rail = rail.clone();
            async move {
                match rail.transaction(&s.signature).await {
                    Ok(Some(tx)) => Ok(tx),
                    // Listed at this commitment, yet not readable there: the node is catching up.
                    Ok(None) => Err(Error::Billing(iocloud_billing::BillingError::Solana {
                        retryable: true,
                        message: format!("{} is listed but cannot be read yet", s.signature),
                    })),
                    Err(e) => Err(Error::from(e)),
                }
            }
        }))
        .buffered(IN_FLIGHT)
        .chunks(CHUNK);
        futures::pin_mut!(reads);
        while let Some(chunk) = reads.next().await {
            // What was read before a failure is applied; the failure ends the pass.
            let failed = chunk.iter().position(Result::is_err);
            let mut chunk = chunk.into_iter();
            let txs: Vec<ChainTransaction> = chunk
                .by_ref()
                .take(failed.unwrap_or(usize::MAX))
                .map(|r| r.expect("before the first failure"))
                .collect();
            if !txs.is_empty() {
                self.apply_chunk(rail, address, &txs, pass).await?;
            }
            if let Some(Err(e)) = chunk.next() {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Applies every token transfer of `txs` and moves `address`'s cursor past the last, in
    /// one database transaction; then audits the credits.
    async fn apply_chunk(
        &self,
        rail: &SolanaRail,
        address: &str,
        txs: &[ChainTransaction],
        pass: &mut WatchPass,
    ) -> Result<()> {
        let intents = self.intents_of(txs).await?;
        let mut credited = Vec::new();
        let mut unmatched = 0;
        let mut db = self.db.begin().await?;
        for tx in txs {
            // What is left of each destination's balance rise to share among its instructions.
            let mut left: HashMap<_, u64> = HashMap::new();
            for t in &tx.transfers {
                left.entry(t.destination).or_insert(t.received);
            }
            for t in &tx.transfers {
                let intent = t
                    .references
                    .iter()
                    .find_map(|r| intents.get(&r.to_string()));
                let verdict = verdict(rail, tx, t, intent, &mut left);
                let done = self
                    .record_in(&mut db, rail, tx, t, intent, &verdict)
                    .await?;
                match (done, &verdict) {
                    (true, Verdict::Credit { intent, .. }) => credited.push((
                        intent.org_id.clone(),
                        format!("{}:{}", tx.signature, t.instruction),
                    )),
                    (true, Verdict::Unmatched(_)) => unmatched += 1,
                    _ => {}
                }
            }
        }
        if let Some(last) = txs.last() {
            let signature = last.signature.to_string();
            tx_run!(&mut db, |c| sqlx::query(
                "INSERT INTO chain_cursors (address, last_signature, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (address) DO UPDATE SET last_signature = excluded.last_signature, updated_at = excluded.updated_at"
            )
            .bind(address)
            .bind(&signature)
            .bind(now_micros())
            .execute(c)
            .await
            .map(|_| ()))
            .map_err(DbError::from)?;
        }
        db.commit().await?;
        pass.transactions += txs.len();
        pass.credited += credited.len();
        pass.unmatched += unmatched;
        // Together, so the audit log writes them as one batch.
        futures::future::join_all(
            credited
                .iter()
                .map(|(org, deposit)| self.audit_credit(org, deposit)),
        )
        .await;
        Ok(())
    }

    /// Writes a credit to the audit log, as the chain's doing: nobody's request made it.
    async fn audit_credit(&self, org_id: &str, deposit: &str) {
        let event = crate::audit::NewAuditEvent {
            org_id: Some(org_id.to_string()),
            actor_type: "solana",
            actor_id: None,
            action: "deposit credited".into(),
            target: Some(deposit.to_string()),
            status: 200,
            request_id: String::new(),
            ip: None,
        };
        if let Err(e) = self.audit.record(event).await {
            tracing::warn!(error = %e, "could not audit a deposit credit");
        }
    }

    /// The intents the transfers of `txs` name by reference, by reference, in one query.
    async fn intents_of(&self, txs: &[ChainTransaction]) -> Result<HashMap<String, IntentRow>> {
        let references: Vec<String> = txs
            .iter()
            .flat_map(|tx| &tx.transfers)
            .flat_map(|t| &t.references)
            .map(|r| r.to_string())
            .collect();
        let mut intents = HashMap::new();
        for chunk in references.chunks(500) {
            let sql = format!(
                "SELECT {INTENT_COLUMNS} FROM deposit_intents WHERE reference IN ({})",
                iocloud_db::sql::params(chunk.len())
            );
            let rows: Vec<IntentRow> = db_run!(&self.db, |p| {
                let mut q = sqlx::query_as(&sql);
                for r in chunk {
                    q = q.bind(r);
                }
                q.fetch_all(p).await
            })
            .map_err(DbError::from)?;
            intents.extend(rows.into_iter().map(|r| (r.reference.clone(), r)));
        }
        Ok(intents)
    }

    /// Writes the transfer's row and, for a credit, the ledger transaction and the intent's
    /// progress. False when the row was there already (seen before: nothing changes).
    async fn record_in(
        &self,
        db: &mut Tx,
        rail: &SolanaRail,
        tx: &ChainTransaction,
        t: &ChainTransfer,
        intent: Option<&IntentRow>,
        verdict: &Verdict<'_>,
    ) -> Result<bool> {
        let (status, reason, amount, org) = match verdict {
            Verdict::NotOurs => return Ok(false),
            Verdict::Credit { intent, amount, .. } => {
                ("credited", None, *amount, Some(intent.org_id.clone()))
            }
            Verdict::Unmatched(why) => ("unmatched", Some(*why), t.received, None),
            Verdict::Failed => ("failed", Some("failed on chain"), 0, None),
        };
        let token = t
            .mint
            .and_then(|m| rail.mint_by_address(&m))
            .map(|m| m.token.code());
        let signature = tx.signature.to_string();
        let inserted = tx_run!(db, |c| sqlx::query(
            "INSERT INTO chain_deposits (id, signature, instruction, token, mint, destination, amount, reference, intent_id, org_id, status, reason, slot, seen_at) \
             VALUES ($14, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (signature, instruction) DO NOTHING"
        )
        .bind(&signature)
        .bind(i64::from(t.instruction))
        .bind(token)
        .bind(t.mint.map(|m| m.to_string()))
        .bind(t.destination.to_string())
        .bind(i64::try_from(amount).unwrap_or(i64::MAX))
        .bind(t.references.first().map(|r| r.to_string()))
        .bind(intent.map(|i| i.id.clone()))
        .bind(&org)
        .bind(status)
        .bind(reason)
        .bind(i64::try_from(tx.slot).unwrap_or(i64::MAX))
        .bind(now_micros())
        .bind(iocloud_db::ids::new_id("cdp"))
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        if inserted == 0 {
            return Ok(false);
        }
        if let Verdict::Credit {
            intent,
            mint,
            amount,
        } = verdict
        {
            let credit = deposit_credit(
                rail,
                mint,
                &intent.org_id,
                &signature,
                t.instruction,
                *amount,
            )?;
            let posted = post_in(db, &credit).await?;
            tx_run!(db, |c| sqlx::query(
                "UPDATE chain_deposits SET transaction_id = $1 WHERE signature = $2 AND instruction = $3"
            )
            .bind(&posted.transaction_id)
            .bind(&signature)
            .bind(i64::from(t.instruction))
            .execute(c)
            .await
            .map(|_| ()))
            .map_err(DbError::from)?;
            let paid_at = now_micros();
            tx_run!(db, |c| sqlx::query(
                "UPDATE deposit_intents SET received = received + $1, \
                 status = CASE WHEN amount IS NULL OR received + $1 >= amount THEN 'paid' ELSE status END, \
                 paid_at = CASE WHEN amount IS NULL OR received + $1 >= amount THEN $2 ELSE paid_at END \
                 WHERE id = $3"
            )
            .bind(i64::try_from(*amount).unwrap_or(i64::MAX))
            .bind(paid_at)
            .bind(&intent.id)
            .execute(c)
            .await
            .map(|_| ()))
            .map_err(DbError::from)?;
        }
        Ok(true)
    }
}

/// What `t` is to us. `left` holds what each destination's balance rise still has to give,
/// so that instructions of one transaction into one account never credit more than arrived.
fn verdict<'a>(
    rail: &'a SolanaRail,
    tx: &ChainTransaction,
    t: &ChainTransfer,
    intent: Option<&'a IntentRow>,
    left: &mut HashMap<iocloud_billing::rails::solana::Pubkey, u64>,
) -> Verdict<'a> {
    let ours = rail.mint_by_treasury_account(&t.destination);
    if ours.is_none() && intent.is_none() {
        return Verdict::NotOurs;
    }
    if tx.failed {
        return Verdict::Failed;
    }
    let Some(mint) = ours else {
        // Our reference, paid somewhere else: another token than the intent's.
        return Verdict::Unmatched("wrong mint");
    };
    let Some(intent) = intent else {
        return Verdict::Unmatched(if t.references.is_empty() {
            "no reference"
        } else {
            "unknown reference"
        });
    };
    if intent.mint != mint.mint.to_string() {
        return Verdict::Unmatched("wrong mint");
    }
    if !t.checked || t.mint != Some(mint.mint) {
        return Verdict::Unmatched("not a checked transfer of the mint");
    }
    let remaining = left.entry(t.destination).or_insert(0);
    let amount = t.amount.min(*remaining);
    *remaining -= amount;
    if amount == 0 {
        return Verdict::Unmatched("nothing arrived");
    }
    Verdict::Credit {
        intent,
        mint,
        amount,
    }
}

/// The credit of a deposit: Dr the Solana clearing account, Cr the organisation's available
/// balance (and, for USDC, the fee to platform revenue), under `solana:<signature>:<ix>`.
pub(super) fn deposit_credit(
    rail: &SolanaRail,
    mint: &MintInfo,
    org_id: &str,
    signature: &str,
    instruction: u32,
    amount: u64,
) -> Result<NewTransaction> {
    let currency = mint.token.credits();
    let micros = iocloud_billing::rails::solana::to_micros(amount, mint.decimals)
        .ok_or(iocloud_billing::BillingError::Overflow)?;
    let fee = if mint.token == iocloud_billing::rails::solana::ChainToken::Usdc {
        i64::try_from(i128::from(micros) * i128::from(rail.usdc_fee_bps()) / 10_000)
            .map_err(|_| iocloud_billing::BillingError::Overflow)?
    } else {
        0
    };
    let money = |m| Money::from_micros(m, currency);
    let mut postings = vec![
        Posting {
            account: AccountRef::platform(AccountKind::ExternalSolana, currency),
            amount: money(-micros),
        },
        Posting {
            account: AccountRef::org(org_id, AccountKind::Available, currency),
            amount: money(micros - fee),
        },
    ];
    if fee > 0 {
        postings.push(Posting {
            account: AccountRef::platform(AccountKind::PlatformRevenue, currency),
            amount: money(fee),
        });
    }
    Ok(NewTransaction {
        external_ref: format!("solana:{signature}:{instruction}"),
        kind: TransactionKind::Deposit,
        org_id: Some(org_id.to_string()),
        memo: format!("{} deposit {signature}", mint.token.code()),
        postings,
    })
}

impl Deposits {
    /// Runs a watcher pass every `interval` until the process ends; a pass that fails (the
    /// node away) is logged and the next one resumes from the cursors.
    pub fn spawn_watcher(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        crate::periodic::every(interval, move || {
            let this = this.clone();
            async move {
                if let Err(e) = this.watch().await {
                    tracing::warn!(error = %e, "deposit watcher pass failed");
                }
            }
        })
    }
}
