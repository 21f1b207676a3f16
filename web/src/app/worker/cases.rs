//! Slashing cases: the cases against the organisation's devices (and the devices it co-stakes),
//! each with the rule in words, the $IO it holds in escrow and where that came from, where it
//! stands and until when its provider may appeal; a case's page with the statement, every piece
//! of evidence, every step, and the appeal form while the window is open. Only a device's
//! provider appeals; a co-staker reads the case.

use maud::{Markup, html};

use super::super::layout::{Shell, page};
use super::{csrf, said};

/// A case as the list shows it, and the head of its page.
pub struct SlashingCaseLine {
    pub id: String,
    pub device_id: String,
    /// The device's name when it is one of the organisation's own (its page is linked); `None`
    /// for a device it co-stakes, which is another provider's.
    pub device_name: Option<String>,
    /// The rule's code, as REST says it (`failed_proofs`), and the same in words.
    pub rule: String,
    pub rule_words: String,
    /// $IO in escrow, and how much came from the provider's stake, the co-stake and the
    /// provider's unwithdrawn rewards.
    pub amount: String,
    pub from_stake: String,
    pub from_costake: String,
    pub from_rewards: String,
    /// `open`, `appealed`, `upheld`, `overturned` or `burned`, and what that means.
    pub status: String,
    pub status_words: String,
    /// The provider may appeal until then (RFC 3339).
    pub appeal_deadline: String,
    pub opened_at: String,
}

pub struct SlashingCasesView {
    /// Newest first.
    pub cases: Vec<SlashingCaseLine>,
}

/// A piece of evidence a case cites.
pub struct CaseEvidence {
    /// `proof`, `block`, `node`, `device_event` or `note`, and the same in words.
    pub kind: String,
    pub kind_words: String,
    /// What it refers to (an hour, a node or event id); empty for a note.
    pub reference: String,
    pub summary: String,
}

/// A step a case took.
pub struct CaseStepLine {
    /// `opened`, `appealed`, `upheld`, `overturned`, `burned` or `returned`.
    pub kind: String,
    /// Who took it, in words: the detectors, the provider, an operator, the settlement.
    pub by: String,
    pub text: String,
    pub at: String,
}

pub struct SlashingCasePage {
    pub case: SlashingCaseLine,
    /// `detector` or `operator`.
    pub opened_by: String,
    pub statement: String,
    pub evidence: Vec<CaseEvidence>,
    /// Oldest first.
    pub steps: Vec<CaseStepLine>,
    /// The provider's appeal, once made.
    pub appeal: Option<String>,
    pub decision_reason: Option<String>,
    pub decided_at: Option<String>,
    pub closed_at: Option<String>,
    /// The device is the organisation's own: it is the provider (a co-staker only reads).
    pub own: bool,
    /// Open, and the window not over: the provider may appeal now.
    pub appealable: bool,
    /// Whether the visitor's role may appeal.
    pub can_manage: bool,
    /// The appeal form's statement as typed, when it was refused.
    pub statement_form: String,
    pub notice: Option<String>,
    pub error: Option<String>,
}

fn badge(status: &str, words: &str) -> Markup {
    html! { span class=(format!("badge badge-{status}")) data-status=(status) title=(words) { (status) } }
}

/// The device a case is against: a link to its page when it is the organisation's own.
fn device_cell(c: &SlashingCaseLine) -> Markup {
    html! {
        @match &c.device_name {
            Some(name) => {
                a href=(format!("/app/worker/devices/{}", c.device_id)) { (name) }
                br; span class="muted mono" { (c.device_id) }
            },
            None => {
                span class="mono" { (c.device_id) }
                br; span class="muted" { "a device you co-stake" }
            },
        }
    }
}

/// Where the escrowed $IO came from, leaving out what is nothing.
fn escrow_parts(c: &SlashingCaseLine) -> Markup {
    let zero = |amount: &str| amount.bytes().all(|d| matches!(d, b'0' | b'.'));
    html! {
        span class="muted" {
            "from stake " (c.from_stake)
            @if !zero(&c.from_costake) { " · co-stake " (c.from_costake) }
            " · rewards " (c.from_rewards)
        }
    }
}

pub fn slashing_cases_page(shell: &Shell<'_>, v: &SlashingCasesView) -> Markup {
    let body = html! {
        p class="muted" {
            "A case names a device, the rule it broke and the evidence, and takes $IO from its stake "
            "(and from a co-stake backing it in proportion) and then from unwithdrawn rewards into "
            "escrow at once. The device earns nothing while it is open. Its provider may appeal "
            "within 30 days; an operator decides. Upheld, or unanswered when the window ends, the "
            "escrow is burned; overturned, it all comes back."
        }
        @if v.cases.is_empty() {
            p class="muted" data-testid="no-cases" { "No slashing case against your devices, or the devices you co-stake." }
        } @else {
            table tabindex="0" data-testid="cases" {
                caption class="muted" { "Cases against your devices and the devices you co-stake, newest first" }
                thead { tr {
                    th scope="col" { "Case" } th scope="col" { "Device" } th scope="col" { "Rule" }
                    th scope="col" class="n" { "In escrow, $IO" } th scope="col" { "Status" }
                    th scope="col" { "Appeal by" }
                } }
                tbody {
                    @for c in &v.cases {
                        tr data-case=(c.id) {
                            th scope="row" {
                                a href=(format!("/app/worker/cases/{}", c.id)) class="mono" { (c.id) }
                                br; span class="muted" { "opened " (super::super::when(&c.opened_at)) }
                            }
                            td { (device_cell(c)) }
                            td data-rule=(c.rule) { (c.rule_words) }
                            td class="n" { (c.amount) br; (escrow_parts(c)) }
                            td { (badge(&c.status, &c.status_words)) br; span class="muted" { (c.status_words) } }
                            td { (super::super::when(&c.appeal_deadline)) }
                        }
                    }
                }
            }
        }
    };
    page("Cases", "Slashing cases", shell, body)
}

fn facts(v: &SlashingCasePage) -> Markup {
    let c = &v.case;
    html! {
        dl class="facts" data-testid="case-facts" {
            dt { "Status" } dd { (badge(&c.status, &c.status_words)) " " span class="muted" { (c.status_words) } }
            dt { "Device" } dd { (device_cell(c)) }
            dt { "Rule" } dd data-rule=(c.rule) { (c.rule_words) }
            dt { "In escrow" } dd { (c.amount) " $IO " (escrow_parts(c)) }
            dt { "Opened" } dd { (super::super::when(&c.opened_at)) " by " @if v.opened_by == "detector" { "a detector" } @else { "an operator" } }
            dt { "Appeal by" } dd { (super::super::when(&c.appeal_deadline)) }
            @if let Some(t) = &v.decided_at { dt { "Decided" } dd { (super::super::when(t)) } }
            @if let Some(t) = &v.closed_at { dt { "Closed" } dd { (super::super::when(t)) } }
        }
    }
}

fn evidence(v: &SlashingCasePage) -> Markup {
    html! {
        section aria-labelledby="evidence-h" {
            h2 id="evidence-h" { "Evidence" }
            @if v.evidence.is_empty() {
                p class="muted" { "The case cites no record; the statement says what happened." }
            } @else {
                table tabindex="0" data-testid="case-evidence" {
                    caption class="muted" { "What the control plane recorded, as the case cites it" }
                    thead { tr { th scope="col" { "Kind" } th scope="col" { "Refers to" } th scope="col" { "What it shows" } } }
                    tbody {
                        @for e in &v.evidence {
                            tr data-kind=(e.kind) {
                                th scope="row" { (e.kind_words) }
                                td class="mono" {
                                    @if e.reference.is_empty() { span class="muted" { "—" } } @else { (e.reference) }
                                }
                                td { (e.summary) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn steps(v: &SlashingCasePage) -> Markup {
    html! {
        section aria-labelledby="steps-h" {
            h2 id="steps-h" { "Steps" }
            table tabindex="0" data-testid="case-steps" {
                caption class="muted" { "Every step of the case, oldest first" }
                thead { tr { th scope="col" { "When" } th scope="col" { "Step" } th scope="col" { "By" } th scope="col" { "What" } } }
                tbody {
                    @for s in &v.steps {
                        tr data-step=(s.kind) {
                            td { (super::super::when(&s.at)) }
                            th scope="row" { (s.kind) }
                            td { (s.by) }
                            td { (s.text) }
                        }
                    }
                }
            }
        }
    }
}

fn appeal(shell: &Shell<'_>, v: &SlashingCasePage) -> Markup {
    html! {
        section aria-labelledby="appeal-h" {
            h2 id="appeal-h" { "Appeal" }
            @if let Some(a) = &v.appeal {
                p { @if v.own { "Your appeal:" } @else { "The provider's appeal:" } }
                blockquote data-testid="case-appeal" { (a) }
            }
            @if let Some(r) = &v.decision_reason {
                p { "The operator's decision:" }
                blockquote data-testid="case-decision" { (r) }
            }
            @if !v.own {
                p class="muted" { "This device is another provider's that you co-stake: its provider appeals, and you read the case." }
            } @else if v.appealable && v.can_manage {
                form method="post" action=(format!("/app/worker/cases/{}/appeal", v.case.id)) class="card" data-testid="appeal-form" {
                    (csrf(shell))
                    div class="field" {
                        label for="appeal-statement" { "Your statement" }
                        textarea id="appeal-statement" name="statement" class="secret" rows="6" required
                            maxlength="4000" aria-describedby="appeal-hint" { (v.statement_form) }
                        span class="hint" id="appeal-hint" {
                            "1 to 4000 characters: why the case is wrong, with what shows it. An operator decides; "
                            "nothing is burned before then. You appeal once."
                        }
                    }
                    div class="actions" { button type="submit" class="btn" { "Appeal case " span class="mono" { (v.case.id) } } }
                }
            } @else if v.appealable {
                p class="muted" { "An owner, or a member with the billing role, appeals." }
            } @else if v.appeal.is_none() && v.case.status == "open" {
                p class="muted" data-testid="appeal-closed" { "The appeal window has closed." }
            }
        }
    }
}

pub fn slashing_case_page(shell: &Shell<'_>, v: &SlashingCasePage) -> Markup {
    let body = html! {
        p { a href="/app/worker/cases" { "← All cases" } }
        (said(v.notice.as_deref(), v.error.as_deref()))
        (facts(v))
        section aria-labelledby="statement-h" {
            h2 id="statement-h" { "Statement" }
            p data-testid="case-statement" { (v.statement) }
        }
        (evidence(v))
        (steps(v))
        (appeal(shell, v))
    };
    page("Cases", &format!("Case {}", v.case.id), shell, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(device_name: Option<&str>) -> SlashingCaseLine {
        SlashingCaseLine {
            id: "slc_1".into(),
            device_id: "dev_1".into(),
            device_name: device_name.map(str::to_string),
            rule: "operator".into(),
            rule_words: "Another breach".into(),
            amount: "400.00".into(),
            from_stake: "400.00".into(),
            from_costake: "0.00".into(),
            from_rewards: "0.00".into(),
            status: "open".into(),
            status_words: "Open".into(),
            appeal_deadline: "2027-01-05T10:00:00Z".into(),
            opened_at: "2026-12-06T10:00:00Z".into(),
        }
    }

    #[test]
    fn an_own_device_is_linked_and_a_co_staked_one_is_not() {
        let html = device_cell(&line(Some("rig <1>"))).into_string();
        assert!(
            html.contains("href=\"/app/worker/devices/dev_1\""),
            "{html}"
        );
        assert!(html.contains("rig &lt;1&gt;"), "escaped: {html}");
        let html = device_cell(&line(None)).into_string();
        assert!(!html.contains("href="), "{html}");
        assert!(html.contains("a device you co-stake"), "{html}");
    }

    #[test]
    fn the_escrow_leaves_out_an_empty_co_stake() {
        let mut c = line(None);
        assert!(!escrow_parts(&c).into_string().contains("co-stake"));
        c.from_costake = "800.00".into();
        let html = escrow_parts(&c).into_string();
        assert!(html.contains("co-stake 800.00"), "{html}");
        assert!(
            !html.contains("style="),
            "the policy allows no inline style"
        );
    }
}
