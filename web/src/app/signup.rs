//! Creating an account (with an organisation of one's own, or joining the one an invitation
//! names), and accepting an invitation once signed in.

use maud::{DOCTYPE, Markup, html};

use super::CSRF_FIELD;
use super::layout::{Shell, head, page};

/// The sign-up form, with what was typed kept (never the password).
pub struct SignupView {
    pub csrf: String,
    pub name: String,
    pub email: String,
    pub org_name: String,
    /// An invitation's token: the account joins that organisation instead of creating one.
    pub invitation: Option<String>,
    /// Why the last attempt was refused.
    pub error: Option<String>,
}

/// A page without the signed-in frame.
fn standalone(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body { main id="main" class="auth" { (body) } }
        }
    }
}

pub fn signup_page(v: &SignupView) -> Markup {
    let body = html! {
        h1 { "Create an IO Cloud account" }
        @if let Some(error) = &v.error {
            p class="error" role="alert" { (error) }
        }
        form method="post" action="/app/signup" class="card" {
            input type="hidden" name=(CSRF_FIELD) value=(v.csrf);
            label for="name" { "Your name" }
            input id="name" name="name" type="text" autocomplete="name" required maxlength="100" value=(v.name);
            label for="email" { "Email" }
            input id="email" name="email" type="email" autocomplete="username" required value=(v.email);
            label for="password" { "Password (at least 10 characters)" }
            input id="password" name="password" type="password" autocomplete="new-password" minlength="10" required;
            @match &v.invitation {
                Some(token) => {
                    input type="hidden" name="invitation" value=(token);
                    p class="muted" {
                        "You join the organisation that invited you. Use the email address the "
                        "invitation was sent to."
                    }
                }
                None => {
                    label for="org_name" { "Organisation name" }
                    input id="org_name" name="org_name" type="text" autocomplete="organization" required maxlength="100" value=(v.org_name);
                }
            }
            button type="submit" class="btn" { "Create account" }
        }
        p class="muted" { "Already have an account? " a href="/app/login" { "Sign in" } "." }
    };
    standalone("Create an account", body)
}

/// Accepting an invitation, signed in: who accepts, and the button that does it.
pub struct AcceptView {
    pub token: String,
    /// The signed-in user's email: the invitation must be addressed to it.
    pub email: String,
    pub error: Option<String>,
}

pub fn accept_page(shell: &Shell<'_>, v: &AcceptView) -> Markup {
    let body = html! {
        @if let Some(error) = &v.error {
            p class="error" role="alert" { (error) }
        }
        p {
            "Join the organisation that invited " strong { (v.email) } ". "
            "The console then switches to it; you keep your other organisations."
        }
        form method="post" action="/app/invitations/accept" class="inline-form" {
            input type="hidden" name=(CSRF_FIELD) value=(shell.csrf);
            input type="hidden" name="token" value=(v.token);
            button type="submit" class="btn" { "Accept the invitation" }
        }
        p class="muted" {
            "Invited at another address? Sign out and sign in (or sign up) with that one, then "
            "open the invitation link again."
        }
        p { a href="/app/team" { "← Team" } }
    };
    page("Team", "Accept an invitation", shell, body)
}

/// An invitation link opened signed out: sign up with it, or sign in first.
pub fn accept_signed_out_page(token: &str) -> Markup {
    let body = html! {
        h1 { "You are invited to IO Cloud" }
        p { "An organisation invited you to join it." }
        ul class="choices" {
            li {
                a class="btn" href=(format!("/app/signup?invitation={token}")) { "Sign up with this invitation" }
                " — a new account with the invited email address."
            }
            li {
                a class="btn btn-secondary" href="/app/login" { "Sign in first" }
                " — already have an account? Sign in, then open the invitation link again."
            }
        }
    };
    standalone("Invitation", body)
}
