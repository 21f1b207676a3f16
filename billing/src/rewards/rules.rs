//! Which devices earn in a block, and why the others do not. A device earns only if, for the
//! whole hour: it was listed and its provider's stake covered it; it was heard without a silence
//! longer than the heartbeat timeout, with enough unbroken hours behind it; it passed the hour's
//! proof (unless it served a rental, which proves itself by its nodes); it kept the idle rule
//! while listed and not rented; and no slashing case against it was open. The first rule
//! failed is the reason, with the evidence in words and figures, so a provider can see what
//! happened without asking anyone.

use iocloud_db::time::to_rfc3339;
use serde::{Deserialize, Serialize};

use super::RewardParams;

/// The rule a device failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Not listed (available or busy) for the whole hour.
    NotListed,
    /// The provider's active stake did not cover its listed devices.
    StakeShort,
    /// Not heard from, or silent longer than the heartbeat timeout, in the hour.
    NotHeard,
    /// Heard, but without the unbroken hours behind it the rule asks.
    ShortUptime,
    /// No answer to the hour's proof of work and VRAM check.
    NoProof,
    /// The hour's proof was answered wrongly, late, or with less VRAM than the model has.
    ProofFailed,
    /// Used more CPU or GPU than the idle rule allows while listed and not rented.
    IdleRule,
    /// A slashing case against the device was open.
    SlashingCase,
}

impl Reason {
    pub const ALL: [Reason; 8] = [
        Reason::NotListed,
        Reason::StakeShort,
        Reason::NotHeard,
        Reason::ShortUptime,
        Reason::NoProof,
        Reason::ProofFailed,
        Reason::IdleRule,
        Reason::SlashingCase,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::NotListed => "not_listed",
            Reason::StakeShort => "stake_short",
            Reason::NotHeard => "not_heard",
            Reason::ShortUptime => "short_uptime",
            Reason::NoProof => "no_proof",
            Reason::ProofFailed => "proof_failed",
            Reason::IdleRule => "idle_rule",
            Reason::SlashingCase => "slashing_case",
        }
    }

    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Why a device earned nothing: the rule and its evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ineligible {
    pub reason: Reason,
    pub evidence: String,
}

fn no(reason: Reason, evidence: String) -> Option<Ineligible> {
    Some(Ineligible { reason, evidence })
}

/// How the device stood in the listing through the hour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listing {
    /// Available or busy from the hour's start to its end.
    Whole,
    /// Not listed when the hour began: the status it had.
    NotAtStart { status: String },
    /// Left the listing during the hour: where it went, when, and the recorded reason.
    Left {
        status: String,
        at: i64,
        why: String,
    },
}

/// What the heartbeats of the hour showed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeardHour {
    /// The last heartbeat of the hour, µs.
    pub last_at: i64,
    /// Since when the device had been heard without a break, as of `last_at`.
    pub heard_since: i64,
    /// The longest silence that ended in the hour (it may have begun in the hour before), µs.
    pub longest_gap: i64,
    /// The highest utilisations reported while idle (no node, every GPU free), percent.
    pub idle_gpu_pct: Option<i64>,
    pub idle_cpu_pct: Option<i64>,
}

/// Everything the rules weigh about one device in one hour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HourFacts<'a> {
    /// The hour, `[start, end)` in µs.
    pub start: i64,
    pub end: i64,
    pub listing: Listing,
    /// The provider's (active stake, stake its listed devices need), when short.
    pub stake_short: Option<(i64, i64)>,
    /// `None`: not heard at all in the hour.
    pub heard: Option<HeardHour>,
    /// The heartbeat timeout, µs.
    pub timeout: i64,
    /// Served a rental (a node that was up) in the hour.
    pub rented: bool,
    /// The hour's proof: its outcome (`passed`, `wrong_answer`, `late`, `vram_short`; `None`
    /// when asked for and never answered) and its detail. `None` outside: never asked for.
    pub proof: Option<(Option<&'a str>, Option<&'a str>)>,
    /// The GPU model's class (`None` for a CPU-only device), for the idle limit.
    pub gpu_class: Option<&'a str>,
    pub is_cpu: bool,
    /// An open slashing case against the device: its id.
    pub open_case: Option<&'a str>,
}

fn clock(micros: i64) -> String {
    // `2026-12-06T14:23:05Z` → `14:23:05 UTC`.
    let t = to_rfc3339(micros);
    t.get(11..19).map_or(t.clone(), |hms| format!("{hms} UTC"))
}

fn secs(micros: i64) -> String {
    format!("{:.0} s", micros as f64 / 1e6)
}

/// The first rule the device failed in the hour, or `None` when it earns.
pub fn judge(params: &RewardParams, f: &HourFacts<'_>) -> Option<Ineligible> {
    match &f.listing {
        Listing::Whole => {}
        Listing::NotAtStart { status } => {
            return no(
                Reason::NotListed,
                format!("was {status} when the hour began at {}", clock(f.start)),
            );
        }
        Listing::Left { status, at, why } => {
            return no(
                Reason::NotListed,
                format!("became {status} at {} ({why})", clock(*at)),
            );
        }
    }
    if let Some((active, needed)) = f.stake_short {
        return no(
            Reason::StakeShort,
            format!(
                "the provider's active stake of {} $IO was short of the {} $IO its listed devices need",
                io(active),
                io(needed)
            ),
        );
    }
    if let Some(case) = f.open_case {
        return no(
            Reason::SlashingCase,
            format!("slashing case {case} was open"),
        );
    }
    let Some(heard) = f.heard else {
        return no(Reason::NotHeard, "no heartbeat in the hour".into());
    };
    if heard.longest_gap > f.timeout {
        return no(
            Reason::NotHeard,
            format!(
                "silent for {} (the timeout is {})",
                secs(heard.longest_gap),
                secs(f.timeout)
            ),
        );
    }
    let trailing = f.end - heard.last_at;
    if trailing > f.timeout {
        return no(
            Reason::NotHeard,
            format!(
                "last heard at {}, {} before the hour ended (the timeout is {})",
                clock(heard.last_at),
                secs(trailing),
                secs(f.timeout)
            ),
        );
    }
    let streak_needed = params.min_streak_hours * 3_600_000_000;
    if heard.heard_since > f.start - streak_needed {
        return no(
            Reason::ShortUptime,
            format!(
                "heard without a break since {}, {:.1} h before the hour began; {} h are needed",
                to_rfc3339(heard.heard_since),
                ((f.start - heard.heard_since).max(0)) as f64 / 3.6e9,
                params.min_streak_hours
            ),
        );
    }
    if !f.rented {
        match f.proof {
            None => {
                return no(
                    Reason::NoProof,
                    "the agent did not ask for the hour's proof".into(),
                );
            }
            Some((None, _)) => {
                return no(
                    Reason::NoProof,
                    "the hour's proof was asked for and never answered".into(),
                );
            }
            Some((Some("passed"), _)) => {}
            Some((Some(outcome), detail)) => {
                return no(
                    Reason::ProofFailed,
                    match detail {
                        Some(d) => format!("{}: {d}", outcome.replace('_', " ")),
                        None => outcome.replace('_', " "),
                    },
                );
            }
        }
        if let Some(cpu) = heard.idle_cpu_pct.filter(|p| *p > params.idle_cpu_pct) {
            return no(
                Reason::IdleRule,
                format!(
                    "CPU at {cpu} % while listed and not rented (the limit is {} %)",
                    params.idle_cpu_pct
                ),
            );
        }
        if !f.is_cpu {
            let limit = params.idle_gpu_limit(f.gpu_class);
            if let Some(gpu) = heard.idle_gpu_pct.filter(|p| *p > limit) {
                return no(
                    Reason::IdleRule,
                    format!(
                        "GPU at {gpu} % while listed and not rented (the limit for {} GPUs is {limit} %)",
                        f.gpu_class.unwrap_or("these")
                    ),
                );
            }
        }
    }
    None
}

fn io(micros: i64) -> String {
    crate::Money::from_micros(micros, crate::Currency::Io).to_decimal()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000;
    const START: i64 = 1_000 * H;

    fn clean<'a>() -> HourFacts<'a> {
        HourFacts {
            start: START,
            end: START + H,
            listing: Listing::Whole,
            stake_short: None,
            heard: Some(HeardHour {
                last_at: START + H - 10_000_000,
                heard_since: START - 6 * H,
                longest_gap: 20_000_000,
                idle_gpu_pct: Some(1),
                idle_cpu_pct: Some(5),
            }),
            timeout: 90_000_000,
            rented: false,
            proof: Some((Some("passed"), None)),
            gpu_class: Some("datacenter"),
            is_cpu: false,
            open_case: None,
        }
    }

    fn reason(f: &HourFacts<'_>) -> Option<Reason> {
        judge(&RewardParams::default(), f).map(|i| i.reason)
    }

    #[test]
    fn a_clean_hour_earns() {
        assert_eq!(reason(&clean()), None);
    }

    #[test]
    fn each_rule_names_itself_with_its_evidence() {
        let p = RewardParams::default();
        let mut f = clean();
        f.listing = Listing::Left {
            status: "maintenance".into(),
            at: START + 23 * 60_000_000,
            why: "provider".into(),
        };
        let i = judge(&p, &f).unwrap();
        assert_eq!(i.reason, Reason::NotListed);
        assert!(i.evidence.contains("maintenance"), "{}", i.evidence);

        let mut f = clean();
        f.stake_short = Some((1_000_000, 1_600_000_000));
        assert_eq!(reason(&f), Some(Reason::StakeShort));

        let mut f = clean();
        f.heard = None;
        assert_eq!(reason(&f), Some(Reason::NotHeard));

        let mut f = clean();
        f.heard.as_mut().unwrap().longest_gap = 120_000_000;
        let i = judge(&p, &f).unwrap();
        assert_eq!(i.reason, Reason::NotHeard);
        assert!(i.evidence.contains("120 s"), "{}", i.evidence);

        let mut f = clean();
        f.heard.as_mut().unwrap().last_at = START + H - 100_000_000;
        assert_eq!(
            reason(&f),
            Some(Reason::NotHeard),
            "silent at the hour's end"
        );

        let mut f = clean();
        f.heard.as_mut().unwrap().heard_since = START - 4 * H;
        let i = judge(&p, &f).unwrap();
        assert_eq!(i.reason, Reason::ShortUptime);
        assert!(i.evidence.contains("4.0 h"), "{}", i.evidence);

        let mut f = clean();
        f.proof = None;
        assert_eq!(reason(&f), Some(Reason::NoProof));
        f.proof = Some((None, None));
        assert_eq!(reason(&f), Some(Reason::NoProof));
        f.proof = Some((Some("vram_short"), Some("GPU 3 measured 40960 MiB")));
        let i = judge(&p, &f).unwrap();
        assert_eq!(i.reason, Reason::ProofFailed);
        assert_eq!(i.evidence, "vram short: GPU 3 measured 40960 MiB");

        let mut f = clean();
        f.heard.as_mut().unwrap().idle_gpu_pct = Some(6);
        assert_eq!(reason(&f), Some(Reason::IdleRule));
        f.gpu_class = Some("consumer");
        assert_eq!(reason(&f), None, "6 % is within a consumer GPU's 20 %");
        f.heard.as_mut().unwrap().idle_cpu_pct = Some(31);
        assert_eq!(reason(&f), Some(Reason::IdleRule));

        let mut f = clean();
        f.open_case = Some("slc_1");
        assert_eq!(reason(&f), Some(Reason::SlashingCase));
    }

    #[test]
    fn a_rented_device_needs_no_proof_and_no_idle_rule() {
        let mut f = clean();
        f.rented = true;
        f.proof = None;
        f.heard.as_mut().unwrap().idle_gpu_pct = Some(100);
        assert_eq!(reason(&f), None);
        // A CPU-only device is judged by its CPU alone.
        let mut f = clean();
        f.is_cpu = true;
        f.gpu_class = None;
        f.heard.as_mut().unwrap().idle_gpu_pct = Some(25);
        assert_eq!(reason(&f), None);
        for r in Reason::ALL {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
        }
    }
}
