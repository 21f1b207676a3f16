//! `iocloud list`: the organisation's clusters, following the API's cursor through every page.

use clap::Args;
use serde_json::Value;

use super::client::{Client, Conn, CtlResult, exit, seg};
use super::render;

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub(super) conn: Conn,
    /// Only clusters in this status.
    #[arg(long)]
    status: Option<String>,
}

pub async fn run(a: ListArgs) -> CtlResult<i32> {
    let client = Client::from_conn(&a.conn)?;
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = String::from("/v1/clusters?limit=200");
        if let Some(s) = &a.status {
            path.push_str(&format!("&status={}", seg(s)));
        }
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", seg(c)));
        }
        let page = client.get(&path).await?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        cursor = page["next_cursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            break;
        }
    }
    if a.conn.json() {
        render::json(&Value::from(items));
    } else {
        render::list(&items);
    }
    Ok(exit::OK)
}
