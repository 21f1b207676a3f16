//! One default among an organisation's rows of a kind (its saved cards, its payout wallets):
//! the one used when none is named. Setting it clears the others in the same statement;
//! removing it hands the role to the newest left, so an organisation with any has a default.

use iocloud_db::ids::OrgId;
use iocloud_db::{DbError, Tx, tx_run};

use crate::Result;

/// The tables that keep one default per organisation (`id`, `org_id`, `is_default`,
/// `created_at`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Defaulted {
    SavedCards,
    PayoutWallets,
}

impl Defaulted {
    fn table(self) -> &'static str {
        match self {
            Defaulted::SavedCards => "saved_cards",
            Defaulted::PayoutWallets => "payout_wallets",
        }
    }
}

/// Makes row `id` of `org` the default.
pub(crate) async fn make_default_in(
    tx: &mut Tx,
    kind: Defaulted,
    org: &OrgId,
    id: &str,
) -> Result<()> {
    let sql = format!(
        "UPDATE {} SET is_default = (id = $2) WHERE org_id = $1",
        kind.table()
    );
    tx_run!(tx, |c| sqlx::query(&sql)
        .bind(org)
        .bind(id)
        .execute(c)
        .await
        .map(|_| ()))
    .map_err(DbError::from)?;
    Ok(())
}

/// Deletes row `id` of `org`; if it was the default, the newest left becomes the default.
pub(crate) async fn remove_in(
    tx: &mut Tx,
    kind: Defaulted,
    org: &OrgId,
    id: &str,
    was_default: bool,
) -> Result<()> {
    let table = kind.table();
    let delete = format!("DELETE FROM {table} WHERE id = $1 AND org_id = $2");
    tx_run!(tx, |c| sqlx::query(&delete)
        .bind(id)
        .bind(org)
        .execute(c)
        .await
        .map(|_| ()))
    .map_err(DbError::from)?;
    if was_default {
        let promote = format!(
            "UPDATE {table} SET is_default = TRUE WHERE id = \
             (SELECT id FROM {table} WHERE org_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1)"
        );
        tx_run!(tx, |c| sqlx::query(&promote)
            .bind(org)
            .execute(c)
            .await
            .map(|_| ()))
        .map_err(DbError::from)?;
    }
    Ok(())
}
