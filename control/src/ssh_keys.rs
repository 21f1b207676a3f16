//! SSH keys: the public keys an organisation registers, which its clusters' nodes let in as
//! `root`. Every member sees them; those who may change clusters add and remove them. A key
//! answers to the user who added it (the user behind an API key, when a key added it): nodes get
//! only the keys of users who are still members, so a departed member's key stops reaching new
//! nodes without anyone removing it.
//!
//! A key is checked as OpenSSH reads it: the type word, then the base64 of the key blob, whose
//! own first field must name the same type, with the fields that type has and nothing after
//! them. The fingerprint is OpenSSH's (`ssh-keygen -l`): `SHA256:` and the unpadded base64 of
//! the blob's SHA-256.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use iocloud_db::ids::{OrgId, is_valid, new_id};
use iocloud_db::time::now_micros;
use iocloud_db::{Db, DbError, Timestamp, db_run};
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::{Action, Actor, Error, ErrorCode, Page, PageRequest, Principal, Result};

/// The key types taken, as a public key's first word names them.
pub const KEY_TYPES: [&str; 6] = [
    "ssh-ed25519",
    "sk-ssh-ed25519@openssh.com",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
];
/// The longest name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Keys an organisation keeps at most: every one of them goes into every node's bootstrap.
pub const MAX_KEYS: i64 = 100;
/// RSA keys shorter than this are refused (as OpenSSH itself now refuses 1024-bit ones).
pub const MIN_RSA_BITS: u32 = 2048;
const MAX_RSA_BITS: u32 = 16_384;
/// The longest key line taken, in bytes (a 16384-bit RSA key is about 2.8 kB).
const MAX_LINE_BYTES: usize = 8 * 1024;
const ID_PREFIX: &str = "ssh";

/// An SSH public key of the organisation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "SshKey")
)]
pub struct SshKey {
    pub id: String,
    /// 1 to 64 characters, unique in the organisation.
    pub name: String,
    /// The key's type, as its first word: `ssh-ed25519`, `ssh-rsa`, `ecdsa-sha2-nistp256`, …
    pub key_type: String,
    /// The key as OpenSSH writes it (`type base64`), without the comment it was given with.
    pub public_key: String,
    /// As `ssh-keygen -l` shows it: `SHA256:` and the unpadded base64 of the key's SHA-256.
    pub fingerprint: String,
    /// The user who added it (the user behind the API key that did, for a key).
    pub created_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

impl SshKey {
    /// The key's line in a node's `authorized_keys`: the key, then its name as the comment.
    pub fn authorized_line(&self) -> String {
        format!("{} {}", self.public_key, self.name)
    }
}

/// A public key that passed every check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    key_type: &'static str,
    blob: Vec<u8>,
}

impl PublicKey {
    /// A key as `~/.ssh/id_*.pub` holds it: `type base64 [comment]`, on one line. Anything else
    /// is refused (422 `validation_failed` on `public_key`) saying what is wrong with it.
    pub fn parse(raw: &str) -> Result<PublicKey> {
        let bad = |why: String| Error::validation("public_key", why);
        let line = raw.trim();
        if line.is_empty() {
            return Err(bad(
                "paste a public key, like the contents of ~/.ssh/id_ed25519.pub".into(),
            ));
        }
        // Said before anything that would quote the text back.
        if line.contains("PRIVATE KEY") {
            return Err(bad(
                "this is a private key: keep it to yourself and paste the public one (the .pub file)"
                    .into(),
            ));
        }
        if line.len() > MAX_LINE_BYTES {
            return Err(bad(format!("must be at most {MAX_LINE_BYTES} bytes")));
        }
        if line.contains(['\n', '\r']) {
            return Err(bad("must be one key, on one line".into()));
        }
        let mut words = line.split_ascii_whitespace();
        let first = words.next().unwrap_or_default();
        let key_type = KEY_TYPES.into_iter().find(|t| *t == first).ok_or_else(|| {
            bad(format!(
                "starts with {:?}; a public key starts with its type: {}",
                clip(first),
                KEY_TYPES.join(", ")
            ))
        })?;
        let data = words
            .next()
            .ok_or_else(|| bad("has no key after its type".into()))?;
        let blob = STANDARD
            .decode(data)
            .map_err(|_| bad("the key after the type is not valid base64".into()))?;
        check_blob(key_type, &blob).map_err(bad)?;
        Ok(PublicKey { key_type, blob })
    }

    pub fn key_type(&self) -> &'static str {
        self.key_type
    }

    /// `SHA256:…`, as `ssh-keygen -l` shows it.
    pub fn fingerprint(&self) -> String {
        format!(
            "SHA256:{}",
            STANDARD_NO_PAD.encode(Sha256::digest(&self.blob))
        )
    }

    /// The key as OpenSSH writes it, without a comment: `type base64`.
    pub fn openssh(&self) -> String {
        format!("{} {}", self.key_type, STANDARD.encode(&self.blob))
    }
}

/// At most 40 characters of `s`, for quoting it back.
fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

/// The fields of a key blob, each a big-endian `u32` length and that many bytes.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn next(&mut self) -> std::result::Result<&'a [u8], String> {
        let short = || "the key is cut short".to_string();
        let (len, rest) = self.0.split_first_chunk::<4>().ok_or_else(short)?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(short());
        }
        let (field, rest) = rest.split_at(len);
        self.0 = rest;
        Ok(field)
    }

    fn end(&self) -> std::result::Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err("the key has bytes after its last field".into())
        }
    }
}

/// A positive SSH `mpint` without its leading zeros, or why it is not one.
fn positive(mpint: &[u8], what: &str) -> std::result::Result<Vec<u8>, String> {
    if mpint.first().is_some_and(|b| b & 0x80 != 0) {
        return Err(format!("the key's {what} is negative"));
    }
    let digits: Vec<u8> = mpint.iter().copied().skip_while(|b| *b == 0).collect();
    if digits.is_empty() {
        return Err(format!("the key's {what} is zero"));
    }
    Ok(digits)
}

/// Checks a key blob against the type its line names: the same type inside, and the fields
/// that type has (sizes, curve, RSA modulus length), with nothing after them.
fn check_blob(key_type: &str, blob: &[u8]) -> std::result::Result<(), String> {
    let mut fields = Fields(blob);
    let inner = fields.next()?;
    if inner != key_type.as_bytes() {
        return Err(format!(
            "the key inside is {:?}, not the {key_type} its line starts with",
            clip(&String::from_utf8_lossy(inner))
        ));
    }
    match key_type {
        "ssh-ed25519" | "sk-ssh-ed25519@openssh.com" => {
            if fields.next()?.len() != 32 {
                return Err("an Ed25519 key is 32 bytes".into());
            }
            if key_type.starts_with("sk-") && !fields.next()?.starts_with(b"ssh:") {
                return Err("a security key's application must start with ssh:".into());
            }
        }
        "ssh-rsa" => {
            let exponent = positive(fields.next()?, "exponent")?;
            let modulus = positive(fields.next()?, "modulus")?;
            if exponent.last().is_some_and(|b| b & 1 == 0) || exponent == [1u8] {
                return Err("the key's exponent is not an RSA exponent".into());
            }
            let bits = (modulus.len() as u32 - 1) * 8 + (8 - modulus[0].leading_zeros());
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "an RSA key must have at least {MIN_RSA_BITS} bits; this one has {bits} \
                     (make an Ed25519 key: ssh-keygen -t ed25519)"
                ));
            }
            if bits > MAX_RSA_BITS {
                return Err(format!("an RSA key may have at most {MAX_RSA_BITS} bits"));
            }
        }
        _ => {
            // ecdsa-sha2-nistp256, -384 or -521: the curve again, then an uncompressed point.
            let curve = key_type.trim_start_matches("ecdsa-sha2-");
            if fields.next()? != curve.as_bytes() {
                return Err(format!("the key's curve is not {curve}"));
            }
            let coordinate = match curve {
                "nistp256" => 32,
                "nistp384" => 48,
                _ => 66,
            };
            let point = fields.next()?;
            if point.len() != 1 + 2 * coordinate || point[0] != 4 {
                return Err(format!("the key's point is not a point of {curve}"));
            }
        }
    }
    fields.end()
}

/// A key's name: trimmed, 1 to 64 characters, nothing that shows other than it reads.
fn parse_key_name(raw: &str) -> Result<String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(Error::validation("name", "must not be empty"));
    }
    if s.chars().count() > MAX_NAME_CHARS {
        return Err(Error::validation(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    crate::types::check_visible_text("name", s)?;
    Ok(s.to_string())
}

/// Whether `name` can stand for a file in `~/.ssh/` as it is, in a command to copy.
pub fn is_file_name(name: &str) -> bool {
    !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: String,
    name: String,
    key_type: String,
    public_key: String,
    fingerprint: String,
    created_by: String,
    created_at: i64,
    /// The maker, when they are still a member (read only where it is joined in).
    #[sqlx(default)]
    member_id: Option<String>,
}

impl KeyRow {
    fn into_key(self) -> SshKey {
        SshKey {
            id: self.id,
            name: self.name,
            key_type: self.key_type,
            public_key: self.public_key,
            fingerprint: self.fingerprint,
            created_by: self.created_by,
            created_at: self.created_at.into(),
        }
    }

    fn key(&self) -> SshKey {
        SshKey {
            id: self.id.clone(),
            name: self.name.clone(),
            key_type: self.key_type.clone(),
            public_key: self.public_key.clone(),
            fingerprint: self.fingerprint.clone(),
            created_by: self.created_by.clone(),
            created_at: self.created_at.into(),
        }
    }
}

const COLUMNS: &str = "id, name, key_type, public_key, fingerprint, created_by, created_at";

/// The organisation's SSH keys: added, listed, read and removed.
#[derive(Clone)]
pub struct SshKeys {
    db: Db,
}

impl SshKeys {
    pub(crate) fn new(db: Db) -> Self {
        SshKeys { db }
    }

    /// Adds a key. The same key twice in an organisation answers 409 `ssh_key_exists`, a name
    /// already used 409 `name_taken`.
    pub async fn add(&self, actor: &Actor, name: &str, public_key: &str) -> Result<SshKey> {
        actor.authorize(Action::SshKeysManage)?;
        let name = parse_key_name(name)?;
        let key = PublicKey::parse(public_key)?;
        let fingerprint = key.fingerprint();
        let held: i64 = db_run!(&self.db, |p| sqlx::query_scalar(
            "SELECT COUNT(*) FROM ssh_keys WHERE org_id = $1"
        )
        .bind(&actor.org_id)
        .fetch_one(p)
        .await)
        .map_err(DbError::from)?;
        if held >= MAX_KEYS {
            return Err(Error::validation(
                "public_key",
                format!("an organisation keeps at most {MAX_KEYS} SSH keys; remove one first"),
            ));
        }
        let user_id = match &actor.principal {
            Principal::User { user_id, .. } => user_id.clone(),
            Principal::ApiKey { maker_user_id, .. } => maker_user_id.clone(),
        };
        let id = new_id(ID_PREFIX);
        let now = now_micros();
        let inserted = db_run!(&self.db, |p| sqlx::query(
            "INSERT INTO ssh_keys (id, org_id, name, key_type, public_key, fingerprint, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )
        .bind(&id)
        .bind(&actor.org_id)
        .bind(&name)
        .bind(key.key_type())
        .bind(key.openssh())
        .bind(&fingerprint)
        .bind(&user_id)
        .bind(now)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from);
        match inserted {
            Ok(_) => {}
            // A unique index refused it: say which.
            Err(DbError::Conflict(_)) => {
                return Err(self.conflict(&actor.org_id, &name, &fingerprint).await?);
            }
            Err(e) => return Err(e.into()),
        }
        self.get(actor, &id).await
    }

    /// Why a key could not be added: its fingerprint or its name is there already.
    async fn conflict(&self, org_id: &OrgId, name: &str, fingerprint: &str) -> Result<Error> {
        let same: Option<String> = db_run!(&self.db, |p| sqlx::query_scalar(
            "SELECT name FROM ssh_keys WHERE org_id = $1 AND fingerprint = $2"
        )
        .bind(org_id)
        .bind(fingerprint)
        .fetch_optional(p)
        .await)
        .map_err(DbError::from)?;
        Ok(match same {
            Some(held_as) => Error::conflict(
                ErrorCode::SshKeyExists,
                format!("the organisation has this key already, named {held_as:?} ({fingerprint})"),
            ),
            None => Error::conflict(
                ErrorCode::NameTaken,
                format!("another SSH key of the organisation is named {name:?}"),
            ),
        })
    }

    /// The organisation's keys, oldest first.
    pub async fn list(&self, actor: &Actor, page: &PageRequest) -> Result<Page<SshKey>> {
        actor.authorize(Action::SshKeysRead)?;
        let sql = format!(
            "SELECT {COLUMNS} FROM ssh_keys WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        );
        let rows: Vec<KeyRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(&actor.org_id)
            .bind(page.after_id())
            .bind(page.fetch_limit())
            .fetch_all(p)
            .await)
        .map_err(DbError::from)?;
        Ok(Page::from_rows(rows, page, |r| &r.id).map(KeyRow::into_key))
    }

    /// One key of the organisation; another organisation's is not found.
    pub async fn get(&self, actor: &Actor, id: &str) -> Result<SshKey> {
        actor.authorize(Action::SshKeysRead)?;
        if !is_valid(ID_PREFIX, id) {
            return Err(Error::NotFound("ssh key"));
        }
        let sql = format!("SELECT {COLUMNS} FROM ssh_keys WHERE org_id = $1 AND id = $2");
        let row: Option<KeyRow> = db_run!(&self.db, |p| sqlx::query_as(&sql)
            .bind(&actor.org_id)
            .bind(id)
            .fetch_optional(p)
            .await)
        .map_err(DbError::from)?;
        Ok(row.ok_or(Error::NotFound("ssh key"))?.into_key())
    }

    /// Removes a key: nodes started from now on do not get it (nodes running keep theirs until
    /// they end). Answers the key removed.
    pub async fn remove(&self, actor: &Actor, id: &str) -> Result<SshKey> {
        actor.authorize(Action::SshKeysManage)?;
        let key = self.get(actor, id).await?;
        let removed = db_run!(&self.db, |p| sqlx::query(
            "DELETE FROM ssh_keys WHERE org_id = $1 AND id = $2"
        )
        .bind(&actor.org_id)
        .bind(id)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(DbError::from)?;
        if removed == 0 {
            // Removed by another request in between.
            return Err(Error::NotFound("ssh key"));
        }
        Ok(key)
    }
}

/// The keys a cluster's nodes let in: those `ids` names, or all the organisation's when it
/// names none, in both cases only those of users who are still members. With `strict` (a new
/// spec), an id that names no such key is refused on `ssh_key_ids`; otherwise (nodes of a
/// cluster made before) it is passed over, as a key removed since.
pub(crate) async fn for_nodes(
    db: &Db,
    org_id: &OrgId,
    ids: Option<&[String]>,
    strict: bool,
) -> Result<Vec<SshKey>> {
    let sql = "SELECT k.id, k.name, k.key_type, k.public_key, k.fingerprint, k.created_by, k.created_at, \
               m.user_id AS member_id \
               FROM ssh_keys k LEFT JOIN memberships m ON m.org_id = k.org_id AND m.user_id = k.created_by \
               WHERE k.org_id = $1 ORDER BY k.id";
    let rows: Vec<KeyRow> = db_run!(db, |p| sqlx::query_as(sql).bind(org_id).fetch_all(p).await)
        .map_err(DbError::from)?;
    let Some(ids) = ids else {
        return Ok(rows
            .into_iter()
            .filter(|r| r.member_id.is_some())
            .map(KeyRow::into_key)
            .collect());
    };
    let mut keys: Vec<SshKey> = Vec::new();
    for id in ids {
        let found = rows.iter().find(|r| &r.id == id);
        match found {
            Some(r) if r.member_id.is_some() && !keys.iter().any(|k| &k.id == id) => {
                keys.push(r.key());
            }
            // Named twice: given once.
            Some(r) if r.member_id.is_some() => {}
            Some(r) if strict => {
                return Err(Error::validation(
                    "ssh_key_ids",
                    format!(
                        "the SSH key {:?} belongs to a user who has left the organisation",
                        r.name
                    ),
                ));
            }
            None if strict => {
                return Err(Error::validation(
                    "ssh_key_ids",
                    format!("{:?} is not an SSH key of this organisation", clip(id)),
                ));
            }
            _ => {}
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made by `ssh-keygen`, with the fingerprints `ssh-keygen -l` printed for them.
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFZ18vQjB/JOrHVQGYEtqRNr8WT0xxxBKBU4GvwpXVtO ada@laptop";
    const RSA_2048: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCuKVHIPy9hp6NMr3zJwTFotK8Rs60WVRW9U82pMX961LT109Noi/rrQB1eKBMFJ7NCNZXjsAi24My8vQ+YcwziBnURras/JBUCDvfHznHwVd7ULexp7KPPSgSU2fooAjaiZbSPz3Yg/n0esTZKeDzstLD91wEqwMJC60+jqHvbdQQJ2N5iam9dfRrGwhytiWDImBOrgaucHP/WhfSl6GJ4cwI9lN8/yyzQWeKV371AEJwHJIctP4qH9w5Wm06EhJkA/qYLuj/Gi4wbgfrmHtI1bbA14x2BZjthUcy/+l1z3BEmNMHVaxMbw0vAx5nq87e6OTwreqsgL8Y25u76Ij+Z t";
    const RSA_1024: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCybK8SyqYZV8ocDGBhbsaaaPLX08THIgbrmT6TOvepkxHBzZpTu+4Gm01aab1xJPiZqyt+S2NaLYatRF4cOBDF1Y+PcdXhajDXVWJhxBs1n23KAGz1MGY9CePDZg30cyWsu+hczXWcEb7+JjwWGtF4EzMcoTB16CWJPuame7t33Q== t";
    const P256: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBPGa2ql44dkIPDI8F3kuoi5REgKLCgzD/mgqEbXkD7zEmXGciO6CojyukVfj1nnxYH1rSsuQLu7lUJ5sidmJOVE= t";
    const P384: &str = "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBDcpY793ITtLeEXIDxOOGZ1ycczZzfnGtmHe9/BN6d+SHJVQhjgmcm5SWeB3bk+yOxgHroRTEOS9R3j3IjIAe3Ax+Jk2W8ZrHmObcluyW6zJVPpUHsMjlFZi1X7cxjvd0g== t";
    const P521: &str = "ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBADgvCpopiuDTTcVYdWwGdwYQ3GZk3OwAsQg8BalgZsZ+Je1IKUEYHIhkzpS9kjEsaZeDNDpCGNVPOPhsOMtp6MPWgCczHKfUcCBjCdES55YZYr1GIWuv1B0fffGaTRRD1lqy2K+WjlJwIjw5KFxuMuV3FnqDINzndUZQ1T/JrZKCejPVg== t";
    const SK_ED25519: &str = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gAAAABHNzaDo= yubikey";

    #[test]
    fn keys_parse_with_openssh_fingerprints() {
        for (line, key_type, fingerprint) in [
            (
                ED25519,
                "ssh-ed25519",
                "SHA256:iONZVzoqQeXkW0AW5eYZVxgHQcbYyI9hpja/N6KbZI0",
            ),
            (
                RSA_2048,
                "ssh-rsa",
                "SHA256:Ym1W3tA+7ddu5BJCNx+4DNIOLvndq4Vj65N+pXdC8rY",
            ),
            (
                P256,
                "ecdsa-sha2-nistp256",
                "SHA256:C+OdtoakEBQFqax8APAIBj6h+Fc211bjhBGe8fLzrD8",
            ),
            (
                P384,
                "ecdsa-sha2-nistp384",
                "SHA256:F8aF1Sxka3L7iPzU/JRZQEQOpV2y4DgH/y+Ds3BYqSk",
            ),
            (
                P521,
                "ecdsa-sha2-nistp521",
                "SHA256:C7YgcNRR4e0f1adnlra43R55GCPJNIrKvrvtEKyh6FE",
            ),
            (
                SK_ED25519,
                "sk-ssh-ed25519@openssh.com",
                "SHA256:nX0hpi5mKbTIJ10yBq5/sLQhiI1Y0RBAqN0drDdgJWs",
            ),
        ] {
            let key = PublicKey::parse(&format!("  {line}\n")).unwrap();
            assert_eq!(key.key_type(), key_type);
            assert_eq!(key.fingerprint(), fingerprint, "{line}");
            // Written back without the comment, the blob unchanged.
            let written = key.openssh();
            assert!(line.starts_with(&written), "{written}");
            assert_eq!(PublicKey::parse(&written).unwrap(), key);
        }
    }

    #[test]
    fn what_is_not_a_key_is_refused_saying_why() {
        let ed25519_blob = ED25519.split(' ').nth(1).unwrap();
        let refused = |line: &str| match PublicKey::parse(line) {
            Err(Error::Validation { field, message, .. }) => {
                assert_eq!(field, "public_key");
                message
            }
            other => panic!("{line}: {other:?}"),
        };
        assert!(refused("").contains("paste a public key"));
        assert!(refused("ssh-dss AAAAB3NzaC1kc3M=").contains("starts with"));
        assert!(refused(&format!("ssh-rsa {ed25519_blob}")).contains("the key inside is"));
        assert!(refused("ssh-ed25519 not*base64").contains("base64"));
        assert!(refused("ssh-ed25519").contains("no key"));
        assert!(refused(RSA_1024).contains("at least 2048 bits; this one has 1024"));
        assert!(refused(&format!("{ED25519}\n{ED25519}")).contains("one line"));
        assert!(
            refused("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA\n-----END OPENSSH PRIVATE KEY-----")
                .contains("private key")
        );
        // Cut short, and with bytes after the end.
        let mut blob = STANDARD.decode(ed25519_blob).unwrap();
        blob.pop();
        assert!(refused(&format!("ssh-ed25519 {}", STANDARD.encode(&blob))).contains("cut short"));
        blob.extend([0, 0]);
        assert!(refused(&format!("ssh-ed25519 {}", STANDARD.encode(&blob))).contains("after"));
    }

    #[test]
    fn names_and_identity_files() {
        assert_eq!(parse_key_name("  laptop ").unwrap(), "laptop");
        assert!(parse_key_name("").is_err());
        assert!(parse_key_name(&"k".repeat(65)).is_err());
        assert!(parse_key_name(&"k".repeat(64)).is_ok());
        assert!(parse_key_name("lap\u{202E}top").is_err());
        assert!(is_file_name("id_ed25519"));
        assert!(is_file_name("work.laptop-2"));
        assert!(!is_file_name("my laptop"));
        assert!(!is_file_name("../x"));
        assert!(!is_file_name("-oProxyCommand=x"));
    }
}
