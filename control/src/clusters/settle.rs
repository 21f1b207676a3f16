//! Settling ended clusters: every node charged to when it stopped, the rest of the hold
//! released, and a terminating cluster terminated, all in one transaction whose
//! compare-and-set on the row makes it safe to repeat and to race.
//!
//! Settlements that arrive together are done together ([`Batcher`], a group commit). Every
//! settlement credits the same few accounts (platform revenue, a provider's earnings); in a
//! batch those rows are updated once, so they are locked once per batch instead of once per
//! cluster. One that raced (an accrual pass charged it meanwhile, or its row moved) rolls the
//! batch back; the others go again without it, and it is settled again by itself.

use iocloud_billing::Money;
use iocloud_billing::metering::{HoldUsage, Settled, settle_hold_in};
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, Tx, tx_run};

use super::lifecycle::stale;
use super::{ClusterEvent, ClusterRow, ClusterStatus};
use crate::batcher::Batcher;
use crate::{Control, Error, Result};

/// Tries at settling one cluster alone before giving up (each failed try is someone else's
/// progress: an accrual charged it, or its row moved).
const TRIES: usize = 16;

/// Settlements waiting for their turn ([`Batcher`]).
pub(crate) type SettleQueue = Batcher<ClusterRow, Result<ClusterRow>>;

/// What one cluster's settlement wrote, waiting for the batch's money and commit.
struct Done {
    event: Option<ClusterEvent>,
    settled: Option<Settled>,
}

/// Makes a terminating cluster terminated, or takes a failed one off the reconciler's list.
async fn finish_in(
    tx: &mut Tx,
    row: &mut ClusterRow,
    message: &str,
) -> Result<Option<ClusterEvent>> {
    if row.status() != ClusterStatus::Terminating {
        let moved = tx_run!(tx, |c| sqlx::query(
            "UPDATE clusters SET reconcile_at = NULL WHERE id = $1 AND resource_version = $2"
        )
        .bind(&row.id)
        .bind(row.resource_version)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        return if moved == 1 {
            row.reconcile_at = None;
            Ok(None)
        } else {
            Err(stale(row))
        };
    }
    row.set_status(ClusterStatus::Terminated, None);
    row.terminated_at = Some(now_micros());
    row.reconcile_at = None;
    let event = row.save_in(tx, "terminated", message).await?;
    event.map(Some).ok_or_else(|| stale(row))
}

/// What the terminated event says the cluster cost.
fn summary(settled: Option<&Settled>) -> String {
    let Some(s) = settled else {
        return "settled".to_string();
    };
    let c = s.hold.currency();
    format!(
        "charged {} {}; released {} {}",
        Money::from_micros(s.hold.captured, c).to_decimal(),
        c.code(),
        Money::from_micros(s.hold.released, c).to_decimal(),
        c.code()
    )
}

impl Control {
    /// Settles an ended (terminating or failed) cluster, with whatever other settlements are
    /// waiting at the same moment. Answers the row as the settlement left it.
    pub(crate) async fn settle_cluster(&self, row: ClusterRow) -> Result<ClusterRow> {
        let this = self.clone();
        self.settling
            .submit(
                row,
                move |batch| async move { this.settle_batch(batch).await },
            )
            .await
            .unwrap_or_else(|| Err(Error::Internal("a settlement was dropped".into())))
    }

    async fn settle_batch(&self, batch: Vec<ClusterRow>) -> Vec<Result<ClusterRow>> {
        let (done, retry) = match self.try_batch(&batch).await {
            Ok(outcome) => outcome,
            // The whole batch rolled back: each settles alone.
            Err(e) => {
                tracing::debug!(error = %e, "a batch of settlements failed; settling them one by one");
                (Vec::new(), (0..batch.len()).collect())
            }
        };
        let mut answers: Vec<Option<Result<ClusterRow>>> = (0..batch.len()).map(|_| None).collect();
        for (i, row, event) in done {
            if let Some(event) = event {
                self.publish_events(&[event]).await;
            }
            answers[i] = Some(Ok(row));
        }
        for i in retry {
            answers[i] = Some(self.settle_alone(batch[i].clone()).await);
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(Error::Internal("a settlement was skipped".into()))))
            .collect()
    }

    /// One transaction for the whole batch. Returns the settled (by index, as written, with
    /// their events) and the indexes to settle alone. A cluster that raced (an accrual pass
    /// charged it meanwhile, or its row moved) rolls the transaction back and is settled
    /// alone; the rest go again without it, once. Races are rare, so this costs less than a
    /// savepoint around every cluster; after a second one the rest are settled alone too, so
    /// an accrual pass charging many of them at once costs no more than that.
    async fn try_batch(
        &self,
        batch: &[ClusterRow],
    ) -> Result<(Vec<(usize, ClusterRow, Option<ClusterEvent>)>, Vec<usize>)> {
        // Read before the transaction opens: it holds a connection, and waiting for a second
        // one while holding the first starves the pool under load.
        let holds: Vec<&str> = batch.iter().filter_map(|r| r.hold_id.as_deref()).collect();
        let usage = self.ledger.usage_of_holds(&holds).await?;
        let mut left: Vec<usize> = (0..batch.len()).collect();
        let mut alone = Vec::new();
        for _ in 0..2 {
            let mut tx = self.db.begin().await?;
            let (mut done, mut money, mut raced) = (Vec::new(), Vec::new(), None);
            for &i in &left {
                let mut row = batch[i].clone();
                let hold_usage = row.hold_id.as_ref().and_then(|h| usage.get(h));
                match self.settle_in(&mut tx, &mut row, hold_usage).await {
                    Ok(Some(Done { event, settled })) => {
                        money.extend(settled);
                        done.push((i, row, event));
                    }
                    Ok(None)
                    | Err(Error::Conflict {
                        code: "stale_resource_version",
                        ..
                    }) => {
                        raced = Some(i);
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            let Some(i) = raced else {
                if !money.is_empty() {
                    Settled::post_all_in(&mut tx, money).await?;
                }
                tx.commit().await?;
                return Ok((done, alone));
            };
            tx.rollback().await?;
            left.retain(|&j| j != i);
            alone.push(i);
            if left.is_empty() {
                break;
            }
        }
        alone.extend(left);
        Ok((Vec::new(), alone))
    }

    /// One cluster in its own transaction, read again until it goes through.
    async fn settle_alone(&self, mut row: ClusterRow) -> Result<ClusterRow> {
        for _ in 0..TRIES {
            let holds: Vec<&str> = row.hold_id.as_deref().into_iter().collect();
            let usage = self.ledger.usage_of_holds(&holds).await?;
            let mut tx = self.db.begin().await?;
            let hold_usage = row.hold_id.as_ref().and_then(|h| usage.get(h));
            let Some(Done { event, settled }) =
                self.settle_in(&mut tx, &mut row, hold_usage).await?
            else {
                continue;
            };
            if let Some(settled) = settled {
                settled.post_in(&mut tx).await?;
            }
            tx.commit().await?;
            if let Some(event) = event {
                self.publish_events(&[event]).await;
            }
            return Ok(row);
        }
        Err(Error::Conflict {
            code: "settlement_contended",
            message: format!("cluster {} kept being charged while it was settled", row.id),
        })
    }

    /// A cluster's settlement inside `tx`, its money not yet posted. `Ok(None)` when a usage
    /// record moved since `usage` was read.
    async fn settle_in(
        &self,
        tx: &mut Tx,
        row: &mut ClusterRow,
        usage: Option<&HoldUsage>,
    ) -> Result<Option<Done>> {
        let at = row.ended_at.unwrap_or_else(now_micros);
        let settled = match (&row.hold_id, usage) {
            (Some(hold_id), Some(usage)) => {
                let fee = self.settings.platform_fee_bps;
                match settle_hold_in(tx, hold_id, usage, at, fee).await? {
                    Some(settled) => Some(settled),
                    None => return Ok(None),
                }
            }
            _ => None,
        };
        let event = finish_in(tx, row, &summary(settled.as_ref())).await?;
        Ok(Some(Done { event, settled }))
    }
}
