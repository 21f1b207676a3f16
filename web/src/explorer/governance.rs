//! Governance in the explorer: the proposals with their tallies, the parameters in force and
//! their history (`/explorer/governance`), and one proposal with its votes
//! (`/explorer/governance/{id}`), where a signed-in owner or billing member votes while it is
//! open.

use maud::{Markup, html};

use super::{Tile, frame, tiles, when};
use crate::app::CSRF_FIELD;

/// A proposal's line.
pub struct ProposalLine {
    pub id: String,
    pub title: String,
    pub status: String,
    /// "gpu share bps → 7000", or "words only".
    pub change: String,
    /// "62 % yes of 1,200,000 $IO".
    pub tally: String,
    pub ends: String,
}

/// A version of the parameters.
pub struct VersionLine {
    pub version: i64,
    /// From when, or "launch".
    pub since: String,
    /// (name, value).
    pub params: Vec<(String, String)>,
}

/// The governance page.
pub struct GovernanceView {
    pub proposals: Vec<ProposalLine>,
    pub next: Option<String>,
    pub versions: Vec<VersionLine>,
    /// (name, min, max).
    pub ranges: Vec<(String, i64, i64)>,
}

/// The vote form of an open proposal.
pub enum Ballot {
    /// Nobody is signed in: the way to sign in.
    SignIn,
    /// A signed-in visitor's form.
    Open {
        /// Where the form posts.
        action: String,
        csrf: String,
        /// The organisation's pseudonym among the voters.
        voter: String,
        /// Its vote so far.
        current: Option<String>,
        /// What the last vote did, or why it was refused.
        notice: Option<String>,
        error: Option<String>,
    },
}

/// One proposal's page.
pub struct ProposalView {
    /// Present while the vote is open.
    pub ballot: Option<Ballot>,
    pub title: String,
    pub body: String,
    pub facts: Vec<Tile>,
    pub change: Vec<(String, String)>,
    pub veto_reason: Option<String>,
    /// (voter, choice, weight, when).
    pub votes: Vec<(String, String, String, String)>,
}

/// The governance page (`/explorer/governance`).
pub fn governance_page(v: &GovernanceView) -> Markup {
    frame(
        "Governance",
        "Governance",
        html! {
            p { "Organisations with staked $IO propose and vote on the protocol's parameters. A vote lasts seven days and is weighed by the stake each organisation held when it opened; a passed change waits 48 hours, during which operators may veto it, then applies by itself." }
            h2 { "Proposals" }
            @if v.proposals.is_empty() {
                p class="muted" { "No proposal yet." }
            } @else {
                table tabindex="0" {
                    thead { tr { th { "Proposal" } th { "State" } th { "Change" } th { "Tally" } th { "Vote ends" } } }
                    tbody {
                        @for p in &v.proposals {
                            tr {
                                td { a href=(format!("/explorer/governance/{}", p.id)) { (p.title) } }
                                td { (p.status) } td { (p.change) } td { (p.tally) }
                                td { time datetime=(p.ends) { (when(&p.ends)) } }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = &v.next {
                p { a href=(format!("/explorer/governance?cursor={next}")) { "Older proposals" } }
            }
            h2 { "Parameters" }
            @for version in &v.versions {
                table tabindex="0" {
                    caption { "Version " (version.version) ", " (version.since) }
                    thead { tr { th { "Parameter" } th class="n" { "Value" } } }
                    tbody { @for (name, value) in &version.params { tr { td { (name) } td class="n" { (value) } } } }
                }
            }
            h2 { "What a proposal may set" }
            table tabindex="0" {
                thead { tr { th { "Parameter" } th class="n" { "From" } th class="n" { "To" } } }
                tbody { @for (name, min, max) in &v.ranges { tr { td { (name) } td class="n" { (min) } td class="n" { (max) } } } }
            }
        },
    )
}

/// One proposal's page (`/explorer/governance/{id}`).
pub fn proposal_page(v: &ProposalView) -> Markup {
    frame(
        "Governance",
        &v.title,
        html! {
            (tiles(&v.facts))
            @if let Some(reason) = &v.veto_reason {
                p { strong { "Vetoed: " } (reason) }
            }
            h2 { "Proposal" }
            @for line in v.body.lines() {
                p { (line) }
            }
            @if !v.change.is_empty() {
                h2 { "Change" }
                table tabindex="0" {
                    thead { tr { th { "Parameter" } th class="n" { "New value" } } }
                    tbody { @for (name, value) in &v.change { tr { td { (name) } td class="n" { (value) } } } }
                }
            }
            @if let Some(ballot) = &v.ballot {
                (ballot_form(ballot))
            }
            h2 { "Votes" }
            @if v.votes.is_empty() {
                p class="muted" { "No vote yet." }
            } @else {
                table tabindex="0" {
                    thead { tr { th { "Voter" } th { "Choice" } th class="n" { "Weight $IO" } th { "When" } } }
                    tbody {
                        @for (voter, choice, weight, at) in &v.votes {
                            tr { td class="mono" { (voter) } td { (choice) } td class="n" { (weight) } td { time datetime=(at) { (when(at)) } } }
                        }
                    }
                }
            }
            p { a href="/explorer/governance" { "Every proposal" } }
        },
    )
}

/// The vote form, or the way to sign in to vote.
fn ballot_form(b: &Ballot) -> Markup {
    html! {
        h2 id="vote-h" { "Your vote" }
        @match b {
            Ballot::SignIn => {
                p { "Owners and billing members of an organisation with staked $IO vote here: " a href="/app/login" { "sign in" } "." }
            }
            Ballot::Open { action, csrf, voter, current, notice, error } => {
                @if let Some(n) = notice { p role="status" { (n) } }
                @if let Some(e) = error { p role="alert" class="error" { (e) } }
                p {
                    "Your organisation votes as " span class="mono" { (voter) } ", weighed by the stake it held when the vote opened. "
                    @match current {
                        Some(c) => { "Its vote: " strong { (c) } ". Voting again replaces it until the close." }
                        None => { "It has not voted." }
                    }
                }
                form method="post" action=(action) aria-labelledby="vote-h" {
                    input type="hidden" name=(CSRF_FIELD) value=(csrf);
                    fieldset {
                        legend { "Your choice" }
                        @for choice in ["yes", "no", "abstain"] {
                            label {
                                input type="radio" name="choice" value=(choice) required checked[current.as_deref() == Some(choice)];
                                " " (choice)
                            }
                        }
                    }
                    button type="submit" { "Vote" }
                }
            }
        }
    }
}
