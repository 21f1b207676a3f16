//! The hourly proof of a listed device that serves no rental: once an hour its agent asks for a
//! proof of work sized to its GPU class and answers it before the deadline, with the VRAM of
//! each GPU as it measures it. An hour's block counts a device idle in that hour only with a
//! passed proof; a device serving a rental proves itself by its nodes' reports instead.
//!
//! One proof per device and hour (`device_proofs`): asking again in the hour answers the same
//! challenge, and the first answer stays, whatever it was.

use iocloud_billing::emission::MICROS_PER_HOUR;
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, db_run};

use super::messages::check_range;
use super::{Agents, DeviceAuth, ProofAnswer, ProofChallenge, ProofOutcome, ProofResult};
use crate::providers::status::DeviceStatus;
use crate::providers::verification;
use crate::{Error, ErrorCode, Result};

/// The statuses of a node that still holds its device for a cluster: placed and waiting for
/// its leader, given to the agent, coming up, up, or being torn down. A failed or released
/// node serves nobody.
const SERVING: &str = "'waiting', 'assigned', 'starting', 'ready', 'releasing'";

/// Most GPUs a proof's answer may list (more than any machine of the catalog holds).
const MAX_GPUS: usize = 64;

/// Most MiB one GPU may report: 1 TiB.
const MAX_VRAM_MIB: i64 = 1_048_576;

/// The share of its model's VRAM, in percent, a GPU must measure: drivers and firmware keep a
/// little of it for themselves.
const VRAM_MEASURED_PCT: i64 = 95;

fn answered() -> Error {
    Error::conflict(
        ErrorCode::ProofAnswered,
        "this hour's proof is answered; the next hour brings a new one",
    )
}

impl Agents {
    /// This hour's proof for a listed device that serves no rental: made on the first ask of
    /// the hour, the same one on every later ask until it is answered.
    pub async fn proof(&self, device: &DeviceAuth) -> Result<ProofChallenge> {
        let row = self.agent_device(device).await?;
        if !matches!(row.status()?, DeviceStatus::Available | DeviceStatus::Busy) {
            return Err(Error::conflict(
                ErrorCode::ProofNotNeeded,
                "only listed devices prove themselves each hour",
            ));
        }
        let sql = format!(
            "SELECT COUNT(*) FROM node_assignments WHERE device_id = $1 AND status IN ({SERVING})"
        );
        let serving: i64 = db_run!(&self.db, |p| sqlx::query_scalar(&sql)
            .bind(&device.id)
            .fetch_one(p)
            .await)
        .map_err(DbError::from)?;
        if serving > 0 {
            return Err(Error::conflict(
                ErrorCode::ProofNotNeeded,
                "a device serving a rental proves itself by its nodes' reports",
            ));
        }
        let now = now_micros();
        let hour = now.div_euclid(MICROS_PER_HOUR);
        let model = row
            .gpu_model
            .as_deref()
            .and_then(|m| self.catalog.gpu_model(m));
        let difficulty = i64::from(verification::difficulty_for(
            model.map(|m| m.class.as_str()),
        ));
        let vram_gib = model.map_or(0, |m| m.vram_gib);
        // Asked twice at once, or again later in the hour: the first ask's row stays.
        db_run!(&self.db, |p| sqlx::query(
            "INSERT INTO device_proofs (device_id, hour, org_id, nonce, difficulty, vram_gib, issued_at, deadline) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (device_id, hour) DO NOTHING"
        )
        .bind(&device.id)
        .bind(hour)
        .bind(&device.org_id)
        .bind(verification::new_nonce())
        .bind(difficulty)
        .bind(vram_gib)
        .bind(now)
        .bind(now + self.challenge_deadline.as_micros() as i64)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        let (nonce, difficulty, vram_gib, deadline, answered_at): (
            String,
            i64,
            i64,
            i64,
            Option<i64>,
        ) = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT nonce, difficulty, vram_gib, deadline, answered_at FROM device_proofs WHERE device_id = $1 AND hour = $2"
        )
        .bind(&device.id)
        .bind(hour)
        .fetch_one(p)
        .await)
        .map_err(DbError::from)?;
        if answered_at.is_some() {
            return Err(answered());
        }
        Ok(ProofChallenge {
            hour,
            nonce,
            difficulty: difficulty as u32,
            vram_gib,
            deadline,
        })
    }

    /// Judges the answer to an hour's proof, once: late, wrong, short of VRAM, or passed. The
    /// outcome is stored for the hour's block and answered.
    pub async fn answer_proof(
        &self,
        device: &DeviceAuth,
        answer: ProofAnswer,
    ) -> Result<ProofResult> {
        if answer.vram_mib.len() > MAX_GPUS {
            return Err(Error::validation(
                "vram_mib",
                format!("must list at most {MAX_GPUS} GPUs"),
            ));
        }
        for &mib in &answer.vram_mib {
            check_range("vram_mib", mib, 0, MAX_VRAM_MIB)?;
        }
        let now = now_micros();
        let open: Option<(String, i64, i64, i64, Option<i64>)> =
            db_run!(&self.db, |p| sqlx::query_as(
                "SELECT nonce, difficulty, vram_gib, deadline, answered_at FROM device_proofs WHERE device_id = $1 AND hour = $2"
            )
            .bind(&device.id)
            .bind(answer.hour)
            .fetch_optional(p)
            .await)
            .map_err(DbError::from)?;
        let Some((nonce, difficulty, vram_gib, deadline, answered_at)) = open else {
            return Err(Error::conflict(
                ErrorCode::NoChallenge,
                "this device was given no proof for that hour; ask for this hour's",
            ));
        };
        if nonce != answer.nonce {
            return Err(Error::conflict(
                ErrorCode::NoChallenge,
                "that is not the proof of that hour; ask for this hour's",
            ));
        }
        if answered_at.is_some() {
            return Err(answered());
        }
        let (outcome, detail) = if now > deadline {
            (
                ProofOutcome::Late,
                Some(format!(
                    "answered {:.1} s after its deadline",
                    (now - deadline) as f64 / 1_000_000.0
                )),
            )
        } else if !verification::check(&nonce, difficulty as u32, answer.answer) {
            (
                ProofOutcome::WrongAnswer,
                Some("the proof of work's answer was wrong".to_string()),
            )
        } else if let Some(short) = self.vram_short(device, vram_gib, &answer.vram_mib).await? {
            (ProofOutcome::VramShort, Some(short))
        } else {
            (ProofOutcome::Passed, None)
        };
        // Two answers at once: the first one written stands.
        let stored = db_run!(&self.db, |p| sqlx::query(
            "UPDATE device_proofs SET answered_at = $1, outcome = $2, detail = $3 \
             WHERE device_id = $4 AND hour = $5 AND answered_at IS NULL"
        )
        .bind(now)
        .bind(outcome.as_str())
        .bind(&detail)
        .bind(&device.id)
        .bind(answer.hour)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        if stored == 0 {
            return Err(answered());
        }
        Ok(ProofResult {
            hour: answer.hour,
            outcome,
            detail,
        })
    }

    /// What is short in the VRAM a GPU device measured, in words; `None` when every GPU has
    /// what its model has (less what drivers keep). A CPU-only device, or one whose model the
    /// catalog no longer knows (`vram_gib` 0), has nothing to measure.
    async fn vram_short(
        &self,
        device: &DeviceAuth,
        vram_gib: i64,
        measured: &[i64],
    ) -> Result<Option<String>> {
        if vram_gib <= 0 || device.gpu_count <= 0 {
            return Ok(None);
        }
        if measured.len() as i64 != device.gpu_count {
            return Ok(Some(format!(
                "{} GPUs measured; the device has {}",
                measured.len(),
                device.gpu_count
            )));
        }
        let model_mib = vram_gib * 1024;
        let least = model_mib * VRAM_MEASURED_PCT / 100;
        let Some((gpu, mib)) = measured.iter().enumerate().find(|(_, mib)| **mib < least) else {
            return Ok(None);
        };
        let row = self.agent_device(device).await?;
        let model = row
            .gpu_model
            .as_deref()
            .map(|m| self.catalog.gpu_model(m).map_or(m, |m| m.name.as_str()))
            .unwrap_or("its model");
        Ok(Some(format!(
            "GPU {gpu} measured {mib} MiB; the {model} has {model_mib} MiB"
        )))
    }
}
