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
/// The cursor is stored every this many transactions applied, so a crash loses little work
/// (and none of it twice: applying is idempotent).
const CURSOR_EVERY: usize = 256;

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

    /// Reads `address`'s history since its cursor and applies it, oldest first.
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
        let signatures: Vec<_> = found.iter().map(|s| s.signature).collect();
        let mut reads = futures::stream::iter(signatures.clone().into_iter().map(|signature| {
            let rail = rail.clone();
            async move { rail.transaction(&signature).await }
        }))
        .buffered(IN_FLIGHT);
        let mut applied = None;
        let mut since_stored = 0;
        let mut outcome = Ok(());
        let mut index = 0;
        while let Some(read) = reads.next().await {
            let signature = signatures[index];
            index += 1;
            let tx = match read {
                Ok(Some(tx)) => tx,
                // Listed at this commitment, yet not readable there: the node is catching up.
                Ok(None) => {
                    outcome = Err(Error::Billing(iocloud_billing::BillingError::Solana {
                        retryable: true,
                        message: format!("{signature} is listed but cannot be read yet"),
                    }));
                    break;
                }
                Err(e) => {
                    outcome = Err(e.into());
                    break;
                }
            };
            if let Err(e) = self.apply(rail, &tx, pass).await {
                outcome = Err(e);
                break;
            }
            pass.transactions += 1;
            applied = Some(signature);
            since_stored += 1;
            if since_stored == CURSOR_EVERY {
                self.store_cursor(address, &signature.to_string()).await?;
                since_stored = 0;
            }
        }
        if let Some(last) = applied {
            self.store_cursor(address, &last.to_string()).await?;
        }
        outcome
    }

    async fn store_cursor(&self, address: &str, signature: &str) -> Result<()> {
        db_run!(&self.db, |p| sqlx::query(
            "INSERT INTO chain_cursors (address, last_signature, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (address) DO UPDATE SET last_signature = excluded.last_signature, updated_at = excluded.updated_at"
        )
        .bind(address)
        .bind(signature)
        .bind(now_micros())
        .execute(p)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
        Ok(())
    }

    /// Applies every token transfer of `tx`, each in a database transaction of its own.
    async fn apply(
        &self,
        rail: &SolanaRail,
        tx: &ChainTransaction,
        pass: &mut WatchPass,
    ) -> Result<()> {
        // What is left of each destination's balance rise to share among its instructions.
        let mut left: HashMap<_, u64> = HashMap::new();
        for t in &tx.transfers {
            left.entry(t.destination).or_insert(t.received);
        }
        for t in &tx.transfers {
            let intent = self.intent_of(t).await?;
            let verdict = verdict(rail, tx, t, intent.as_ref(), &mut left);
            let mut db = self.db.begin().await?;
            let done = self
                .record_in(&mut db, rail, tx, t, intent.as_ref(), &verdict)
                .await?;
            db.commit().await?;
            match (done, &verdict) {
                (true, Verdict::Credit { intent, .. }) => {
                    pass.credited += 1;
                    self.audit_credit(
                        &intent.org_id,
                        &format!("{}:{}", tx.signature, t.instruction),
                    )
                    .await;
                }
                (true, Verdict::Unmatched(_)) => pass.unmatched += 1,
                _ => {}
            }
        }
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

    /// The intent whose reference `t` carries, if any.
    async fn intent_of(&self, t: &ChainTransfer) -> Result<Option<IntentRow>> {
        for reference in &t.references {
            let sql = format!("SELECT {INTENT_COLUMNS} FROM deposit_intents WHERE reference = $1");
            let reference = reference.to_string();
            let row: Option<IntentRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
                .bind(&reference)
                .fetch_optional(p)
                .await)
            .map_err(DbError::from)?;
            if row.is_some() {
                return Ok(row);
            }
        }
        Ok(None)
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
            "INSERT INTO chain_deposits (signature, instruction, token, mint, destination, amount, reference, intent_id, org_id, status, reason, slot, seen_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (signature, instruction) DO NOTHING"
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
