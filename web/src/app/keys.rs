//! SSH keys: the organisation's public keys, which its clusters' nodes let in as `root`, a form
//! to add one and a form to remove each. Every member sees them; those who may change clusters
//! add and remove them.

use maud::{Markup, html};

use super::CSRF_FIELD;
use super::layout::{Shell, page};

/// An SSH key as listed.
pub struct SshKeyLine {
    pub id: String,
    pub name: String,
    pub key_type: String,
    /// `SHA256:…`, as `ssh-keygen -l` shows it.
    pub fingerprint: String,
    pub created_at: String,
}

pub struct KeysView {
    pub keys: Vec<SshKeyLine>,
    /// May add and remove keys.
    pub can_manage: bool,
    /// What the last form did.
    pub notice: Option<String>,
    /// Why the last form was refused.
    pub error: Option<String>,
    /// The add form as it was typed, shown again when it was refused.
    pub name: String,
    pub public_key: String,
}

pub fn keys_page(shell: &Shell<'_>, v: &KeysView) -> Markup {
    let body = html! {
        @if let Some(error) = &v.error {
            p class="error" role="alert" data-testid="keys-error" { (error) }
        }
        @if let Some(notice) = &v.notice {
            p class="notice" role="status" { (notice) }
        }
        p class="muted" {
            "Every node of the organisation's clusters lets these keys in as root (or only those a cluster names). "
            "A removed key is not given to nodes started afterwards. "
            a href="/app/clusters/new" { "Create a cluster" }
        }
        @if v.can_manage {
            section aria-labelledby="add-key-h" {
                h2 id="add-key-h" { "Add an SSH key" }
                form method="post" action="/app/keys" class="card" {
                    input type="hidden" name=(CSRF_FIELD) value=(shell.csrf);
                    div class="field" {
                        label for="key-name" { "Name" }
                        input id="key-name" name="name" type="text" required maxlength="64" value=(v.name);
                        span class="hint" { "like laptop: a name like that also names the identity file, ~/.ssh/laptop" }
                    }
                    div class="field" {
                        label for="key-public" { "Public key" }
                        textarea id="key-public" name="public_key" class="secret" rows="4" required
                            placeholder="ssh-ed25519 AAAA… you@laptop" { (v.public_key) }
                        span class="hint" { "the contents of a .pub file, like ~/.ssh/id_ed25519.pub; never the private key" }
                    }
                    div class="actions" { button type="submit" class="btn" { "Add key" } }
                }
            }
        }
        section aria-labelledby="keys-h" {
            h2 id="keys-h" { "Keys" }
            @if v.keys.is_empty() {
                p class="muted" { "No SSH keys yet." }
            } @else {
                table tabindex="0" data-testid="ssh-keys" {
                    thead { tr {
                        th scope="col" { "Name" } th scope="col" { "Type" } th scope="col" { "Fingerprint" }
                        th scope="col" { "Added" } th scope="col" { span class="sr-only" { "Remove" } }
                    } }
                    tbody {
                        @for k in &v.keys {
                            tr {
                                th scope="row" { (k.name) br; span class="muted mono" { (k.id) } }
                                td { (k.key_type) }
                                td class="mono" { (k.fingerprint) }
                                td { (super::when(&k.created_at)) }
                                td {
                                    @if v.can_manage {
                                        form method="post" action=(format!("/app/keys/{}/remove", k.id)) class="row-form" {
                                            input type="hidden" name=(CSRF_FIELD) value=(shell.csrf);
                                            button type="submit" class="btn btn-secondary" { "Remove key " (k.name) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    page("Clusters", "SSH keys", shell, body)
}
