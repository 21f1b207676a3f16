//! The audit log: every state-changing request, who made it, in which organisation, and how it
//! ended. It records route templates and ids, never bodies, so it never holds a secret.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use iocloud_db::time::now_micros;
use iocloud_db::{Db, DbError, Kv, Timestamp, db_run, ids::new_id};
use serde::Serialize;
use utoipa::ToSchema;

use crate::batcher::Batcher;
use crate::{Action, Actor, Page, PageRequest, Result};

#[derive(Clone, Debug, Serialize, ToSchema, sqlx::FromRow)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "AuditEvent")
)]
pub struct AuditEvent {
    pub id: String,
    /// `user`, `api_key` or `anonymous`.
    pub actor_type: String,
    pub actor_id: Option<String>,
    /// What was asked, e.g. `POST /v1/api-keys`.
    pub action: String,
    /// The id the request addressed, when there was one.
    pub target: Option<String>,
    /// The HTTP status answered.
    pub status: i64,
    /// `success`, `denied` or `failure`.
    pub outcome: String,
    pub request_id: String,
    pub ip: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// One event to record; the adapters fill it from the request and its answer.
#[derive(Debug, Default)]
pub struct NewAuditEvent {
    pub org_id: Option<String>,
    pub actor_type: &'static str,
    pub actor_id: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub status: u16,
    pub request_id: String,
    pub ip: Option<String>,
}

fn outcome(status: u16) -> &'static str {
    match status {
        200..=399 => "success",
        401 | 403 => "denied",
        _ => "failure",
    }
}

/// How long audit events wait for a database that went away before they are given up.
const AUDIT_HELD_FOR: std::time::Duration = std::time::Duration::from_secs(300);

/// Audit events waiting for their turn to be written ([`Batcher`]): id, event, time.
pub type AuditQueue = Batcher<(String, NewAuditEvent, i64), Result<()>>;

/// The audit log's service: writes events in batches and reads them back per organisation.
#[derive(Clone)]
pub struct Audit {
    db: Db,
    kv: Kv,
    queue: Arc<AuditQueue>,
}

impl Audit {
    pub(crate) fn new(db: Db, kv: Kv) -> Self {
        Audit {
            db,
            kv,
            queue: Default::default(),
        }
    }

    pub async fn record(&self, e: NewAuditEvent) -> Result<()> {
        let id = new_id("aud");
        let org = e.org_id.clone();
        let this = self.clone();
        self.queue
            .submit((id.clone(), e, now_micros()), move |batch| async move {
                match this.write(&batch).await {
                    Ok(()) => batch.iter().map(|_| Ok(())).collect(),
                    // The database failed (gone away, or a connection broken mid-write in a way
                    // that does not say so): the events wait for it rather than being lost (the
                    // request they record may well have been done before it went).
                    Err(crate::Error::Db(_)) => {
                        let answers = batch.iter().map(|_| Ok(())).collect();
                        this.write_when_back(batch);
                        answers
                    }
                    Err(e) => batch
                        .iter()
                        .map(|_| Err(crate::Error::Internal(e.to_string())))
                        .collect(),
                }
            })
            .await
            .unwrap_or_else(|| Err(crate::Error::Internal("an audit event was dropped".into())))?;
        if let Some(org) = &org
            && let Err(err) = self.kv.publish(&channel(org), &id).await
        {
            iocloud_db::note_kv_failure(&err, "could not publish audit event");
        }
        Ok(())
    }

    /// Records what background work (a rail's watcher, a sender, auto-reload) did for an
    /// organisation, as `actor_type`; a failure to write is logged, never passed on, since the
    /// work itself is done.
    pub async fn record_background(
        &self,
        actor_type: &'static str,
        org_id: &str,
        action: &str,
        target: Option<String>,
        status: u16,
    ) {
        let event = NewAuditEvent {
            org_id: Some(org_id.to_string()),
            actor_type,
            actor_id: None,
            action: action.to_string(),
            target,
            status,
            request_id: String::new(),
            ip: None,
        };
        if let Err(e) = self.record(event).await {
            tracing::warn!(error = %e, actor_type, action, "could not write an audit event");
        }
    }

    /// Writes events answered at the same moment in one statement per 64 (the audit log is
    /// written on every change, so under load this is one insert instead of hundreds).
    /// Writes `batch` once the database answers again: tried every half second for
    /// [`AUDIT_HELD_FOR`]. A write whose answer was lost may have been committed, so rows
    /// already there are skipped.
    fn write_when_back(&self, batch: Vec<(String, NewAuditEvent, i64)>) {
        let this = self.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + AUDIT_HELD_FOR;
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                match this.write(&batch).await {
                    Ok(()) => return,
                    Err(e) if tokio::time::Instant::now() > deadline => {
                        tracing::error!(error = %e, events = batch.len(), "audit events lost: the database stayed away");
                        return;
                    }
                    Err(_) => {}
                }
            }
        });
    }

    async fn write(&self, batch: &[(String, NewAuditEvent, i64)]) -> Result<()> {
        for part in batch.chunks(64) {
            let rows: Vec<String> = (0..part.len())
                .map(|i| {
                    let cells: Vec<String> = (1..=11).map(|c| format!("${}", i * 11 + c)).collect();
                    format!("({})", cells.join(", "))
                })
                .collect();
            let sql = format!(
                "INSERT INTO audit_events (id, org_id, actor_type, actor_id, action, target, status, outcome, request_id, ip, created_at) VALUES {} \
                 ON CONFLICT (id) DO NOTHING",
                rows.join(", ")
            );
            db_run!(&self.db, |p| {
                let mut q = sqlx::query(&sql);
                for (id, e, at) in part {
                    q = q
                        .bind(id)
                        .bind(&e.org_id)
                        .bind(e.actor_type)
                        .bind(&e.actor_id)
                        .bind(&e.action)
                        .bind(&e.target)
                        .bind(i64::from(e.status))
                        .bind(outcome(e.status))
                        .bind(&e.request_id)
                        .bind(&e.ip)
                        .bind(*at);
                }
                q.execute(p).await.map(|r| r.rows_affected())
            })
            .map_err(DbError::from)?;
        }
        Ok(())
    }

    /// Audit events of the actor's organisation from now on, as other replicas record them too.
    pub async fn stream(&self, actor: &Actor) -> Result<BoxStream<'static, AuditEvent>> {
        actor.authorize(Action::AuditRead)?;
        let ids = self.kv.subscribe(&channel(&actor.org_id)).await?;
        let this = self.clone();
        let org = actor.org_id.clone();
        Ok(ids
            .filter_map(move |id| {
                let this = this.clone();
                let org = org.clone();
                async move { this.event(&org, &id).await.ok() }
            })
            .boxed())
    }

    async fn event(&self, org_id: &str, id: &str) -> Result<AuditEvent> {
        let row: Option<AuditEvent> = db_run!(&self.db, |p| {
            sqlx::query_as(
                "SELECT id, actor_type, actor_id, action, target, status, outcome, request_id, ip, created_at \
                 FROM audit_events WHERE org_id = $1 AND id = $2",
            )
            .bind(org_id).bind(id).fetch_optional(p).await
        })
        .map_err(DbError::from)?;
        row.ok_or(crate::Error::NotFound("audit event"))
    }

    pub async fn events(&self, actor: &Actor, page: &PageRequest) -> Result<Page<AuditEvent>> {
        actor.authorize(Action::AuditRead)?;
        let rows: Vec<AuditEvent> = db_run!(&self.db, |p| {
            sqlx::query_as(
                "SELECT id, actor_type, actor_id, action, target, status, outcome, request_id, ip, created_at \
                 FROM audit_events WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            )
            .bind(&actor.org_id).bind(page.after_id()).bind(page.fetch_limit()).fetch_all(p).await
        })
        .map_err(DbError::from)?;
        Ok(Page::from_rows(rows, page, |r| &r.id))
    }
}

fn channel(org_id: &str) -> String {
    format!("audit:{org_id}")
}
