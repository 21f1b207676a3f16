//! Who may get in, and what happened: invitations (sent, revoked, accepted), API keys (made,
//! shown once, revoked) and the audit log. Roles that may not see them are told so.

use maud::{Markup, html};

use super::{InviteLink, NewKey, TeamView, csrf, when};
use crate::app::layout::Shell;

/// A new key's secret, with the warning that it is never shown again. Not in a form, so it is
/// never sent anywhere.
pub(super) fn secret_box(k: &NewKey) -> Markup {
    html! {
        section class="secret-box" aria-labelledby="secret-h" {
            h2 id="secret-h" { "Your new API key “" (k.name) "”" }
            p { strong { "Copy the secret now: it is shown this once, and nobody can show it again." } }
            label for="new-key-secret" { "Secret" }
            input id="new-key-secret" class="mono secret" type="text" readonly autocomplete="off"
                spellcheck="false" value=(k.secret);
            p class="muted" { "Send it as " code { "Authorization: Bearer <secret>" } "." }
        }
    }
}

/// An invitation no email carries: the link to pass on, shown once.
pub(super) fn invite_link_box(i: &InviteLink) -> Markup {
    html! {
        section class="secret-box" aria-labelledby="invite-link-h" {
            h2 id="invite-link-h" { "Invitation for " (i.email) }
            p {
                "This server sends no email: pass this link on to " (i.email) " yourself. "
                strong { "It is shown this once." }
            }
            label for="invite-link" { "Link (on this site's address)" }
            input id="invite-link" class="mono secret" type="text" readonly autocomplete="off"
                spellcheck="false" value=(i.link);
            p { a href=(i.link) data-testid="accept-link" { "The invitation link" } }
        }
    }
}

pub(super) fn invitations(shell: &Shell<'_>, v: &TeamView) -> Markup {
    html! {
        section aria-labelledby="invitations-h" {
            h2 id="invitations-h" { "Invitations" }
            h3 { "Accept an invitation" }
            form method="post" action="/app/invitations/accept" class="inline-form" {
                (csrf(shell))
                div {
                    label for="accept-token" { "Token from your invitation" }
                    input id="accept-token" name="token" type="text" required autocomplete="off" spellcheck="false";
                }
                button type="submit" class="btn btn-secondary" { "Accept the invitation" }
            }
            @if v.can_invite {
                h3 { "Invite someone" }
                form method="post" action="/app/team/invitations" class="inline-form" {
                    (csrf(shell))
                    div {
                        label for="invite-email" { "Email" }
                        input id="invite-email" name="email" type="email" required autocomplete="off";
                    }
                    div {
                        label for="invite-role" { "Role" }
                        select id="invite-role" name="role" {
                            @for r in &v.grantable {
                                option value=(r) selected[r == "member"] { (r) }
                            }
                        }
                    }
                    button type="submit" class="btn" { "Send invitation" }
                }
            }
            @match &v.invitations {
                None => p class="muted" { "Only owners and admins can see and send this organisation's invitations." },
                Some(list) if list.is_empty() => p class="muted" { "No invitations yet." },
                Some(list) => {
                    table tabindex="0" {
                        thead { tr {
                            th scope="col" { "Email" } th scope="col" { "Role" } th scope="col" { "Status" }
                            th scope="col" { "Sent" } th scope="col" { "Expires" }
                            th scope="col" { span class="sr-only" { "Revoke" } }
                        } }
                        tbody {
                            @for i in list {
                                tr {
                                    th scope="row" { (i.email) }
                                    td { (i.role) }
                                    td { span class=(format!("badge badge-{}", i.status)) { (i.status) } }
                                    td { (when(Some(i.created_at.as_str()))) }
                                    td { (when(Some(i.expires_at.as_str()))) }
                                    td {
                                        @if v.can_invite && i.status == "pending" {
                                            form method="post" action=(format!("/app/team/invitations/{}/revoke", i.id)) class="row-form" {
                                                (csrf(shell))
                                                button type="submit" class="btn btn-secondary" { "Revoke invitation for " (i.email) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if let Some(next) = &v.next_invitations {
                        p { a href=(format!("/app/team?invitations_after={next}#invitations-h")) { "More invitations" } }
                    }
                }
            }
        }
    }
}

pub(super) fn keys(shell: &Shell<'_>, v: &TeamView) -> Markup {
    html! {
        section aria-labelledby="keys-h" {
            h2 id="keys-h" { "API keys" }
            @if v.can_make_keys {
                h3 { "Create an API key" }
                form method="post" action="/app/team/keys" class="inline-form" {
                    (csrf(shell))
                    div {
                        label for="key-name" { "Name" }
                        input id="key-name" name="name" type="text" required maxlength="100";
                    }
                    fieldset {
                        legend { "Scopes" }
                        label class="check" for="key-scope-read" {
                            input id="key-scope-read" type="checkbox" name="scope_read" value="on" checked; " read"
                        }
                        label class="check" for="key-scope-write" {
                            input id="key-scope-write" type="checkbox" name="scope_write" value="on"; " write"
                        }
                        label class="check" for="key-scope-admin" {
                            input id="key-scope-admin" type="checkbox" name="scope_admin" value="on"; " admin"
                        }
                    }
                    div {
                        label for="key-expiry" { "Expires in days (optional)" }
                        input id="key-expiry" name="expires_in_days" type="number" min="1" max="3650" step="1" inputmode="numeric";
                    }
                    button type="submit" class="btn" { "Create key" }
                }
            }
            @match &v.keys {
                None => p class="muted" { "Only owners and admins can see and create this organisation's API keys." },
                Some(list) if list.is_empty() => p class="muted" { "No API keys yet." },
                Some(list) => {
                    table tabindex="0" {
                        thead { tr {
                            th scope="col" { "Name" } th scope="col" { "Prefix" } th scope="col" { "Scopes" }
                            th scope="col" { "Status" } th scope="col" { "Created" } th scope="col" { "Expires" }
                            th scope="col" { "Last used" } th scope="col" { span class="sr-only" { "Revoke" } }
                        } }
                        tbody {
                            @for k in list {
                                tr {
                                    th scope="row" { (k.name) }
                                    td class="mono" { (k.prefix) "…" }
                                    td { (k.scopes) }
                                    td { span class=(format!("badge badge-{}", k.status)) { (k.status) } }
                                    td { (when(Some(k.created_at.as_str()))) }
                                    td { (when(k.expires_at.as_deref())) }
                                    td { (when(k.last_used_at.as_deref())) }
                                    td {
                                        @if v.can_make_keys && k.status == "active" {
                                            form method="post" action=(format!("/app/team/keys/{}/revoke", k.id)) class="row-form" {
                                                (csrf(shell))
                                                button type="submit" class="btn btn-secondary" { "Revoke key " (k.name) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if let Some(next) = &v.next_keys {
                        p { a href=(format!("/app/team?keys_after={next}#keys-h")) { "More keys" } }
                    }
                }
            }
        }
    }
}

pub(super) fn audit(v: &TeamView) -> Markup {
    html! {
        section aria-labelledby="audit-h" {
            h2 id="audit-h" { "Audit log" }
            @match &v.audit {
                None => p class="muted" { "Only owners and admins can read the audit log." },
                Some(list) if list.is_empty() => p class="muted" { "No events yet." },
                Some(list) => {
                    table tabindex="0" {
                        thead { tr {
                            th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Action" }
                            th scope="col" { "Target" } th scope="col" class="n" { "Status" } th scope="col" { "Outcome" }
                            th scope="col" { "IP" } th scope="col" { "Request" }
                        } }
                        tbody {
                            @for e in list {
                                tr {
                                    td { (when(Some(e.at.as_str()))) }
                                    td { (e.actor_type) @if let Some(id) = &e.actor_id { br; span class="mono" { (id) } } }
                                    td class="mono" { (e.action) }
                                    td class="mono" { (e.target.as_deref().unwrap_or("—")) }
                                    td class="n" { (e.status) }
                                    td { span class=(format!("badge badge-{}", e.outcome)) { (e.outcome) } }
                                    td class="mono" { (e.ip.as_deref().unwrap_or("—")) }
                                    td class="mono" { (e.request_id) }
                                }
                            }
                        }
                    }
                    @if let Some(next) = &v.next_audit {
                        p { a href=(format!("/app/team?audit_after={next}#audit-h")) { "Next events" } }
                    }
                }
            }
        }
    }
}
