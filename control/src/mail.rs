//! Outgoing email, through an outbox: a message is written in the transaction that makes it
//! due (so it is never lost when that commits, nor sent when it rolls back), and delivered
//! after the commit, by SMTP ([`SmtpSettings`], through `lettre`) when a mail server is
//! configured. Without one, delivering writes the message to the log (target
//! `iocloud::outbox`) for whoever runs the server locally. Either way this replica keeps the
//! latest few in memory ([`Mailbox`]), for tests.
//!
//! A message may carry a secret (an invitation token). The row keeps the body as a template
//! with `{secret}` in its place and the secret beside it only until delivery, which fills the
//! template, sends it and clears the secret in the same transaction, so nothing read from the
//! database afterwards reveals it.

use std::collections::VecDeque;
use std::sync::Arc;

use iocloud_db::time::now_micros;
use iocloud_db::{Db, DbError, Tx, db_run, ids::new_id, tx_run};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use parking_lot::Mutex;

use crate::Result;

/// Where a message's secret goes in its stored body.
pub const SECRET_PLACEHOLDER: &str = "{secret}";
/// How many delivered messages the in-memory mailbox keeps.
const KEPT: usize = 200;

/// A delivered message. Its `Debug` hides the body, which may hold a secret.
#[derive(Clone)]
pub struct SentEmail {
    pub recipient: String,
    pub subject: String,
    pub body: String,
}

impl std::fmt::Debug for SentEmail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentEmail")
            .field("recipient", &self.recipient)
            .field("subject", &self.subject)
            .field("body", &"***")
            .finish()
    }
}

/// The latest messages this replica delivered, newest last.
#[derive(Default)]
pub struct Mailbox {
    sent: Mutex<VecDeque<SentEmail>>,
}

impl Mailbox {
    /// The latest message delivered to `recipient` by this replica.
    pub fn latest_to(&self, recipient: &str) -> Option<SentEmail> {
        self.sent
            .lock()
            .iter()
            .rev()
            .find(|m| m.recipient == recipient)
            .cloned()
    }

    fn keep(&self, mail: SentEmail) {
        let mut sent = self.sent.lock();
        if sent.len() == KEPT {
            sent.pop_front();
        }
        sent.push_back(mail);
    }
}

#[derive(sqlx::FromRow)]
struct OutboxRow {
    id: String,
    recipient: String,
    subject: String,
    body: String,
    secret: Option<String>,
}

/// Queues a message in `tx`. `body` holds [`SECRET_PLACEHOLDER`] where `secret` goes.
pub(crate) async fn queue_in(
    tx: &mut Tx,
    recipient: &str,
    subject: &str,
    body: &str,
    secret: Option<&str>,
) -> Result<()> {
    tx_run!(tx, |c| {
        sqlx::query("INSERT INTO email_outbox (id, recipient, subject, body, secret, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(new_id("eml")).bind(recipient).bind(subject).bind(body).bind(secret).bind(now_micros())
            .execute(c).await.map(|r| r.rows_affected())
    })
    .map_err(DbError::from)?;
    Ok(())
}

/// Who hears about an organisation's money: its owners and billing members.
pub(crate) async fn billing_contacts_in(tx: &mut Tx, org_id: &str) -> Result<Vec<String>> {
    Ok(tx_run!(tx, |c| sqlx::query_scalar(
        "SELECT u.email FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.org_id = $1 AND m.role IN ('owner', 'billing') ORDER BY u.email"
    )
    .bind(org_id)
    .fetch_all(c)
    .await)
    .map_err(DbError::from)?)
}

/// The mail server email is sent through.
#[derive(Clone, Debug)]
pub struct SmtpSettings {
    /// `smtp://host:port` (plain; `?tls=required` for STARTTLS), or `smtps://host:port`, with
    /// `user:password@` when the server asks for them.
    pub url: String,
    /// The `From` of every message, e.g. `IO Cloud <no-reply@example.com>`.
    pub from: String,
}

/// How long one message may take to hand to the mail server.
const SMTP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A connected SMTP client and the sender it writes as.
#[derive(Clone)]
struct Smtp {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: lettre::message::Mailbox,
}

/// The outbox's delivery side.
#[derive(Clone)]
pub struct Outbox {
    db: Db,
    mailbox: Arc<Mailbox>,
    smtp: Option<Smtp>,
}

impl Outbox {
    /// An outbox delivering through `smtp`, or to the log when there is none. A setting that
    /// does not parse is refused here, at start, not at the first email.
    pub(crate) fn new(db: Db, smtp: Option<&SmtpSettings>) -> Result<Self> {
        let smtp = match smtp {
            None => None,
            Some(s) => {
                let invalid =
                    |what: String| crate::Error::Internal(format!("SMTP settings: {what}"));
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&s.url)
                    .map_err(|e| invalid(format!("the URL: {e}")))?
                    .timeout(Some(SMTP_TIMEOUT))
                    .build();
                let from = s
                    .from
                    .parse()
                    .map_err(|e| invalid(format!("the From address {:?}: {e}", s.from)))?;
                Some(Smtp { transport, from })
            }
        };
        Ok(Outbox {
            db,
            mailbox: Default::default(),
            smtp,
        })
    }

    /// Whether email leaves this server (a mail server is configured), or only reaches the log.
    pub fn sends_email(&self) -> bool {
        self.smtp.is_some()
    }

    /// The email this replica delivered lately.
    pub fn mailbox(&self) -> &Mailbox {
        &self.mailbox
    }

    /// Delivers every message still waiting (its own, and any a crashed replica left behind).
    /// Each is claimed with a conditional update, so two replicas never both deliver one.
    pub async fn deliver(&self) -> Result<usize> {
        let waiting: Vec<String> = db_run!(&self.db, |p| sqlx::query_scalar(
            "SELECT id FROM email_outbox WHERE sent_at IS NULL ORDER BY id LIMIT 100"
        )
        .fetch_all(p)
        .await)
        .map_err(DbError::from)?;
        let mut delivered = 0;
        for id in waiting {
            let mut tx = self.db.begin().await?;
            let row: Option<OutboxRow> = tx_run!(&mut tx, |c| {
                sqlx::query_as(
                    "SELECT id, recipient, subject, body, secret FROM email_outbox WHERE id = $1 AND sent_at IS NULL",
                )
                .bind(&id)
                .fetch_optional(c)
                .await
            })
            .map_err(DbError::from)?;
            let Some(row) = row else { continue };
            let claimed = tx_run!(&mut tx, |c| {
                sqlx::query("UPDATE email_outbox SET sent_at = $1, secret = NULL WHERE id = $2 AND sent_at IS NULL")
                    .bind(now_micros())
                    .bind(&row.id)
                    .execute(c)
                    .await
                    .map(|r| r.rows_affected())
            })
            .map_err(DbError::from)?;
            if claimed == 0 {
                continue;
            }
            // Sent before the commit: a failed commit sends it again later rather than never.
            // A mail server that refuses or is away leaves the row waiting (the transaction
            // rolls back, the secret with it), for the next delivery.
            if let Err(e) = self.send(row).await {
                tracing::warn!(target: "iocloud::outbox", email = %id, error = %e, "could not send an email; it waits for the next delivery");
                continue;
            }
            tx.commit().await?;
            delivered += 1;
        }
        Ok(delivered)
    }

    /// Hands the message to the mail server, or without one writes it to the log; and keeps it
    /// in this replica's mailbox.
    async fn send(&self, row: OutboxRow) -> std::result::Result<(), String> {
        let body = match &row.secret {
            Some(secret) => row.body.replace(SECRET_PLACEHOLDER, secret),
            None => row.body,
        };
        match &self.smtp {
            Some(smtp) => {
                let to: lettre::message::Mailbox = row
                    .recipient
                    .parse()
                    .map_err(|e| format!("the recipient {:?}: {e}", row.recipient))?;
                let message = lettre::Message::builder()
                    .from(smtp.from.clone())
                    .to(to)
                    .subject(row.subject.clone())
                    .header(lettre::message::header::ContentType::TEXT_PLAIN)
                    .body(body.clone())
                    .map_err(|e| e.to_string())?;
                smtp.transport
                    .send(message)
                    .await
                    .map_err(|e| e.to_string())?;
                // The body may hold a secret: it goes to the mail server, not the log.
                tracing::info!(target: "iocloud::outbox", to = %row.recipient, subject = %row.subject, "email sent");
            }
            None => {
                tracing::info!(target: "iocloud::outbox", to = %row.recipient, subject = %row.subject, body, "email");
            }
        }
        self.mailbox.keep(SentEmail {
            recipient: row.recipient,
            subject: row.subject,
            body,
        });
        Ok(())
    }
}
