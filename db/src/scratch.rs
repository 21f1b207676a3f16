//! Throwaway databases for tests and benchmarks: a temp SQLite file, or a fresh Postgres
//! database created on a server and dropped afterwards, so runs can go in parallel and leave
//! nothing behind.

use sqlx::Connection;

/// A database that lives as long as this value.
pub struct ScratchDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    drop_pg: Option<(String, String)>,
}

impl ScratchDb {
    /// A temp SQLite file.
    pub fn sqlite() -> std::io::Result<ScratchDb> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}/iocloud.db", dir.path().display());
        Ok(ScratchDb {
            url,
            _dir: Some(dir),
            drop_pg: None,
        })
    }

    /// A new database on the Postgres server at `admin_url` (which must allow CREATE DATABASE).
    pub async fn postgres(admin_url: &str) -> Result<ScratchDb, sqlx::Error> {
        let name = format!("iocloud_scratch_{:016x}", rand::random::<u64>());
        let mut conn = sqlx::PgConnection::connect(admin_url).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        Ok(ScratchDb {
            url: with_database(admin_url, &name),
            _dir: None,
            drop_pg: Some((admin_url.to_string(), name)),
        })
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.drop_pg.take() {
            // Drop cannot await: use a small runtime of its own on another thread.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async {
                    if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut c)
                                .await;
                    }
                });
            })
            .join();
        }
    }
}

/// `postgres://u@h:5432/admin?x` → `postgres://u@h:5432/NAME?x`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let authority_end = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_names_are_swapped() {
        use super::with_database;
        assert_eq!(
            with_database("postgres://root@127.0.0.1:5432/test", "x"),
            "postgres://root@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://root@h/test?sslmode=disable", "x"),
            "postgres://root@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://root@h", "x"),
            "postgres://root@h/x"
        );
    }
}
