//! The detectors: breaches the control plane sees for itself, each opening a case with the
//! records it saw as evidence. A record already cited by a later case of the same rule is not
//! counted again, and a detector's case for a device and rule stays the only one until it
//! closes, so running a detector again opens nothing new.
//!
//! Over the last 24 hours: hourly proofs or node tests answered wrongly or late three times
//! (`failed_proofs`); VRAM short of the model, or a node's link far under the bandwidth
//! claimed, twice (`hardware_mismatch`); the idle rule
//! broken in three blocks (`idle_rule`); a device serving a rental gone silent
//! (`abandoned_rental`). The case takes a share of the device's required stake
//! ([`Rule::detector_share_pct`]), or what the provider holds if less.

use std::collections::BTreeMap;

use iocloud_db::time::to_rfc3339;
use iocloud_db::{DbError, db_run};

use super::{Evidence, NewCase, Rule, Slashing};
use crate::Result;

const WINDOW_MICROS: i64 = 24 * 3_600_000_000;
const MICROS_PER_HOUR: i64 = 3_600_000_000;

/// What a detector found against one device.
struct Finding {
    org_id: String,
    gpu_model: Option<String>,
    gpu_count: i64,
    evidence: Vec<Evidence>,
}

fn add(
    found: &mut BTreeMap<(String, Rule), Finding>,
    (device, rule): (String, Rule),
    (org_id, gpu_model, gpu_count): (String, Option<String>, i64),
    evidence: Evidence,
) {
    found
        .entry((device, rule))
        .or_insert_with(|| Finding {
            org_id,
            gpu_model,
            gpu_count,
            evidence: Vec::new(),
        })
        .evidence
        .push(evidence);
}

type ProofRow = (
    String,
    String,
    Option<String>,
    i64,
    i64,
    String,
    Option<String>,
);
/// A failed check (an hourly proof, a node test) as evidence, under the rule its outcome
/// breaks: `hardware` (VRAM or a link short of the claim) is `hardware_mismatch`, any other
/// failure `failed_proofs`.
fn failed_check(
    kind: &str,
    reference: String,
    outcome: &str,
    detail: Option<String>,
    hardware: &str,
) -> (Rule, Evidence) {
    let rule = if outcome == hardware {
        Rule::HardwareMismatch
    } else {
        Rule::FailedProofs
    };
    let what = if kind == "node_test" {
        "node test "
    } else {
        ""
    };
    let evidence = Evidence {
        kind: kind.into(),
        reference,
        summary: format!(
            "{what}{}{}",
            outcome.replace('_', " "),
            detail.map(|d| format!(": {d}")).unwrap_or_default()
        ),
    };
    (rule, evidence)
}

type TestRow = (
    String,
    String,
    Option<String>,
    i64,
    String,
    String,
    Option<String>,
);
type BlockRow = (String, String, Option<String>, i64, i64, Option<String>);
type EventRow = (String, String, Option<String>, i64, String, String, i64);

impl Slashing {
    /// Runs every detector over the 24 hours before `now`; answers the cases opened.
    pub async fn detect(&self, now: i64) -> Result<usize> {
        let since = now - WINDOW_MICROS;
        let mut found: BTreeMap<(String, Rule), Finding> = BTreeMap::new();

        let proofs: Vec<ProofRow> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT p.device_id, d.org_id, d.gpu_model, d.gpu_count, p.hour, p.outcome, p.detail \
             FROM device_proofs p JOIN devices d ON d.id = p.device_id \
             WHERE p.hour >= $1 AND p.outcome IN ('wrong_answer', 'late', 'vram_short') \
             AND NOT EXISTS (SELECT 1 FROM slashing_cases c WHERE c.device_id = p.device_id \
                 AND c.rule = CASE WHEN p.outcome = 'vram_short' THEN 'hardware_mismatch' ELSE 'failed_proofs' END \
                 AND c.created_at >= p.issued_at) \
             ORDER BY p.device_id, p.hour"
        )
        .bind(since.div_euclid(MICROS_PER_HOUR))
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        for (device, org, model, gpus, hour, outcome, detail) in proofs {
            let reference = to_rfc3339(hour * MICROS_PER_HOUR);
            let (rule, evidence) = failed_check("proof", reference, &outcome, detail, "vram_short");
            add(&mut found, (device, rule), (org, model, gpus), evidence);
        }

        let tests: Vec<TestRow> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT t.device_id, d.org_id, d.gpu_model, d.gpu_count, t.node_id, t.outcome, t.reason \
             FROM node_tests t JOIN devices d ON d.id = t.device_id \
             WHERE t.answered_at >= $1 AND t.outcome IN ('wrong_answer', 'too_slow', 'bandwidth_short') \
             AND NOT EXISTS (SELECT 1 FROM slashing_cases c WHERE c.device_id = t.device_id \
                 AND c.rule = CASE WHEN t.outcome = 'bandwidth_short' THEN 'hardware_mismatch' ELSE 'failed_proofs' END \
                 AND c.created_at >= t.answered_at) \
             ORDER BY t.device_id, t.answered_at"
        )
        .bind(since)
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        for (device, org, model, gpus, node, outcome, reason) in tests {
            let (rule, evidence) =
                failed_check("node_test", node, &outcome, reason, "bandwidth_short");
            add(&mut found, (device, rule), (org, model, gpus), evidence);
        }

        let idle: Vec<BlockRow> = db_run!(&self.db, |p| sqlx::query_as(
            "SELECT r.device_id, d.org_id, d.gpu_model, d.gpu_count, r.hour, r.evidence \
             FROM block_rewards r JOIN devices d ON d.id = r.device_id \
             WHERE r.hour >= $1 AND r.reason = 'idle_rule' \
             AND NOT EXISTS (SELECT 1 FROM slashing_cases c WHERE c.device_id = r.device_id \
                 AND c.rule = 'idle_rule' AND c.created_at >= r.hour * 3600000000) \
             ORDER BY r.device_id, r.hour"
        )
        .bind(since.div_euclid(MICROS_PER_HOUR))
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        for (device, org, model, gpus, hour, evidence) in idle {
            add(
                &mut found,
                (device, Rule::IdleRule),
                (org, model, gpus),
                Evidence {
                    kind: "block".into(),
                    reference: to_rfc3339(hour * MICROS_PER_HOUR),
                    summary: evidence.unwrap_or_else(|| "the idle rule was broken".into()),
                },
            );
        }

        let gone: Vec<EventRow> = db_run!(&self.db, |p| {
            sqlx::query_as(
            "SELECT e.device_id, d.org_id, d.gpu_model, d.gpu_count, e.id, e.reason, e.created_at \
             FROM device_events e JOIN devices d ON d.id = e.device_id \
             WHERE e.created_at >= $1 AND e.from_status = 'busy' AND e.to_status = 'offline' \
             AND NOT EXISTS (SELECT 1 FROM slashing_cases c WHERE c.device_id = e.device_id \
                 AND c.rule = 'abandoned_rental' AND c.created_at >= e.created_at) \
             ORDER BY e.device_id, e.created_at"
        )
        .bind(since)
        .fetch_all(p)
        .await
        })
        .map_err(DbError::from)?;
        for (device, org, model, gpus, event_id, reason, at) in gone {
            add(
                &mut found,
                (device, Rule::AbandonedRental),
                (org, model, gpus),
                Evidence {
                    kind: "device_event".into(),
                    reference: event_id,
                    summary: format!(
                        "went offline at {} while serving a rental ({reason})",
                        to_rfc3339(at)
                    ),
                },
            );
        }

        let params = self.governance.in_force().params;
        let mut opened = 0;
        for ((device, rule), f) in found {
            let needed = match rule {
                Rule::FailedProofs | Rule::IdleRule => 3,
                Rule::HardwareMismatch => 2,
                Rule::AbandonedRental | Rule::Operator => 1,
            };
            if f.evidence.len() < needed {
                continue;
            }
            let stake = params.required_stake(self.catalog(), f.gpu_model.as_deref(), f.gpu_count);
            let statement = format!(
                "{} in the last 24 hours: {} record(s) show it",
                match rule {
                    Rule::FailedProofs => "hourly proofs or node tests answered wrongly or late",
                    Rule::HardwareMismatch => {
                        "GPUs measured with less VRAM than their model has, or links far under the bandwidth claimed"
                    }
                    Rule::IdleRule => "the idle rule broken while listed and not rented",
                    Rule::AbandonedRental => "the device went silent while serving a rental",
                    Rule::Operator => "a breach",
                },
                f.evidence.len()
            );
            let case = self
                .open_in(
                    NewCase {
                        device_id: &device,
                        org_id: &f.org_id,
                        rule,
                        opened_by: "detector",
                        statement,
                        evidence: f.evidence,
                        amount: stake * rule.detector_share_pct() / 100,
                        cap_to_holdings: true,
                    },
                    now,
                )
                .await?;
            opened += usize::from(case.is_some());
        }
        Ok(opened)
    }
}
