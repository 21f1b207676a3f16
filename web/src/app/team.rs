//! Team: the organisation (its name, renamed by those allowed), the organisations the visitor
//! belongs to (switching between them, creating one), its members and their roles, and, for
//! those who manage it, invitations, API keys and the audit log ([`access`]).

mod access;

use maud::{Markup, html};

use super::CSRF_FIELD;
use super::layout::{Shell, page};

/// An organisation the visitor belongs to.
pub struct MembershipLine {
    pub org_id: String,
    pub name: String,
    pub role: String,
    /// The one this session works in.
    pub current: bool,
}

/// A member of the organisation.
pub struct MemberLine {
    pub user_id: String,
    pub name: String,
    pub email: String,
    pub role: String,
    pub joined_at: String,
    /// The visitor themselves (removing is leaving).
    pub you: bool,
    /// Whether the visitor may change this member's role, and remove them.
    pub can_change: bool,
    pub can_remove: bool,
}

/// An invitation sent from the organisation.
pub struct InvitationLine {
    pub id: String,
    pub email: String,
    pub role: String,
    /// `pending`, `accepted`, `revoked` or `expired`; only a pending one can be revoked.
    pub status: String,
    pub created_at: String,
    pub expires_at: String,
}

/// An API key, without its secret (which only its creation shows).
pub struct KeyLine {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub scopes: String,
    /// `active`, `expired` or `revoked`; only an active one can be revoked.
    pub status: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
}

/// One audit event.
pub struct AuditLine {
    pub at: String,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub status: String,
    pub outcome: String,
    pub ip: Option<String>,
    pub request_id: String,
}

/// A key just made: the only page that ever shows its secret.
pub struct NewKey {
    pub name: String,
    pub secret: String,
}

/// An invitation just sent that no email carries: the link the inviter passes on.
pub struct InviteLink {
    pub email: String,
    pub link: String,
}

/// One of the organisation's limits and its use of it.
pub struct QuotaLine {
    pub what: String,
    pub used: String,
    pub limit: String,
    /// Used, as a whole percentage of the limit (0 when there is no room at all).
    pub percent: u8,
}

pub struct TeamView {
    /// The organisation's limits and their use.
    pub quota: Vec<QuotaLine>,
    pub org_id: String,
    pub org_name: String,
    pub user_id: String,
    pub role: String,
    pub can_rename: bool,
    /// Roles the visitor may hand out, by invitation or role change.
    pub grantable: Vec<String>,
    pub memberships: Vec<MembershipLine>,
    pub members: Vec<MemberLine>,
    pub next_members: Option<String>,
    /// `None` when the visitor's role may not see them.
    pub invitations: Option<Vec<InvitationLine>>,
    pub next_invitations: Option<String>,
    pub can_invite: bool,
    pub keys: Option<Vec<KeyLine>>,
    pub next_keys: Option<String>,
    pub can_make_keys: bool,
    pub audit: Option<Vec<AuditLine>>,
    pub next_audit: Option<String>,
    /// What the last form did, in words.
    pub notice: Option<String>,
    /// Why the last form was refused, in words.
    pub error: Option<String>,
    pub new_key: Option<NewKey>,
    pub invite_link: Option<InviteLink>,
}

/// The hidden field every form carries.
fn csrf(shell: &Shell<'_>) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(shell.csrf); }
}

/// A time, or a dash for none.
fn when(t: Option<&str>) -> Markup {
    html! {
        @match t {
            Some(t) => (super::when(t)),
            None => span class="muted" { "—" },
        }
    }
}

pub fn team_page(shell: &Shell<'_>, v: &TeamView) -> Markup {
    let body = html! {
        @if let Some(error) = &v.error {
            p class="error" role="alert" { (error) }
        }
        @if let Some(notice) = &v.notice {
            p class="notice" role="status" { (notice) }
        }
        @if let Some(k) = &v.new_key {
            (access::secret_box(k))
        }
        @if let Some(i) = &v.invite_link {
            (access::invite_link_box(i))
        }
        nav class="toc" aria-label="On this page" {
            ul {
                li { a href="#org-h" { "Organisation" } }
                li { a href="#orgs-h" { "Your organisations" } }
                li { a href="#members-h" { "Members" } }
                li { a href="#invitations-h" { "Invitations" } }
                li { a href="#keys-h" { "API keys" } }
                li { a href="#audit-h" { "Audit log" } }
            }
        }
        (organisation(shell, v))
        (organisations(shell, v))
        (quota(v))
        (members(shell, v))
        (access::invitations(shell, v))
        (access::keys(shell, v))
        (access::audit(v))
    };
    page("Team", "Team", shell, body)
}

fn organisation(shell: &Shell<'_>, v: &TeamView) -> Markup {
    html! {
        section aria-labelledby="org-h" {
            h2 id="org-h" { "Organisation" }
            dl class="facts" {
                dt { "Name" } dd data-testid="org-name" { (v.org_name) }
                dt { "Organisation id" } dd class="mono" { (v.org_id) }
                dt { "Your role" } dd { (v.role) }
                dt { "Your user id" } dd class="mono" { (v.user_id) }
            }
            @if v.can_rename {
                form method="post" action="/app/team/org" class="inline-form" {
                    (csrf(shell))
                    div {
                        label for="org-name" { "New name" }
                        input id="org-name" name="name" type="text" required maxlength="100" value=(v.org_name);
                    }
                    button type="submit" class="btn" { "Rename organisation" }
                }
            }
        }
    }
}

fn organisations(shell: &Shell<'_>, v: &TeamView) -> Markup {
    html! {
        section aria-labelledby="orgs-h" {
            h2 id="orgs-h" { "Your organisations" }
            table tabindex="0" {
                thead { tr { th scope="col" { "Organisation" } th scope="col" { "Your role" } th scope="col" { span class="sr-only" { "Switch" } } } }
                tbody {
                    @for m in &v.memberships {
                        tr {
                            th scope="row" { (m.name) br; span class="muted mono" { (m.org_id) } }
                            td { (m.role) }
                            td {
                                @if m.current {
                                    span class="badge" { "Working here" }
                                } @else {
                                    form method="post" action="/app/team/switch" class="row-form" {
                                        (csrf(shell))
                                        input type="hidden" name="org_id" value=(m.org_id);
                                        button type="submit" class="btn btn-secondary" {
                                            "Switch" span class="sr-only" { " to " (m.name) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h3 { "Create an organisation" }
            p class="muted" { "You become its owner, and the console switches to it." }
            form method="post" action="/app/team/orgs" class="inline-form" {
                (csrf(shell))
                div {
                    label for="new-org-name" { "Name" }
                    input id="new-org-name" name="name" type="text" required maxlength="100";
                }
                button type="submit" class="btn" { "Create organisation" }
            }
        }
    }
}

/// The role choices of a member's form: what the visitor may grant, and the member's own
/// role first when it is not among them (so the form shows what holds).
fn role_options(grantable: &[String], current: &str) -> Markup {
    html! {
        @if !grantable.iter().any(|r| r == current) {
            option value=(current) selected { (current) }
        }
        @for r in grantable {
            option value=(r) selected[r == current] { (r) }
        }
    }
}

fn quota(v: &TeamView) -> Markup {
    html! {
        section aria-labelledby="quota-h" {
            h2 id="quota-h" { "Limits" }
            p class="muted" { "What the organisation may run at once; an operator raises them." }
            div class="tiles" data-testid="quota" {
                @for q in &v.quota {
                    div class="tile" {
                        p class="tile-label" { (q.what) }
                        p class="tile-value" { (q.used) " " span class="muted" { "of " (q.limit) } }
                        meter min="0" max="100" value=(q.percent) aria-label=(format!("{} used: {} %", q.what, q.percent)) {}
                    }
                }
            }
        }
    }
}

fn members(shell: &Shell<'_>, v: &TeamView) -> Markup {
    html! {
        section aria-labelledby="members-h" {
            h2 id="members-h" { "Members" }
            table tabindex="0" {
                thead { tr {
                    th scope="col" { "Member" } th scope="col" { "Role" } th scope="col" { "Joined" }
                    th scope="col" { span class="sr-only" { "Remove" } }
                } }
                tbody {
                    @for m in &v.members {
                        tr {
                            th scope="row" {
                                (m.name) @if m.you { span class="muted" { " (you)" } }
                                br; span class="muted" { (m.email) }
                            }
                            td {
                                @if m.can_change {
                                    @let id = format!("role-{}", m.user_id);
                                    form method="post" action=(format!("/app/team/members/{}/role", m.user_id)) class="row-form" {
                                        (csrf(shell))
                                        label for=(id) class="sr-only" { "Role of " (m.email) }
                                        select id=(id) name="role" { (role_options(&v.grantable, &m.role)) }
                                        button type="submit" class="btn btn-secondary" {
                                            "Set role" span class="sr-only" { " of " (m.email) }
                                        }
                                    }
                                } @else {
                                    (m.role)
                                }
                            }
                            td { (when(Some(m.joined_at.as_str()))) }
                            td {
                                @if m.can_remove {
                                    form method="post" action=(format!("/app/team/members/{}/remove", m.user_id)) class="row-form" {
                                        (csrf(shell))
                                        button type="submit" class="btn btn-secondary" {
                                            @if m.you { "Leave " (v.org_name) } @else { "Remove " (m.email) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = &v.next_members {
                p { a href=(format!("/app/team?members_after={next}#members-h")) { "More members" } }
            }
        }
    }
}
