//! What the crate's own database tests share: scratch databases on both engines and a ledger
//! over one.

use iocloud_db::scratch::ScratchDb;
use iocloud_db::{DatabaseUrl, Db};

use crate::Ledger;

/// A SQLite database, and a Postgres one when `IOCLOUD_TEST_POSTGRES_URL` names a server.
pub(crate) async fn scratch_databases() -> Vec<ScratchDb> {
    let mut dbs = vec![ScratchDb::sqlite().unwrap()];
    if let Ok(url) = std::env::var("IOCLOUD_TEST_POSTGRES_URL") {
        dbs.push(ScratchDb::postgres(&url).await.unwrap());
    }
    dbs
}

/// A ledger over `scratch`, migrated.
pub(crate) async fn ledger(scratch: &ScratchDb) -> Ledger {
    let db = Db::connect(&DatabaseUrl::new(scratch.url.clone()))
        .await
        .unwrap();
    db.migrate().await.unwrap();
    Ledger::new(db)
}
