//! The sender: signs, sends and follows each payout's transfer until it is finalized, on one
//! replica at a time (a lease).
//!
//! Its rule, which keeps a payout to one transfer whatever crashes: the signed bytes, their
//! signature and the last block height their blockhash is good for are committed before they
//! are sent; until the signature is finalized the same bytes are sent again; a payout is
//! signed anew only when the rail's block height is past that last height (the old bytes can
//! never land), the chain does not know the signature, and nothing is found under the payout's
//! reference. A crash after signing resends the stored bytes; after sending, it finds them.
//! And before any signing it looks under the reference: a database restored from a backup
//! taken before a payout was paid shows it ready again, and must not pay it twice.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use iocloud_billing::ledger::{NewTransaction, Posting, post_in};
use iocloud_billing::rails::solana::{
    ChainToken, Landing, Pubkey, Signature, SolanaRail, from_micros,
};
use iocloud_billing::{AccountKind, AccountRef, Money, TransactionKind};
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, db_run, tx_run};

use super::Payouts;
use super::requests::{PAYOUT_COLUMNS, PayoutRow, PayoutStatus, give_back_in};
use crate::{Error, Result};

/// The lease one replica holds while it sends. Short, so that a replica that died holding it
/// delays payouts little: two senders at once would waste work, never pay twice (every step
/// claims the payout's row by its state first).
const LEASE: &str = "solana-payout-sender";
const LEASE_TTL: Duration = Duration::from_secs(10);
/// Payouts looked at per pass.
const BATCH: i64 = 500;

/// What the treasury can still pay in each token this pass: read once per token (its balance
/// from the node, what sent transfers will take from the database), then kept by the pass as
/// it signs, so a pass of many payouts asks the node once per token, not once per payout.
#[derive(Default)]
struct Treasury {
    /// Token units: (held at the pass's read, owed to transfers sent, this pass's included).
    tokens: std::collections::HashMap<ChainToken, (u64, u64)>,
}

impl Treasury {
    async fn of(
        &mut self,
        payouts: &Payouts,
        rail: &SolanaRail,
        token: ChainToken,
        decimals: u8,
    ) -> Result<&mut (u64, u64)> {
        match self.tokens.entry(token) {
            std::collections::hash_map::Entry::Occupied(known) => Ok(known.into_mut()),
            std::collections::hash_map::Entry::Vacant(unread) => {
                // What the transfers already sent will take is spent, landed or not.
                let sent: i64 = db_run!(&payouts.db, |p| sqlx::query_scalar(
                    "SELECT CAST(COALESCE(SUM(token_amount), 0) AS BIGINT) FROM payouts WHERE token = $1 AND status = 'sent'"
                )
                .bind(token.code())
                .fetch_one(p)
                .await)
                .map_err(DbError::from)?;
                let owed = from_micros(sent, decimals).unwrap_or(u64::MAX);
                let held = rail.treasury_balance(token).await?;
                Ok(unread.insert((held, owed)))
            }
        }
    }
}

/// A step the sender has just taken for a payout, told to an observer ([`Payouts::observe`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayoutStep {
    /// The transfer is signed and kept; not sent yet.
    Signed,
    /// The kept bytes went to the node.
    Sent,
    /// The transfer is finalized; the payout is not marked paid yet.
    Finalized,
}

impl PayoutStep {
    pub fn as_str(self) -> &'static str {
        match self {
            PayoutStep::Signed => "signed",
            PayoutStep::Sent => "sent",
            PayoutStep::Finalized => "finalized",
        }
    }
}

/// Told of each step with the payout's id and its transfer's signature (fault tests act on
/// the node, or stop the process, there).
pub type StepHook = Arc<dyn Fn(PayoutStep, &str, &str) + Send + Sync>;

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendPass {
    /// Transfers signed (first or again) and sent.
    pub signed: usize,
    /// Kept transfers sent again.
    pub resent: usize,
    pub paid: usize,
    /// Failed for good (earnings given back).
    pub failed: usize,
    /// Waiting for the treasury.
    pub queued: usize,
    /// False when another replica holds the lease.
    pub ran: bool,
}

impl Payouts {
    /// Tells `hook` of every step the sender takes from now on.
    pub fn observe(&self, hook: StepHook) {
        *self.hook.write() = Some(hook);
    }

    fn step(&self, step: PayoutStep, id: &str, signature: &str) {
        let hook = self.hook.read().clone();
        if let Some(hook) = hook {
            hook(step, id, signature);
        }
    }

    /// One pass of the sender, if this replica holds (or takes) the lease. A node that fails
    /// ends the pass (the caller backs off); what was done stays done.
    pub async fn send_pass(&self) -> Result<SendPass> {
        let rail = self.rail()?;
        if !self.leases.acquire(LEASE, LEASE_TTL).await? {
            return Ok(SendPass::default());
        }
        let mut pass = SendPass {
            ran: true,
            ..SendPass::default()
        };
        let sql = format!(
            "SELECT {PAYOUT_COLUMNS} FROM payouts WHERE status IN ('ready', 'queued', 'sent') \
             ORDER BY created_at, id LIMIT {BATCH}"
        );
        let rows: Vec<PayoutRow> = db_run!(&self.db, |p| sqlx::query_as(&sql).fetch_all(p).await)
            .map_err(DbError::from)?;
        let mut treasury = Treasury::default();
        for row in rows {
            match row.status()? {
                PayoutStatus::Sent => self.follow_up(rail, &row, &mut pass, &mut treasury).await?,
                _ => {
                    self.sign_and_send(rail, &row, &mut pass, &mut treasury)
                        .await?
                }
            }
        }
        Ok(pass)
    }

    /// Runs a pass every `interval` until the process ends, backing off up to a minute while
    /// the node fails.
    pub fn spawn_sender(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        crate::periodic::backing_off(interval, Duration::from_secs(60), move || {
            let this = this.clone();
            async move { this.send_pass().await.map(|_| ()) }
        })
    }

    /// Signs the payout's transfer, keeps it, then sends it; or queues the payout while the
    /// treasury holds too little of its token.
    async fn sign_and_send(
        &self,
        rail: &SolanaRail,
        row: &PayoutRow,
        pass: &mut SendPass,
        treasury: &mut Treasury,
    ) -> Result<()> {
        let token = row.token()?;
        let mint = rail
            .mint(token)
            .ok_or(Error::RailNotConfigured("payouts in this token"))?;
        let units = from_micros(row.token_amount, mint.decimals)
            .ok_or_else(|| Error::corrupt("payouts.token_amount", &row.token_amount.to_string()))?;
        let (held, owed) = *treasury.of(self, rail, token, mint.decimals).await?;
        // A sent payout signed anew (its transfer expired unseen) is among the sent already.
        let owed = if row.status()? == PayoutStatus::Sent {
            owed.saturating_sub(units)
        } else {
            owed
        };
        if held < owed.saturating_add(units) {
            if row.status()? != PayoutStatus::Queued {
                self.queue(
                    row,
                    &format!("the treasury holds too little {}", token.code()),
                )
                .await?;
            }
            pass.queued += 1;
            return Ok(());
        }
        let owner: Pubkey = row
            .address
            .parse()
            .map_err(|_| Error::corrupt("payouts.address", &row.address))?;
        let reference: Pubkey = row
            .reference
            .parse()
            .map_err(|_| Error::corrupt("payouts.reference", &row.reference))?;
        // Nothing may have been paid for it already. A database restored from a backup taken
        // before the payout was paid holds it as ready again, with no signature of its
        // transfer; the transfer carries its reference. One that landed (a failed one moved
        // nothing) holds the payout for a person to look at.
        let landed = rail
            .signatures(&reference, None, None, 10)
            .await?
            .into_iter()
            .find(|s| !s.failed);
        if let Some(paid) = landed {
            tracing::error!(payout = %row.id, signature = %paid.signature, "a payout to be signed was already paid under its reference (a restored database?); not signed again");
            return self
                .note_error(
                    &row.id,
                    &format!(
                        "already paid by {} under its reference; not signed again",
                        paid.signature
                    ),
                )
                .await;
        }
        let signed = rail
            .sign_payout(
                token,
                &owner,
                units,
                &reference,
                &format!("payout:{}", row.id),
            )
            .await?;
        let signature = signed.signature.to_string();
        let height = i64::try_from(signed.last_valid_height).unwrap_or(i64::MAX);
        let now = now_micros();
        let mut tx = self.db.begin().await?;
        // Only from the state it was read in: a payout canceled meanwhile is not sent.
        let kept = tx_run!(&mut tx, |c| sqlx::query(
            "UPDATE payouts SET status = 'sent', signature = $1, signed_tx = $2, last_valid_height = $3, \
             attempts = attempts + 1, reason = NULL, last_error = NULL, sent_at = $4, updated_at = $4 \
             WHERE id = $5 AND status = $6 AND attempts = $7"
        )
        .bind(&signature)
        .bind(BASE64.encode(&signed.wire))
        .bind(height)
        .bind(now)
        .bind(&row.id)
        .bind(&row.status)
        .bind(row.attempts)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        if kept == 0 {
            return Ok(());
        }
        // Owed from here on, whether this send lands now or on a later pass.
        treasury.of(self, rail, token, mint.decimals).await?.1 = owed.saturating_add(units);
        tx_run!(&mut tx, |c| sqlx::query(
            "INSERT INTO payout_attempts (payout_id, attempt, signature, last_valid_height, created_at) \
             VALUES ($1, $2, $3, $4, $5)"
        )
        .bind(&row.id)
        .bind(row.attempts + 1)
        .bind(&signature)
        .bind(height)
        .bind(now)
        .execute(c)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
        tx.commit().await?;
        self.step(PayoutStep::Signed, &row.id, &signature);
        pass.signed += 1;
        // A refusal here (the preflight, a node away) changes nothing: the kept bytes are sent
        // again, or found, or expire, on the next passes.
        if let Err(e) = rail.send_signed(&signed.wire, true).await {
            self.note_error(&row.id, &e.to_string()).await?;
        }
        self.step(PayoutStep::Sent, &row.id, &signature);
        Ok(())
    }

    /// Follows a sent payout: paid once finalized; failed for good when the transfer failed
    /// (queued again when the treasury was short); sent again while it may still land; signed
    /// anew only once it cannot and nothing landed.
    async fn follow_up(
        &self,
        rail: &SolanaRail,
        row: &PayoutRow,
        pass: &mut SendPass,
        treasury: &mut Treasury,
    ) -> Result<()> {
        let kept = row
            .signature
            .as_deref()
            .ok_or_else(|| Error::corrupt("payouts.signature", ""))?;
        let signature: Signature = kept
            .parse()
            .map_err(|_| Error::corrupt("payouts.signature", kept))?;
        match rail.landing(&signature).await? {
            Landing::Succeeded { slot } => {
                self.step(PayoutStep::Finalized, &row.id, kept);
                if self.settle_paid(row, kept, slot).await? {
                    pass.paid += 1;
                }
            }
            Landing::Failed {
                insufficient_funds: true,
                ..
            } => {
                // It landed failed, so these bytes are spent: the payout is signed anew once
                // the treasury holds enough.
                self.queue(row, "the treasury held too little when the transfer ran")
                    .await?;
                pass.queued += 1;
            }
            Landing::Failed { error, .. } => {
                if self.fail(row, kept, &error).await? {
                    pass.failed += 1;
                }
            }
            Landing::Pending => self.resend(rail, row, pass).await?,
            Landing::Unknown => {
                let last_valid = row
                    .last_valid_height
                    .and_then(|h| u64::try_from(h).ok())
                    .unwrap_or(0);
                if rail.block_height().await? <= last_valid {
                    return self.resend(rail, row, pass).await;
                }
                let reference: Pubkey = row
                    .reference
                    .parse()
                    .map_err(|_| Error::corrupt("payouts.reference", &row.reference))?;
                let found = rail.signatures(&reference, None, None, 10).await?;
                if let Some(other) = found.first() {
                    // Nothing of ours lands but what is kept; anything else under the reference
                    // is for a person to look at before anything is signed again.
                    tracing::error!(payout = %row.id, signature = %other.signature, "a transfer under a payout's reference that is not its own");
                    return self
                        .note_error(
                            &row.id,
                            &format!("{} found under the reference", other.signature),
                        )
                        .await;
                }
                // Expired unseen: it can never land. Sign anew.
                self.sign_and_send(rail, row, pass, treasury).await?;
            }
        }
        Ok(())
    }

    async fn resend(&self, rail: &SolanaRail, row: &PayoutRow, pass: &mut SendPass) -> Result<()> {
        let text = row.signed_tx.as_deref().unwrap_or_default();
        let wire = BASE64
            .decode(text)
            .map_err(|_| Error::corrupt("payouts.signed_tx", &row.id))?;
        match rail.send_signed(&wire, false).await {
            Ok(_) => pass.resent += 1,
            Err(e) => self.note_error(&row.id, &e.to_string()).await?,
        }
        Ok(())
    }

    /// Marks a payout paid and moves its earnings out of the ledger, once: the first to claim
    /// the row for this signature does both in one transaction.
    async fn settle_paid(&self, row: &PayoutRow, signature: &str, slot: u64) -> Result<bool> {
        let now = now_micros();
        let mut tx = self.db.begin().await?;
        let claimed = tx_run!(&mut tx, |c| sqlx::query(
            "UPDATE payouts SET status = 'paid', slot = $1, paid_at = $2, updated_at = $2, last_error = NULL \
             WHERE id = $3 AND status = 'sent' AND signature = $4"
        )
        .bind(i64::try_from(slot).unwrap_or(i64::MAX))
        .bind(now)
        .bind(&row.id)
        .bind(signature)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        if claimed == 0 {
            return Ok(false);
        }
        let posted = post_in(
            &mut tx,
            &NewTransaction {
                external_ref: format!("payout:{}:paid", row.id),
                kind: TransactionKind::Payout,
                org_id: Some(row.org_id.clone()),
                memo: format!("payout {} paid, {signature}", row.id),
                postings: Posting::transfer(
                    AccountRef::org(&row.org_id, AccountKind::PayoutPending, row.currency),
                    AccountRef::platform(AccountKind::ExternalPayouts, row.currency),
                    Money::from_micros(row.amount, row.currency),
                )?
                .to_vec(),
            },
        )
        .await?;
        tx_run!(&mut tx, |c| sqlx::query(
            "UPDATE payouts SET transaction_id = $1 WHERE id = $2"
        )
        .bind(&posted.transaction_id)
        .bind(&row.id)
        .execute(c)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
        tx.commit().await?;
        self.record(row, "payout paid", 200).await;
        Ok(true)
    }

    /// The transfer failed for good: the earnings come back.
    async fn fail(&self, row: &PayoutRow, signature: &str, error: &str) -> Result<bool> {
        let mut tx = self.db.begin().await?;
        let claimed = tx_run!(&mut tx, |c| sqlx::query(
            "UPDATE payouts SET status = 'failed', reason = $1, updated_at = $2 \
             WHERE id = $3 AND status = 'sent' AND signature = $4"
        )
        .bind(format!("the transfer failed on chain: {error}"))
        .bind(now_micros())
        .bind(&row.id)
        .bind(signature)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        if claimed == 0 {
            return Ok(false);
        }
        give_back_in(&mut tx, row, PayoutStatus::Failed).await?;
        tx.commit().await?;
        tracing::warn!(payout = %row.id, error, "a payout's transfer failed on chain; its earnings are back");
        self.record(row, "payout failed", 502).await;
        Ok(true)
    }

    /// Queues a payout until the treasury holds enough, and alerts operators.
    async fn queue(&self, row: &PayoutRow, reason: &str) -> Result<()> {
        let moved = db_run!(&self.db, |p| sqlx::query(
            "UPDATE payouts SET status = 'queued', reason = $1, updated_at = $2 WHERE id = $3 AND status = $4"
        )
        .bind(reason)
        .bind(now_micros())
        .bind(&row.id)
        .bind(&row.status)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        if moved > 0 {
            tracing::error!(payout = %row.id, token = %row.token, reason, "a payout waits for the treasury: refill it");
            self.record(row, "payout queued: treasury short", 503).await;
        }
        Ok(())
    }

    async fn note_error(&self, id: &str, error: &str) -> Result<()> {
        tracing::warn!(payout = %id, error, "a payout's transfer could not be sent");
        db_run!(&self.db, |p| sqlx::query(
            "UPDATE payouts SET last_error = $1, updated_at = $2 WHERE id = $3"
        )
        .bind(error)
        .bind(now_micros())
        .bind(id)
        .execute(p)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
        Ok(())
    }

    async fn record(&self, row: &PayoutRow, action: &str, status: u16) {
        self.audit
            .record_background("solana", &row.org_id, action, Some(row.id.clone()), status)
            .await;
    }
}
