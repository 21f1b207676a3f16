//! Posting a transaction: validate, claim the external reference, move the balances with
//! conditional updates, record the postings, all in one database transaction.

use std::collections::BTreeMap;

use iocloud_db::ids::new_id;
use iocloud_db::sql::rows as placeholders;
use iocloud_db::time::now_micros;
use iocloud_db::{Tx, tx_run};
use sha2::{Digest, Sha256};

use super::{AccountRef, Ledger, TransactionKind};
use crate::money::{Currency, Money};
use crate::{BillingError, Result};

/// One leg of a transaction: `amount` is added to the account's balance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posting {
    pub account: AccountRef,
    pub amount: Money,
}

impl Posting {
    /// Moves `amount` from one account to another: two postings.
    pub fn transfer(from: AccountRef, to: AccountRef, amount: Money) -> Result<[Posting; 2]> {
        Ok([
            Posting {
                account: from,
                amount: amount.checked_neg()?,
            },
            Posting {
                account: to,
                amount,
            },
        ])
    }
}

#[derive(Clone, Debug)]
pub struct NewTransaction {
    /// Idempotency: the same reference twice is one transaction.
    pub external_ref: String,
    pub kind: TransactionKind,
    /// The organisation the transaction concerns, for its statements.
    pub org_id: Option<String>,
    pub memo: String,
    pub postings: Vec<Posting>,
}

/// A posted transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posted {
    pub transaction_id: String,
    /// True when the reference had been posted before and nothing changed now.
    pub replayed: bool,
}

const ATTEMPTS: usize = 8;

impl Ledger {
    /// Posts a balanced transaction, retrying when a concurrent transaction made the database
    /// refuse ours (a deadlock or a busy SQLite); such a refusal left nothing behind.
    pub async fn post(&self, t: &NewTransaction) -> Result<Posted> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result: Result<Posted> = async {
                let mut tx = self.db.begin().await?;
                let posted = post_in(&mut tx, t).await?;
                tx.commit().await?;
                Ok(posted)
            }
            .await;
            match result {
                Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                    tokio::time::sleep(std::time::Duration::from_millis(2 << attempt)).await;
                }
                other => return other,
            }
        }
    }
}

impl Ledger {
    /// Posts many transactions in one database transaction (one commit, so one disk flush),
    /// each inside a savepoint: one that is refused (insufficient funds, a reused reference)
    /// is undone alone and reported in its slot; the others stand. A conflict with another
    /// writer (a deadlock, a busy database) retries the whole batch.
    pub async fn post_batch(&self, batch: &[NewTransaction]) -> Result<Vec<Result<Posted>>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = match self.try_batch_fast(batch).await {
                Ok(Some(results)) => Ok(results),
                Ok(None) => self.try_batch(batch).await,
                Err(e) => Err(e),
            };
            match outcome {
                Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                    tokio::time::sleep(std::time::Duration::from_millis(2 << attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// The whole batch in a handful of set-based statements: every reference new and no account
    /// overdrawn by the batch's net movement (only the committed state is ever visible, so the
    /// order inside the batch does not matter). Anything else returns `None` and nothing is
    /// written; the caller falls back to one savepoint per transaction.
    async fn try_batch_fast(
        &self,
        batch: &[NewTransaction],
    ) -> Result<Option<Vec<Result<Posted>>>> {
        let mut tx = self.db.begin().await?;
        let Some(ids) = batch_fast_in(&mut tx, batch).await? else {
            return Ok(None);
        };
        tx.commit().await?;
        Ok(Some(
            ids.into_iter()
                .map(|transaction_id| {
                    Ok(Posted {
                        transaction_id,
                        replayed: false,
                    })
                })
                .collect(),
        ))
    }

    async fn try_batch(&self, batch: &[NewTransaction]) -> Result<Vec<Result<Posted>>> {
        let mut tx = self.db.begin().await?;
        lock_accounts(&mut tx, batch).await?;
        let mut results = Vec::with_capacity(batch.len());
        for t in batch {
            tx_run!(&mut tx, |c| sqlx::query("SAVEPOINT batch_item")
                .execute(c)
                .await
                .map(|r| r.rows_affected()))?;
            match post_in(&mut tx, t).await {
                Ok(posted) => {
                    tx_run!(&mut tx, |c| sqlx::query("RELEASE SAVEPOINT batch_item")
                        .execute(c)
                        .await
                        .map(|r| r.rows_affected()))?;
                    results.push(Ok(posted));
                }
                Err(e) if e.is_retryable() => return Err(e),
                Err(e) => {
                    tx_run!(&mut tx, |c| sqlx::query("ROLLBACK TO SAVEPOINT batch_item")
                        .execute(c)
                        .await
                        .map(|r| r.rows_affected()))?;
                    tx_run!(&mut tx, |c| sqlx::query("RELEASE SAVEPOINT batch_item")
                        .execute(c)
                        .await
                        .map(|r| r.rows_affected()))?;
                    results.push(Err(e));
                }
            }
        }
        tx.commit().await?;
        Ok(results)
    }
}

/// Postgres: locks every existing account a batch touches, in lock order
/// ([`AccountRef::lock_rank`], then id), before it moves any. Batches that share accounts then
/// queue instead of deadlocking on each other's row locks. (SQLite's `BEGIN IMMEDIATE` already
/// serialises writers.)
async fn lock_accounts(tx: &mut Tx, batch: &[NewTransaction]) -> Result<()> {
    if let Tx::Postgres(t) = tx {
        let mut accounts: Vec<(u8, String)> = batch
            .iter()
            .flat_map(|t| {
                t.postings
                    .iter()
                    .map(|p| (p.account.lock_rank(), p.account.id()))
            })
            .collect();
        accounts.sort();
        accounts.dedup();
        let ids: Vec<String> = accounts.into_iter().map(|(_, id)| id).collect();
        // Locked in the order given (rows are locked as the sort hands them up). `NO KEY
        // UPDATE`, the lock the balance update takes anyway: postings of other transactions
        // (whose foreign key takes a key-share lock) do not wait for it.
        sqlx::query(
            "SELECT a.id FROM unnest($1::text[]) WITH ORDINALITY AS w(id, n) \
             JOIN ledger_accounts a ON a.id = w.id ORDER BY w.n FOR NO KEY UPDATE OF a",
        )
        .bind(&ids)
        .fetch_all(&mut **t)
        .await?;
    }
    Ok(())
}

/// Postgres: which of the accounts exist, read without waiting for anyone. (SQLite: none are
/// assumed to; it inserts them all with `ON CONFLICT DO NOTHING`, which is as cheap there.)
async fn existing_accounts(
    tx: &mut Tx,
    totals: &BTreeMap<String, (AccountRef, i64)>,
) -> Result<std::collections::HashSet<String>> {
    let Tx::Postgres(t) = tx else {
        return Ok(Default::default());
    };
    let ids: Vec<&String> = totals.keys().collect();
    let found: Vec<String> =
        sqlx::query_scalar("SELECT id FROM ledger_accounts WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut **t)
            .await?;
    Ok(found.into_iter().collect())
}

/// Checks that postings name non-zero amounts in their account's currency and sum to zero in
/// each currency; returns the net amount per account, by account id.
fn net_by_account(postings: &[Posting]) -> Result<BTreeMap<String, (AccountRef, i64)>> {
    if postings.is_empty() {
        return Err(BillingError::Unbalanced);
    }
    let mut per_currency: BTreeMap<Currency, i128> = BTreeMap::new();
    let mut per_account: BTreeMap<String, (AccountRef, i64)> = BTreeMap::new();
    for p in postings {
        if p.amount.micros() == 0 {
            return Err(BillingError::InvalidAmount(
                "a posting cannot be zero".into(),
            ));
        }
        if p.amount.currency() != p.account.currency {
            return Err(BillingError::CurrencyMismatch(
                p.amount.currency(),
                p.account.currency,
            ));
        }
        *per_currency.entry(p.amount.currency()).or_default() += i128::from(p.amount.micros());
        let entry = per_account
            .entry(p.account.id())
            .or_insert_with(|| (p.account.clone(), 0));
        entry.1 = entry
            .1
            .checked_add(p.amount.micros())
            .ok_or(BillingError::Overflow)?;
    }
    if per_currency.values().any(|sum| *sum != 0) {
        return Err(BillingError::Unbalanced);
    }
    Ok(per_account)
}

fn digest(t: &NewTransaction) -> String {
    let mut legs: Vec<(String, i64)> = t
        .postings
        .iter()
        .map(|p| (p.account.id(), p.amount.micros()))
        .collect();
    legs.sort();
    let mut h = Sha256::new();
    h.update(t.kind.as_str());
    h.update(t.org_id.as_deref().unwrap_or(""));
    // The memo names the hold a capture or release is for: the same reference on another
    // hold is a different transaction, not a retry.
    h.update(&t.memo);
    for (id, amount) in legs {
        h.update(format!("|{id}:{amount}"));
    }
    hex::encode(h.finalize())
}

/// Posts inside an open database transaction, so callers (holds) can change their own rows
/// atomically with the money.
pub async fn post_in(tx: &mut Tx, t: &NewTransaction) -> Result<Posted> {
    let net = net_by_account(&t.postings)?;
    let digest = digest(t);
    let now = now_micros();
    let id = new_id("ltx");
    let claimed = tx_run!(tx, |c| {
        sqlx::query(
            "INSERT INTO ledger_transactions (id, external_ref, kind, org_id, memo, digest, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (external_ref) DO NOTHING",
        )
        .bind(&id)
        .bind(&t.external_ref)
        .bind(t.kind.as_str())
        .bind(&t.org_id)
        .bind(&t.memo)
        .bind(&digest)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })?;
    if claimed == 0 {
        let (existing_id, existing_digest): (String, String) = tx_run!(tx, |c| {
            sqlx::query_as("SELECT id, digest FROM ledger_transactions WHERE external_ref = $1")
                .bind(&t.external_ref)
                .fetch_one(c)
                .await
        })?;
        if existing_digest != digest {
            return Err(BillingError::ExternalRefReused(t.external_ref.clone()));
        }
        return Ok(Posted {
            transaction_id: existing_id,
            replayed: true,
        });
    }

    // In lock order, as every other transaction takes them.
    let mut moves: Vec<_> = net.iter().collect();
    moves.sort_by_key(|(_, (account, _))| account.lock_rank());
    for (account_id, (account, amount)) in moves {
        move_balance(tx, account_id, account, *amount, now).await?;
    }
    insert_postings(tx, &id, &t.postings, now).await?;
    Ok(Posted {
        transaction_id: id,
        replayed: false,
    })
}

/// Adds `amount` to an account's balance, creating the account on first use. The balance moves
/// only if it stays at or above zero (or the account may go negative): a concurrent debit
/// cannot slip between a read and a write.
async fn move_balance(
    tx: &mut Tx,
    account_id: &str,
    account: &AccountRef,
    amount: i64,
    now: i64,
) -> Result<()> {
    // The conditional update fails both when the account would be overdrawn and when it does
    // not exist yet. Reading it tells which; a writer that created it between the update and
    // the read (its first use, racing ours) is why the update is tried again rather than the
    // read taken as the verdict. Three rounds cover create-then-update; a fourth would mean
    // the account keeps changing under us, and the answer is the balance last read.
    let mut balance = 0;
    for _ in 0..3 {
        if add_to_balance(tx, account_id, amount).await? {
            return Ok(());
        }
        let row: Option<(i64, bool)> = tx_run!(tx, |c| {
            sqlx::query_as("SELECT balance, allow_negative FROM ledger_accounts WHERE id = $1")
                .bind(account_id)
                .fetch_optional(c)
                .await
        })?;
        match row {
            Some((current, allow_negative)) => {
                if !allow_negative && current + amount < 0 {
                    balance = current;
                    break;
                }
            }
            None => create_account(tx, account_id, account, now).await?,
        }
    }
    Err(BillingError::InsufficientFunds {
        kind: account.kind,
        currency: account.currency,
        needed: Money::from_micros(-(balance + amount), account.currency).to_decimal(),
    })
}

/// Creates an account on its first use; a no-op when another writer just did.
async fn create_account(
    tx: &mut Tx,
    account_id: &str,
    account: &AccountRef,
    now: i64,
) -> Result<()> {
    // `ON CONFLICT` names no column: the id and (owner, kind, currency) are both unique and
    // say the same, and a writer racing on the same account may trip either first.
    tx_run!(tx, |c| {
        sqlx::query(
            "INSERT INTO ledger_accounts (id, owner, kind, currency, balance, allow_negative, created_at) \
             VALUES ($1, $2, $3, $4, 0, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(account_id)
        .bind(&account.owner)
        .bind(account.kind.as_str())
        .bind(account.currency.code())
        .bind(account.kind.allows_negative())
        .bind(now)
        .execute(c)
        .await
        .map(|_| ())
    })?;
    Ok(())
}

/// The conditional update; false when the account is missing or would be overdrawn.
async fn add_to_balance(tx: &mut Tx, account_id: &str, amount: i64) -> Result<bool> {
    let moved = tx_run!(tx, |c| {
        sqlx::query("UPDATE ledger_accounts SET balance = balance + $1 WHERE id = $2 AND (allow_negative OR balance + $1 >= 0)")
            .bind(amount)
            .bind(account_id)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(moved == 1)
}

/// The set-based batch inside an open database transaction: `Some(transaction ids)` when every
/// reference was new and no account ends overdrawn; `None` when the caller must roll back and
/// take the slow path (the transaction may hold partial work then).
pub async fn batch_fast_in(tx: &mut Tx, batch: &[NewTransaction]) -> Result<Option<Vec<String>>> {
    if batch.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let mut nets = Vec::with_capacity(batch.len());
    for t in batch {
        match net_by_account(&t.postings) {
            Ok(net) => nets.push(net),
            Err(_) => return Ok(None),
        }
    }
    let mut totals: BTreeMap<String, (AccountRef, i64)> = BTreeMap::new();
    for net in &nets {
        for (id, (account, amount)) in net {
            let entry = totals
                .entry(id.clone())
                .or_insert_with(|| (account.clone(), 0));
            entry.1 = entry.1.checked_add(*amount).ok_or(BillingError::Overflow)?;
        }
    }
    let now = now_micros();
    let ids: Vec<String> = batch.iter().map(|_| new_id("ltx")).collect();
    // 1. Claim every reference at once; a reference already used sends us to the slow path.
    let rows: Vec<(&NewTransaction, &String)> = batch.iter().zip(&ids).collect();
    let mut claimed = 0;
    for part in rows.chunks(ROWS_PER_STATEMENT) {
        let values = placeholders(part.len(), 7);
        let sql = format!(
            "INSERT INTO ledger_transactions (id, external_ref, kind, org_id, memo, digest, created_at) VALUES {values} \
             ON CONFLICT (external_ref) DO NOTHING"
        );
        claimed += tx_run!(tx, |c| {
            let mut q = sqlx::query(&sql);
            for (t, id) in part {
                q = q
                    .bind(*id)
                    .bind(&t.external_ref)
                    .bind(t.kind.as_str())
                    .bind(&t.org_id)
                    .bind(&t.memo)
                    .bind(digest(t))
                    .bind(now);
            }
            q.execute(c).await.map(|r| r.rows_affected())
        })?;
    }
    if claimed != batch.len() as u64 {
        return Ok(None);
    }

    // 2. Make sure every account exists. On Postgres, only the missing ones are inserted: an
    // insert that finds an account being updated by another transaction waits for it, and the
    // busiest accounts are updated all the time.
    let existing = existing_accounts(tx, &totals).await?;
    let mut accounts: Vec<(&String, &AccountRef)> = totals
        .iter()
        .filter(|(id, _)| !existing.contains(*id))
        .map(|(id, (a, _))| (id, a))
        .collect();
    // In lock order too: an insert waits on another transaction inserting the same id. Any
    // unique conflict (id, or owner, kind and currency) means the account is there.
    accounts.sort_by_key(|(_, a)| a.lock_rank());
    for part in accounts.chunks(ROWS_PER_STATEMENT) {
        let values = placeholders(part.len(), 6);
        let sql = format!(
            "INSERT INTO ledger_accounts (id, owner, kind, currency, allow_negative, created_at) VALUES {values} ON CONFLICT DO NOTHING"
        );
        tx_run!(tx, |c| {
            let mut q = sqlx::query(&sql);
            for (id, a) in part {
                q = q
                    .bind(*id)
                    .bind(&a.owner)
                    .bind(a.kind.as_str())
                    .bind(a.currency.code())
                    .bind(a.kind.allows_negative())
                    .bind(now);
            }
            q.execute(c).await.map(|r| r.rows_affected())
        })?;
    }

    // 3. Every posting in one statement.
    let postings: Vec<(&String, &Posting)> = batch
        .iter()
        .zip(&ids)
        .flat_map(|(t, id)| t.postings.iter().map(move |p| (id, p)))
        .collect();
    for part in postings.chunks(ROWS_PER_STATEMENT) {
        let values = placeholders(part.len(), 7);
        let sql = format!(
            "INSERT INTO ledger_postings (id, transaction_id, account_id, owner, currency, amount, created_at) VALUES {values}"
        );
        tx_run!(tx, |c| {
            let mut q = sqlx::query(&sql);
            for (tid, p) in part {
                q = q
                    .bind(new_id("pst"))
                    .bind(*tid)
                    .bind(p.account.id())
                    .bind(&p.account.owner)
                    .bind(p.account.currency.code())
                    .bind(p.amount.micros())
                    .bind(now);
            }
            q.execute(c).await.map(|r| r.rows_affected())
        })?;
    }
    // 4. Last, as the rows it locks may be shared by every batch (platform revenue): move
    // every balance by its net amount, locked in lock order, refusing any overdraft.
    lock_accounts(tx, batch).await?;
    let moving: Vec<(&String, i64)> = totals
        .iter()
        .filter(|(_, (_, d))| *d != 0)
        .map(|(id, (_, d))| (id, *d))
        .collect();
    let mut moved = 0;
    for part in moving.chunks(ROWS_PER_STATEMENT) {
        let values = placeholders(part.len(), 2);
        let sql = format!(
            "UPDATE ledger_accounts SET balance = balance + d.delta \
                 FROM (SELECT column1 AS id, column2 AS delta FROM (VALUES {values}) AS v) AS d \
                 WHERE ledger_accounts.id = d.id AND (ledger_accounts.allow_negative OR ledger_accounts.balance + d.delta >= 0)"
        );
        moved += tx_run!(tx, |c| {
            let mut q = sqlx::query(&sql);
            for (id, delta) in part {
                q = q.bind(*id).bind(*delta);
            }
            q.execute(c).await.map(|r| r.rows_affected())
        })?;
    }
    if moved != moving.len() as u64 {
        return Ok(None);
    }

    Ok(Some(ids))
}

/// Rows per multi-row statement. sqlx's SQLite driver binds parameters in time that grows with
/// the square of their number (500 rows of 16 took 200 ms; 64 rows keep it linear enough), and
/// Postgres gains little from longer statements.
pub(crate) const ROWS_PER_STATEMENT: usize = 64;

/// All of a transaction's postings in one statement.
async fn insert_postings(
    tx: &mut Tx,
    transaction_id: &str,
    postings: &[Posting],
    now: i64,
) -> Result<()> {
    let sql = format!(
        "INSERT INTO ledger_postings (id, transaction_id, account_id, owner, currency, amount, created_at) VALUES {}",
        placeholders(postings.len(), 7)
    );
    tx_run!(tx, |c| {
        let mut q = sqlx::query(&sql);
        for p in postings {
            q = q
                .bind(new_id("pst"))
                .bind(transaction_id)
                .bind(p.account.id())
                .bind(&p.account.owner)
                .bind(p.account.currency.code())
                .bind(p.amount.micros())
                .bind(now);
        }
        q.execute(c).await.map(|r| r.rows_affected())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::AccountKind;

    fn usd(m: i64) -> Money {
        Money::from_micros(m, Currency::Usd)
    }

    #[test]
    fn unbalanced_or_odd_postings_are_refused() {
        let a = AccountRef::org("o", AccountKind::Available, Currency::Usd);
        let b = AccountRef::platform(AccountKind::Promotions, Currency::Usd);
        assert!(net_by_account(&[]).is_err());
        assert!(matches!(
            net_by_account(&[
                Posting {
                    account: a.clone(),
                    amount: usd(5)
                },
                Posting {
                    account: b.clone(),
                    amount: usd(-4)
                }
            ]),
            Err(BillingError::Unbalanced)
        ));
        assert!(
            net_by_account(&[Posting {
                account: a.clone(),
                amount: usd(0)
            }])
            .is_err()
        );
        let io = Money::from_micros(5, Currency::Io);
        assert!(matches!(
            net_by_account(&[Posting {
                account: a.clone(),
                amount: io
            }]),
            Err(BillingError::CurrencyMismatch(..))
        ));
        let ok = net_by_account(&Posting::transfer(b, a.clone(), usd(7)).unwrap()).unwrap();
        assert_eq!(ok[&a.id()].1, 7);
    }
}
