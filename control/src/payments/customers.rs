//! Each organisation's Stripe customer, made the first time it pays and kept: its cards and
//! payments sit under it in Stripe's dashboard, with our organisation's id in its metadata.

use iocloud_billing::rails::stripe::NewCustomer;
use iocloud_db::ids::OrgId;
use iocloud_db::time::now_micros;
use iocloud_db::{DbError, db_run};

use super::Payments;
use crate::Result;

impl Payments {
    /// The organisation's customer id (`cus_…`), made now if it has none. Two requests racing
    /// here make one customer: Stripe answers the second creation with the first's customer
    /// (same idempotency key), and the row is written once.
    pub(super) async fn customer_of(&self, org_id: &OrgId, name: &str) -> Result<String> {
        if let Some(id) = self.stored_customer(org_id).await? {
            return Ok(id);
        }
        let customer = NewCustomer {
            email: None,
            name: Some(name.to_string()),
            metadata: [("org_id".to_string(), org_id.to_string())].into(),
        };
        let made = self
            .rail()?
            .ensure_customer(&customer, &format!("iocloud-customer-{org_id}"))
            .await?;
        db_run!(&self.db, |p| sqlx::query(
            "INSERT INTO stripe_customers (org_id, customer_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (org_id) DO NOTHING"
        )
        .bind(org_id)
        .bind(&made)
        .bind(now_micros())
        .execute(p)
        .await
        .map(|_| ()))
        .map_err(DbError::from)?;
        // Whoever wrote first, the stored one is the organisation's.
        Ok(self.stored_customer(org_id).await?.unwrap_or(made))
    }

    async fn stored_customer(&self, org_id: &OrgId) -> Result<Option<String>> {
        Ok(db_run!(&self.db, |p| sqlx::query_scalar(
            "SELECT customer_id FROM stripe_customers WHERE org_id = $1"
        )
        .bind(org_id)
        .fetch_optional(p)
        .await)
        .map_err(DbError::from)?)
    }
}
