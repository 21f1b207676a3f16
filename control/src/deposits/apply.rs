//! Applying what the watcher read: each token transfer into the treasury, or carrying a
//! reference of ours, is judged ([`Verdict`]) and written once by its signature and
//! instruction, a chunk of transactions per database transaction, with the credits posted as
//! one set-based ledger batch when all of them are new.

use std::collections::HashMap;

use iocloud_billing::ledger::{NewTransaction, Posting, post_in};
use iocloud_billing::rails::solana::{ChainTransaction, ChainTransfer, MintInfo, SolanaRail};
use iocloud_billing::{AccountKind, AccountRef, Money, TransactionKind};
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, Tx, db_run, tx_run};

use super::Deposits;
use super::intents::{INTENT_COLUMNS, IntentRow};
use super::watcher::WatchPass;
use crate::Result;

/// A transfer of ours in a chunk, with what it is to us.
struct Seen<'a> {
    tx: &'a ChainTransaction,
    t: &'a ChainTransfer,
    intent: Option<&'a IntentRow>,
    verdict: Verdict<'a>,
}

/// Rows of `chain_deposits` per insert statement (15 parameters each).
const ROWS_PER_INSERT: usize = 200;

/// A `chain_deposits` row to insert.
struct Row<'a> {
    id: String,
    signature: String,
    instruction: i64,
    token: Option<&'static str>,
    mint: Option<String>,
    destination: String,
    amount: i64,
    reference: Option<String>,
    intent_id: Option<&'a str>,
    org_id: Option<&'a str>,
    status: &'static str,
    reason: Option<&'static str>,
    slot: i64,
    seen_at: i64,
    transaction_id: Option<String>,
}

impl<'a> Row<'a> {
    fn of(rail: &SolanaRail, s: &'a Seen<'a>, now: i64, transaction_id: Option<String>) -> Row<'a> {
        let (status, reason, amount, org) = outcome(&s.verdict, s.t);
        Row {
            id: iocloud_db::ids::new_id("cdp"),
            signature: s.tx.signature.to_string(),
            instruction: i64::from(s.t.instruction),
            token: s
                .t
                .mint
                .and_then(|m| rail.mint_by_address(&m))
                .map(|m| m.token.code()),
            mint: s.t.mint.map(|m| m.to_string()),
            destination: s.t.destination.to_string(),
            amount: i64::try_from(amount).unwrap_or(i64::MAX),
            reference: s.t.references.first().map(|r| r.to_string()),
            intent_id: s.intent.map(|i| i.id.as_str()),
            org_id: org,
            status,
            reason,
            slot: i64::try_from(s.tx.slot).unwrap_or(i64::MAX),
            seen_at: now,
            transaction_id,
        }
    }
}

/// A transfer's row: its status, why (when not credited), the base units it records and the
/// organisation credited.
fn outcome<'a>(
    verdict: &Verdict<'a>,
    t: &ChainTransfer,
) -> (&'static str, Option<&'static str>, u64, Option<&'a str>) {
    match verdict {
        Verdict::Credit { intent, amount, .. } => {
            ("credited", None, *amount, Some(intent.org_id.as_str()))
        }
        Verdict::Unmatched(why) => ("unmatched", Some(*why), t.received, None),
        Verdict::Failed | Verdict::NotOurs => ("failed", Some("failed on chain"), 0, None),
    }
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
    /// Applies every token transfer of `txs` and moves `address`'s cursor past the last, in
    /// one database transaction; then audits the credits. The credits post as one set-based
    /// ledger batch when all of them are new (catching up); a replay, or anything the batch
    /// will not take, goes transfer by transfer instead.
    pub(super) async fn apply_chunk(
        &self,
        rail: &SolanaRail,
        address: &str,
        txs: &[ChainTransaction],
        pass: &mut WatchPass,
    ) -> Result<()> {
        let intents = self.intents_of(txs).await?;
        let mut seen = Vec::new();
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
                if !matches!(verdict, Verdict::NotOurs) {
                    seen.push(Seen {
                        tx,
                        t,
                        intent,
                        verdict,
                    });
                }
            }
        }
        let mut db = self.db.begin().await?;
        let applied = match self.record_all_in(&mut db, rail, &seen).await? {
            Some(applied) => applied,
            None => {
                // The batch may have left partial work: start again, one by one.
                drop(db);
                db = self.db.begin().await?;
                let mut applied = Vec::new();
                for s in &seen {
                    if self.record_in(&mut db, rail, s).await? {
                        applied.push(s);
                    }
                }
                applied
            }
        };
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
        let mut credited = Vec::new();
        for s in &applied {
            match &s.verdict {
                Verdict::Credit { intent, .. } => credited.push((
                    intent.org_id.clone(),
                    format!("{}:{}", s.tx.signature, s.t.instruction),
                )),
                Verdict::Unmatched(_) => pass.unmatched += 1,
                _ => {}
            }
        }
        pass.credited += credited.len();
        // Together, so the audit log writes them as one batch.
        futures::future::join_all(
            credited
                .iter()
                .map(|(org, deposit)| self.audit_credit(org, deposit)),
        )
        .await;
        Ok(())
    }

    /// The fast path of [`apply_chunk`](Self::apply_chunk): every credit in one ledger batch,
    /// every row in one statement, every intent's progress in one more. `None` when the
    /// ledger batch refuses (a credit made before: a replay), and the caller rolls back.
    async fn record_all_in<'s>(
        &self,
        db: &mut Tx,
        rail: &SolanaRail,
        seen: &'s [Seen<'s>],
    ) -> Result<Option<Vec<&'s Seen<'s>>>> {
        let mut credits = Vec::new();
        for s in seen {
            if let Verdict::Credit {
                intent,
                mint,
                amount,
            } = &s.verdict
            {
                credits.push(deposit_credit(
                    rail,
                    mint,
                    &intent.org_id,
                    &s.tx.signature.to_string(),
                    s.t.instruction,
                    *amount,
                )?);
            }
        }
        let Some(ids) = iocloud_billing::ledger::batch_fast_in(db, &credits).await? else {
            return Ok(None);
        };
        let mut ids = ids.into_iter();
        let now = now_micros();
        let rows: Vec<Row<'_>> = seen
            .iter()
            .map(|s| {
                Row::of(
                    rail,
                    s,
                    now,
                    matches!(s.verdict, Verdict::Credit { .. })
                        .then(|| ids.next())
                        .flatten(),
                )
            })
            .collect();
        let inserted = insert_rows_in(db, &rows).await?;
        // Each intent's progress, summed over the chunk.
        let mut progress: HashMap<&str, i64> = HashMap::new();
        for s in seen {
            if let Verdict::Credit { intent, amount, .. } = &s.verdict {
                *progress.entry(intent.id.as_str()).or_default() +=
                    i64::try_from(*amount).unwrap_or(i64::MAX);
            }
        }
        let progress: Vec<(&str, i64)> = progress.into_iter().collect();
        add_progress_in(db, &progress, now).await?;
        Ok(Some(
            seen.iter()
                .filter(|s| {
                    inserted.contains(&(s.tx.signature.to_string(), i64::from(s.t.instruction)))
                })
                .collect(),
        ))
    }

    /// Writes a credit to the audit log, as the chain's doing: nobody's request made it.
    async fn audit_credit(&self, org_id: &str, deposit: &str) {
        self.audit
            .record_background(
                "solana",
                org_id,
                "deposit credited",
                Some(deposit.to_string()),
                200,
            )
            .await;
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

    /// The slow path of [`apply_chunk`](Self::apply_chunk), one transfer at a time: its row,
    /// and for a new credit the ledger transaction and the intent's progress. False when
    /// nothing new happened: the row was there, or the credit was (its row lost).
    async fn record_in(&self, db: &mut Tx, rail: &SolanaRail, s: &Seen<'_>) -> Result<bool> {
        let row = Row::of(rail, s, now_micros(), None);
        if insert_rows_in(db, std::slice::from_ref(&row))
            .await?
            .is_empty()
        {
            return Ok(false);
        }
        if let Verdict::Credit {
            intent,
            mint,
            amount,
        } = &s.verdict
        {
            let credit = deposit_credit(
                rail,
                mint,
                &intent.org_id,
                &row.signature,
                s.t.instruction,
                *amount,
            )?;
            let posted = post_in(db, &credit).await?;
            tx_run!(db, |c| sqlx::query(
                "UPDATE chain_deposits SET transaction_id = $1 WHERE id = $2"
            )
            .bind(&posted.transaction_id)
            .bind(&row.id)
            .execute(c)
            .await
            .map(|_| ()))
            .map_err(DbError::from)?;
            if posted.replayed {
                // Credited before (its row was lost): the money and the intent stand as they
                // are; only the row is restored.
                return Ok(false);
            }
            let added = i64::try_from(*amount).unwrap_or(i64::MAX);
            add_progress_in(db, &[(intent.id.as_str(), added)], row.seen_at).await?;
        }
        Ok(true)
    }
}

/// Inserts the rows not there yet; answers the (signature, instruction) of those inserted.
async fn insert_rows_in(
    db: &mut Tx,
    rows: &[Row<'_>],
) -> Result<std::collections::HashSet<(String, i64)>> {
    let mut inserted = std::collections::HashSet::new();
    for part in rows.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO chain_deposits (id, signature, instruction, token, mint, destination, amount, reference, \
                 intent_id, org_id, status, reason, slot, seen_at, transaction_id) VALUES {} \
                 ON CONFLICT (signature, instruction) DO NOTHING RETURNING signature, instruction",
            iocloud_db::sql::rows(part.len(), 15)
        );
        let done: Vec<(String, i64)> = tx_run!(db, |c| {
            let mut q = sqlx::query_as(&sql);
            for r in part {
                q = q
                    .bind(&r.id)
                    .bind(&r.signature)
                    .bind(r.instruction)
                    .bind(r.token)
                    .bind(&r.mint)
                    .bind(&r.destination)
                    .bind(r.amount)
                    .bind(&r.reference)
                    .bind(r.intent_id)
                    .bind(r.org_id)
                    .bind(r.status)
                    .bind(r.reason)
                    .bind(r.slot)
                    .bind(r.seen_at)
                    .bind(&r.transaction_id);
            }
            q.fetch_all(c).await
        })
        .map_err(DbError::from)?;
        inserted.extend(done);
    }
    Ok(inserted)
}

/// Adds what arrived to each intent (`(id, base units)`, one entry per intent), marking paid
/// those that reached their amount.
async fn add_progress_in(db: &mut Tx, progress: &[(&str, i64)], now: i64) -> Result<()> {
    if progress.is_empty() {
        return Ok(());
    }
    let added = "(SELECT v.amount FROM v WHERE v.id = deposit_intents.id)";
    let sql = format!(
        "WITH v(id, amount) AS (VALUES {}) UPDATE deposit_intents SET received = received + {added}, \
                 status = CASE WHEN amount IS NULL OR received + {added} >= amount THEN 'paid' ELSE status END, \
                 paid_at = CASE WHEN amount IS NULL OR received + {added} >= amount THEN COALESCE(paid_at, {now}) ELSE paid_at END \
                 WHERE id IN (SELECT id FROM v)",
        iocloud_db::sql::rows(progress.len(), 2)
    );
    tx_run!(db, |c| {
        let mut q = sqlx::query(&sql);
        for (id, amount) in progress {
            q = q.bind(*id).bind(*amount);
        }
        q.execute(c).await.map(|_| ())
    })
    .map_err(DbError::from)?;
    Ok(())
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
