//! Reading clusters: a row by id or name, with its nodes and latest events, and the views
//! answered from them.

use iocloud_db::ids::OrgId;
use iocloud_db::{DbError, db_run};

use super::Clusters;
use super::events::EventRow;
use super::storage::{
    COLUMNS, LATEST_EVENTS, NODES_SQL, ROW_AND_EVENTS_SQL, ROW_AND_NODES_SQL, split_row_and_events,
    split_row_and_nodes,
};
use super::{ClusterEvent, ClusterRow, ClusterStatus, ClusterView, NodeRow};
use crate::{Action, Actor, Error, Page, PageRequest, Result};

impl Clusters {
    /// A cluster's row by id, read outside any transaction.
    pub(crate) async fn row_of(&self, id: &str) -> Result<Option<ClusterRow>> {
        let sql = format!("SELECT {COLUMNS} FROM clusters WHERE id = $1");
        Ok(db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(p)
            .await)
        .map_err(DbError::from)?)
    }

    /// The organisation's cluster by id (`clu_…`) or by name (its live cluster of that name,
    /// else the latest one). Another organisation's answers 404.
    pub(crate) async fn cluster_row(&self, org_id: &OrgId, key: &str) -> Result<ClusterRow> {
        if !key.starts_with("clu_") {
            return self
                .cluster_row_by_name(org_id, key)
                .await?
                .ok_or(Error::NotFound("cluster"));
        }
        let sql = format!("SELECT {COLUMNS} FROM clusters WHERE id = $1 AND org_id = $2");
        let row: Option<ClusterRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(key)
            .bind(org_id)
            .fetch_optional(p)
            .await)
        .map_err(DbError::from)?;
        row.ok_or(Error::NotFound("cluster"))
    }

    /// The organisation's cluster by id (`clu_…`) with its latest events (oldest first), in one
    /// read; by name, the row alone (`None` for the events). Another organisation's answers 404.
    pub(crate) async fn cluster_row_and_events(
        &self,
        org_id: &OrgId,
        key: &str,
    ) -> Result<(ClusterRow, Option<Vec<ClusterEvent>>)> {
        if !key.starts_with("clu_") {
            return Ok((self.cluster_row(org_id, key).await?, None));
        }
        let found = db_run!(&self.db, |p| sqlx::query(ROW_AND_EVENTS_SQL.as_str())
            .bind(key)
            .bind(org_id)
            .fetch_all(p)
            .await
            .and_then(split_row_and_events))
        .map_err(DbError::from)?;
        let (row, events) = found.ok_or(Error::NotFound("cluster"))?;
        let events = events
            .into_iter()
            .map(EventRow::event)
            .collect::<Result<Vec<_>>>()?;
        Ok((row, Some(events)))
    }

    /// The organisation's live cluster of that name, else its latest one of that name.
    pub(crate) async fn cluster_row_by_name(
        &self,
        org_id: &OrgId,
        name: &str,
    ) -> Result<Option<ClusterRow>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM clusters WHERE org_id = $1 AND name = $2 \
             ORDER BY CASE WHEN status IN ('terminating', 'terminated', 'failed') THEN 1 ELSE 0 END, created_at DESC LIMIT 1"
        );
        Ok(db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(org_id)
            .bind(name)
            .fetch_optional(p)
            .await)
        .map_err(DbError::from)?)
    }

    /// A cluster with its nodes and latest events; another organisation's answers 404.
    pub async fn get(&self, actor: &Actor, id: &str) -> Result<ClusterView> {
        actor.authorize(Action::ResourcesRead)?;
        let row = self.cluster_row(&actor.org_id, id).await?;
        self.full_view(&row).await
    }

    /// A cluster's row and its nodes, in one read outside any transaction.
    pub(crate) async fn row_and_nodes(
        &self,
        id: &str,
    ) -> Result<Option<(ClusterRow, Vec<NodeRow>)>> {
        Ok(
            db_run!(&self.db, |p| sqlx::query(ROW_AND_NODES_SQL.as_str())
                .bind(id)
                .fetch_all(p)
                .await
                .and_then(split_row_and_nodes))
            .map_err(DbError::from)?,
        )
    }

    /// A cluster's nodes, read outside any transaction (for answers and plans).
    pub(crate) async fn nodes_of(&self, cluster_id: &str) -> Result<Vec<NodeRow>> {
        Ok(db_run!(&self.db, |p| sqlx::query_as(NODES_SQL)
            .bind(cluster_id)
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?)
    }

    pub(crate) async fn full_view(&self, row: &ClusterRow) -> Result<ClusterView> {
        let nodes = self.nodes_of(&row.id).await?;
        self.view_with(row, &nodes).await
    }

    /// The full view from nodes already read.
    pub(crate) async fn view_with(
        &self,
        row: &ClusterRow,
        nodes: &[NodeRow],
    ) -> Result<ClusterView> {
        self.view_from(row, nodes, None).await
    }

    /// The full view from nodes and, when at hand, the latest events already read.
    pub(crate) async fn view_from(
        &self,
        row: &ClusterRow,
        nodes: &[NodeRow],
        events: Option<Vec<ClusterEvent>>,
    ) -> Result<ClusterView> {
        let mut view = row.view()?;
        view.nodes = Some(nodes.iter().map(NodeRow::view).collect());
        view.events = Some(match events {
            Some(events) => events,
            None => self.latest_events(&row.id, LATEST_EVENTS).await?,
        });
        Ok(view)
    }

    /// The names of those of `ids` that are the organisation's clusters (others are left out,
    /// as if missing), for pages that show ids the ledger or usage keep: a page's worth (tens),
    /// read in one query.
    pub async fn names(
        &self,
        actor: &Actor,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, String>> {
        actor.authorize(Action::ResourcesRead)?;
        if ids.is_empty() {
            return Ok(std::collections::HashMap::new());
        }
        // One query for the page's ids: `$2, $3, …` after the organisation.
        let slots: Vec<String> = (2..ids.len() + 2).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT id, name FROM clusters WHERE org_id = $1 AND id IN ({})",
            slots.join(", ")
        );
        let rows: Vec<(String, String)> = db_run!(&self.db, |p| {
            let mut q = sqlx::query_as(&sql).bind(&actor.org_id);
            for id in ids {
                q = q.bind(id);
            }
            q.fetch_all(p).await
        })
        .map_err(DbError::from)?;
        Ok(rows.into_iter().collect())
    }

    /// The organisation's live clusters (not ending or ended), oldest first, at most `limit`.
    pub async fn live(&self, actor: &Actor, limit: i64) -> Result<Vec<ClusterView>> {
        actor.authorize(Action::ResourcesRead)?;
        let sql = format!(
            "SELECT {COLUMNS} FROM clusters WHERE org_id = $1 \
             AND status NOT IN ('terminating', 'terminated', 'failed') ORDER BY id LIMIT $2"
        );
        let rows: Vec<ClusterRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(&actor.org_id)
            .bind(limit.clamp(1, 1_000))
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        rows.iter().map(ClusterRow::view).collect()
    }

    /// The organisation's clusters, oldest first; `status` filters.
    pub async fn list(
        &self,
        actor: &Actor,
        status: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<ClusterView>> {
        actor.authorize(Action::ResourcesRead)?;
        let status = match status {
            Some(s) => Some(
                ClusterStatus::parse(s)
                    .ok_or_else(|| Error::validation("status", "a cluster status, like running"))?
                    .as_str(),
            ),
            None => None,
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM clusters WHERE org_id = $1 AND id > $2 AND ($3 IS NULL OR status = $3) ORDER BY id LIMIT $4"
        );
        let rows: Vec<ClusterRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(&actor.org_id)
            .bind(page.after_id())
            .bind(status)
            .bind(page.fetch_limit())
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        let views = rows
            .iter()
            .map(ClusterRow::view)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(views, page, |v| &v.id))
    }
}
