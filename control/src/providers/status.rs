//! Device states, which changes are allowed, and the event each change leaves.
//!
//! ```text
//! pending_verification ─► pending_stake ─► available ⇄ busy
//!        │                                   │  ▲      │
//!        ▼                                   ▼  │      ▼
//! verification_failed                  maintenance   offline ─► (back when heard from)
//! any state ─► suspended (operator) ; any state ─► retired (provider; final)
//! ```

use iocloud_db::ids::OrgId;
use iocloud_db::ids::new_id;
use iocloud_db::{DbError, Timestamp, Tx, tx_run};
use serde::Serialize;

use crate::{Error, ErrorCode, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Registered; its agent has not yet answered a verification challenge.
    PendingVerification,
    /// The agent answered wrongly or too late (the reason says which). It may try again.
    VerificationFailed,
    /// Verified, waiting for the provider's stake to cover it.
    PendingStake,
    /// Listed, with every GPU free.
    Available,
    /// Listed, with some GPUs taken by nodes.
    Busy,
    /// Taken out of placement by its provider; running nodes keep running.
    Maintenance,
    /// Not heard from for longer than the heartbeat timeout.
    Offline,
    /// Taken out by an operator.
    Suspended,
    /// Gone for good; its token no longer works.
    Retired,
}

// GraphQL shows the status as REST writes it, a string (`pending_verification`, `available`,
// `busy`, ...).
#[cfg(feature = "graphql")]
iocloud_db::graphql_string!(DeviceStatus, |s| s.as_str());

impl DeviceStatus {
    pub const ALL: [DeviceStatus; 9] = [
        DeviceStatus::PendingVerification,
        DeviceStatus::VerificationFailed,
        DeviceStatus::PendingStake,
        DeviceStatus::Available,
        DeviceStatus::Busy,
        DeviceStatus::Maintenance,
        DeviceStatus::Offline,
        DeviceStatus::Suspended,
        DeviceStatus::Retired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::PendingVerification => "pending_verification",
            DeviceStatus::VerificationFailed => "verification_failed",
            DeviceStatus::PendingStake => "pending_stake",
            DeviceStatus::Available => "available",
            DeviceStatus::Busy => "busy",
            DeviceStatus::Maintenance => "maintenance",
            DeviceStatus::Offline => "offline",
            DeviceStatus::Suspended => "suspended",
            DeviceStatus::Retired => "retired",
        }
    }

    pub fn parse(s: &str) -> Option<DeviceStatus> {
        DeviceStatus::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// Listed devices count against their provider's stake.
    pub fn is_listed(self) -> bool {
        matches!(
            self,
            DeviceStatus::Available
                | DeviceStatus::Busy
                | DeviceStatus::Maintenance
                | DeviceStatus::Offline
                | DeviceStatus::Suspended
        )
    }

    /// Whether a device in this state may move to `to`.
    pub fn can_become(self, to: DeviceStatus) -> bool {
        use DeviceStatus::*;
        if self == Retired {
            return false;
        }
        match to {
            Retired | Suspended => self != to,
            PendingVerification => matches!(self, VerificationFailed | Suspended),
            VerificationFailed => self == PendingVerification,
            PendingStake => matches!(self, PendingVerification | Suspended),
            Available | Busy => {
                matches!(
                    self,
                    PendingStake | Available | Busy | Maintenance | Offline
                ) && self != to
            }
            Maintenance => matches!(self, Available | Busy | Offline),
            Offline => matches!(self, Available | Busy | Maintenance),
        }
    }
}

/// `available` or `busy`, by how many GPUs are free.
pub fn listed_status(gpus_free: i64, gpu_count: i64) -> DeviceStatus {
    if gpus_free < gpu_count {
        DeviceStatus::Busy
    } else {
        DeviceStatus::Available
    }
}

/// Refuses a move the table does not allow.
fn check_move(from: DeviceStatus, to: DeviceStatus) -> Result<()> {
    if from.can_become(to) {
        return Ok(());
    }
    Err(Error::Conflict {
        code: ErrorCode::InvalidState,
        message: format!(
            "a device that is {} cannot become {}",
            from.as_str(),
            to.as_str()
        ),
    })
}

/// The condition on a device row's `status` under which a statement may set it to `to`: the
/// row is in one of `from` (the statuses the statement means to move) that the table lets
/// become `to`, or is `to` already (staying is no move). Statements that move many devices at
/// once, or whose move depends on the row, select their rows with it, so the table decides in
/// SQL as it does in Rust. The statuses are this code's own words, written into the statement.
pub(crate) fn may_become_sql(from: &[DeviceStatus], to: DeviceStatus) -> String {
    let allowed: Vec<String> = from
        .iter()
        .filter(|from| **from == to || from.can_become(to))
        .map(|from| format!("'{}'", from.as_str()))
        .collect();
    if allowed.is_empty() {
        return "1 = 0".to_string();
    }
    format!("status IN ({})", allowed.join(", "))
}

/// [`listed_status`] in SQL, for a statement's SET.
pub(crate) fn listed_status_sql() -> String {
    format!(
        "CASE WHEN gpus_free < gpu_count THEN '{}' ELSE '{}' END",
        DeviceStatus::Busy.as_str(),
        DeviceStatus::Available.as_str()
    )
}

/// [`may_become_sql`] for a move to [`listed_status_sql`], which is `busy` or `available` by
/// the row's free GPUs.
pub(crate) fn may_list_sql(from: &[DeviceStatus]) -> String {
    format!(
        "((gpus_free < gpu_count AND {}) OR (gpus_free >= gpu_count AND {}))",
        may_become_sql(from, DeviceStatus::Busy),
        may_become_sql(from, DeviceStatus::Available)
    )
}

#[derive(Clone, Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "DeviceEvent")
)]
pub struct DeviceEvent {
    pub id: String,
    pub device_id: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub reason: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// Moves a device from `from` to `to` if it is still in `from`, and records the event.
/// Returns false (changing nothing) when another writer moved it first.
pub async fn transition_in(
    tx: &mut Tx,
    device_id: &str,
    org_id: &OrgId,
    from: DeviceStatus,
    to: DeviceStatus,
    reason: &str,
    now: i64,
) -> Result<bool> {
    check_move(from, to)?;
    let moved = tx_run!(tx, |c| {
        sqlx::query(
            "UPDATE devices SET status = $1, status_reason = $2, updated_at = $3 WHERE id = $4 AND status = $5",
        )
        .bind(to.as_str())
        .bind(reason)
        .bind(now)
        .bind(device_id)
        .bind(from.as_str())
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })
    .map_err(DbError::from)?;
    if moved == 0 {
        return Ok(false);
    }
    record_event_in(tx, device_id, org_id, Some(from), to, reason, now).await?;
    Ok(true)
}

/// Records a device's move from `from` (`None`: it was just registered) to `to`, which must be
/// one the table allows: the history holds only legal moves.
pub async fn record_event_in(
    tx: &mut Tx,
    device_id: &str,
    org_id: &OrgId,
    from: Option<DeviceStatus>,
    to: DeviceStatus,
    reason: &str,
    now: i64,
) -> Result<()> {
    if let Some(from) = from {
        check_move(from, to)?;
    }
    tx_run!(tx, |c| {
        sqlx::query(
            "INSERT INTO device_events (id, device_id, org_id, from_status, to_status, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(new_id("dve"))
        .bind(device_id)
        .bind(org_id)
        .bind(from.map(DeviceStatus::as_str))
        .bind(to.as_str())
        .bind(reason)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })
    .map_err(DbError::from)?;
    Ok(())
}

/// Records one event per device of `moved` (id, organisation), all from `from` to `to` (a
/// move the table allows).
pub async fn record_events_many_in(
    tx: &mut Tx,
    moved: &[(String, String)],
    from: DeviceStatus,
    to: DeviceStatus,
    reason: &str,
    now: i64,
) -> Result<()> {
    check_move(from, to)?;
    if moved.is_empty() {
        return Ok(());
    }
    let rows: Vec<(String, &str, &str)> = moved
        .iter()
        .map(|(id, org)| (new_id("dve"), id.as_str(), org.as_str()))
        .collect();
    let json = serde_json::to_string(&rows).map_err(|e| Error::Internal(e.to_string()))?;
    let sql = format!(
        "INSERT INTO device_events (id, device_id, org_id, from_status, to_status, reason, created_at) \
         SELECT value ->> 0, value ->> 1, value ->> 2, $2, $3, $4, $5 FROM {}",
        tx.engine().json_rows("$1")
    );
    tx_run!(tx, |c| sqlx::query(&sql)
        .bind(&json)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(reason)
        .bind(now)
        .execute(c)
        .await
        .map(|r| r.rows_affected()))
    .map_err(DbError::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::DeviceStatus::*;
    use super::*;

    #[test]
    fn every_move_of_the_status_table() {
        // Rows: from; columns: to, in `DeviceStatus::ALL`'s order. 1: allowed.
        #[rustfmt::skip]
        let expected: [(DeviceStatus, [u8; 9]); 9] = [
            //                    PVe VFa PSt Ava Bus Mai Off Sus Ret
            (PendingVerification, [0,  1,  1,  0,  0,  0,  0,  1,  1]),
            (VerificationFailed,  [1,  0,  0,  0,  0,  0,  0,  1,  1]),
            (PendingStake,        [0,  0,  0,  1,  1,  0,  0,  1,  1]),
            (Available,           [0,  0,  0,  0,  1,  1,  1,  1,  1]),
            (Busy,                [0,  0,  0,  1,  0,  1,  1,  1,  1]),
            (Maintenance,         [0,  0,  0,  1,  1,  0,  1,  1,  1]),
            (Offline,             [0,  0,  0,  1,  1,  1,  0,  1,  1]),
            (Suspended,           [1,  0,  1,  0,  0,  0,  0,  0,  1]),
            (Retired,             [0,  0,  0,  0,  0,  0,  0,  0,  0]),
        ];
        assert_eq!(expected.map(|(from, _)| from), DeviceStatus::ALL);
        for (from, row) in expected {
            for (to, allowed) in DeviceStatus::ALL.into_iter().zip(row) {
                assert_eq!(
                    from.can_become(to),
                    allowed == 1,
                    "{} -> {}",
                    from.as_str(),
                    to.as_str()
                );
                assert_eq!(check_move(from, to).is_ok(), allowed == 1);
            }
        }
    }

    #[test]
    fn the_life_cycle() {
        assert!(PendingVerification.can_become(PendingStake));
        assert!(PendingVerification.can_become(VerificationFailed));
        assert!(VerificationFailed.can_become(PendingVerification));
        assert!(PendingStake.can_become(Available));
        assert!(
            !PendingVerification.can_become(Available),
            "never past stake"
        );
        assert!(
            !Suspended.can_become(Available),
            "lifting goes through stake"
        );
        assert!(Suspended.can_become(PendingStake));
        assert!(Available.can_become(Busy) && Busy.can_become(Available));
        assert!(Busy.can_become(Maintenance) && Maintenance.can_become(Available));
        assert!(Available.can_become(Offline) && Offline.can_become(Busy));
        assert!(Offline.can_become(Maintenance));
        for s in DeviceStatus::ALL {
            assert!(!Retired.can_become(s), "retired is final");
            assert_eq!(s.can_become(Retired), s != Retired);
            assert_eq!(DeviceStatus::parse(s.as_str()), Some(s));
        }
        // Not without verification, and not back to unverified.
        assert!(!VerificationFailed.can_become(Available));
        assert!(!Available.can_become(PendingVerification));
        assert!(!PendingStake.can_become(Maintenance));
        assert_eq!(listed_status(8, 8), Available);
        assert_eq!(listed_status(0, 8), Busy);
    }

    #[test]
    fn bulk_moves_select_only_what_the_table_allows() {
        assert_eq!(
            may_become_sql(&[Available], Offline),
            "status IN ('available')"
        );
        // Staying is no move: a busy device takes another node and stays busy.
        assert_eq!(
            may_become_sql(&[Available, Busy], Busy),
            "status IN ('available', 'busy')"
        );
        // What the table refuses is left out, down to nothing at all.
        assert_eq!(
            may_become_sql(&[PendingVerification, Offline, Retired], Available),
            "status IN ('offline')"
        );
        assert_eq!(may_become_sql(&[Retired, Suspended], Busy), "1 = 0");
        assert_eq!(
            may_list_sql(&[Offline]),
            "((gpus_free < gpu_count AND status IN ('offline')) \
             OR (gpus_free >= gpu_count AND status IN ('offline')))"
        );
        assert_eq!(
            listed_status_sql(),
            "CASE WHEN gpus_free < gpu_count THEN 'busy' ELSE 'available' END"
        );
    }
}
