//! Signing in: email and password, posted with the CSRF token this form was handed.

use maud::{DOCTYPE, Markup, html};

use super::CSRF_FIELD;
use super::layout::head;

/// The sign-in page; `error` says why the last attempt was refused, `email` keeps what was
/// typed.
pub fn login(csrf: &str, email: &str, error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Sign in"))
            body {
                main id="main" class="auth" {
                    h1 { "Sign in to IO Cloud" }
                    @if let Some(error) = error {
                        p class="error" role="alert" { (error) }
                    }
                    form method="post" action="/app/login" class="card" {
                        input type="hidden" name=(CSRF_FIELD) value=(csrf);
                        label for="email" { "Email" }
                        input id="email" name="email" type="email" autocomplete="username" required value=(email);
                        label for="password" { "Password" }
                        input id="password" name="password" type="password" autocomplete="current-password" required;
                        button type="submit" class="btn" { "Sign in" }
                    }
                    p class="muted" { "No account yet? " a href="/app/signup" { "Create an account" } "." }
                }
            }
        }
    }
}
