//! `iocloud ssh-keys …`: the organisation's SSH public keys, which its clusters' nodes let in
//! as root.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::billing::{all, text};
use super::client::{Client, Conn, CtlError, CtlResult, exit, seg};
use super::render;

#[derive(Args, Debug)]
pub struct SshKeysArgs {
    #[command(flatten)]
    pub(super) conn: Conn,
    #[command(subcommand)]
    command: SshKeysCommand,
}

#[derive(Subcommand, Debug)]
enum SshKeysCommand {
    /// Add a public key (a `.pub` file): nodes started from now on let its holder in as root.
    Add {
        /// What to call the key, e.g. laptop (a name like that also names the identity file,
        /// ~/.ssh/laptop, in the commands that log in to a cluster's nodes).
        #[arg(long)]
        name: String,
        /// The public key's file, e.g. ~/.ssh/id_ed25519.pub (never the private key).
        #[arg(long)]
        file: PathBuf,
    },
    /// The organisation's SSH keys: id, name, type and fingerprint.
    List,
    /// Remove a key (`ssh_…`): nodes started from now on do not let it in.
    Remove {
        /// The key's id (`ssh_…`), as `iocloud ssh-keys list` shows it.
        id: String,
    },
}

pub async fn run(a: SshKeysArgs) -> CtlResult<i32> {
    let client = Client::from_conn(&a.conn)?;
    let json = a.conn.json();
    let shown = match a.command {
        SshKeysCommand::Add { name, file } => {
            let public_key = std::fs::read_to_string(&file)
                .map_err(|e| CtlError::new(exit::USAGE, format!("{}: {e}", file.display())))?;
            let key = client
                .post(
                    "/v1/ssh-keys",
                    &json!({ "name": name, "public_key": public_key }),
                )
                .await?;
            if !json {
                println!("added {}", line(&key));
            }
            key
        }
        SshKeysCommand::List => {
            let items = all(&client, "/v1/ssh-keys").await?;
            if !json {
                if items.is_empty() {
                    println!(
                        "no SSH keys: add one with `iocloud ssh-keys add --name NAME --file ~/.ssh/id_ed25519.pub`"
                    );
                }
                for k in &items {
                    println!("{}", line(k));
                }
            }
            Value::from(items)
        }
        SshKeysCommand::Remove { id } => {
            client.delete(&format!("/v1/ssh-keys/{}", seg(&id))).await?;
            if !json {
                println!("removed {id}");
            }
            json!({ "id": id, "removed": true })
        }
    };
    if json {
        render::json(&shown);
    }
    Ok(exit::OK)
}

fn line(k: &Value) -> String {
    format!(
        "{}  {:<20}  {:<26}  {}",
        text(&k["id"]),
        text(&k["name"]),
        text(&k["key_type"]),
        text(&k["fingerprint"])
    )
}
