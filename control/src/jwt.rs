//! Access tokens: HS256 JWTs that live 15 minutes and name their signing key in `kid`, so keys
//! can rotate: every key in the `jwt_keys` table verifies, the newest signs.

use iocloud_db::ids::OrgId;
use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use iocloud_db::{Db, db_run, time::now_micros};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Error, Result};

pub const ACCESS_TOKEN_SECS: i64 = 15 * 60;
const ISSUER: &str = "iocloud";

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The organisation the token acts in.
    pub org: String,
    /// The session (refresh-token family); revoking it ends this token too.
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
}

struct Key {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// The signing keys. `Debug` shows key ids only.
#[derive(Clone)]
pub struct JwtKeys {
    current: String,
    keys: Arc<HashMap<String, Key>>,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("current", &self.current)
            .finish_non_exhaustive()
    }
}

impl JwtKeys {
    /// Signs with `secret` (from `IOCLOUD_JWT_KEY_FILE`) and still verifies every key in the
    /// database, or — without a configured secret — with the newest database key, generating
    /// and storing one on first start so that every replica shares it.
    pub async fn load(db: &Db, configured: Option<&[u8]>) -> Result<JwtKeys> {
        let mut rows: Vec<(String, String)> = db_run!(db, |p| {
            sqlx::query_as("SELECT kid, secret FROM jwt_keys ORDER BY created_at DESC, kid")
                .fetch_all(p)
                .await
        })
        .map_err(iocloud_db::DbError::from)?;
        let current = if let Some(secret) = configured {
            if secret.len() < 32 {
                return Err(Error::Internal(
                    "the JWT key file must hold at least 32 bytes".into(),
                ));
            }
            let kid = hex::encode(&Sha256::digest(secret)[..8]);
            rows.retain(|(k, _)| *k != kid);
            rows.insert(0, (kid.clone(), STANDARD.encode(secret)));
            kid
        } else if let Some((kid, _)) = rows.first() {
            kid.clone()
        } else {
            let mut secret = [0u8; 32];
            rand::rng().fill_bytes(&mut secret);
            let kid = hex::encode(&Sha256::digest(secret)[..8]);
            let encoded = STANDARD.encode(secret);
            db_run!(db, |p| {
                sqlx::query("INSERT INTO jwt_keys (kid, secret, created_at) VALUES ($1, $2, $3) ON CONFLICT (kid) DO NOTHING")
                    .bind(&kid)
                    .bind(&encoded)
                    .bind(now_micros())
                    .execute(p)
                    .await
                    .map(|r| r.rows_affected())
            })
            .map_err(iocloud_db::DbError::from)?;
            // Another replica may have raced us: sign with whatever key won.
            return Box::pin(JwtKeys::load(db, None)).await;
        };
        let mut keys = HashMap::new();
        for (kid, secret) in rows {
            let bytes = STANDARD
                .decode(secret)
                .map_err(|e| Error::Internal(format!("bad jwt key {kid}: {e}")))?;
            keys.insert(
                kid,
                Key {
                    encoding: EncodingKey::from_secret(&bytes),
                    decoding: DecodingKey::from_secret(&bytes),
                },
            );
        }
        Ok(JwtKeys {
            current,
            keys: Arc::new(keys),
        })
    }

    pub fn current_kid(&self) -> &str {
        &self.current
    }

    /// A signed access token; returns it with its expiry (µs).
    pub fn issue(&self, user_id: &str, org_id: &OrgId, session_id: &str) -> Result<(String, i64)> {
        let now = now_micros() / 1_000_000;
        let claims = Claims {
            sub: user_id.to_string(),
            org: org_id.to_string(),
            sid: session_id.to_string(),
            iat: now,
            exp: now + ACCESS_TOKEN_SECS,
            iss: ISSUER.to_string(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.current.clone());
        let key = &self.keys[&self.current].encoding;
        let token = jsonwebtoken::encode(&header, &claims, key)
            .map_err(|e| Error::Internal(format!("jwt encode: {e}")))?;
        Ok((token, claims.exp * 1_000_000))
    }

    /// Checks signature, issuer and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Error::InvalidToken)?;
        let key = header
            .kid
            .as_ref()
            .and_then(|k| self.keys.get(k))
            .ok_or(Error::InvalidToken)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => Error::TokenExpired,
                _ => Error::InvalidToken,
            })
    }

    /// Signs arbitrary claims with the current key; tests use it to forge expired tokens.
    pub fn sign_claims(&self, claims: &Claims) -> Result<String> {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.current.clone());
        jsonwebtoken::encode(&header, claims, &self.keys[&self.current].encoding)
            .map_err(|e| Error::Internal(format!("jwt encode: {e}")))
    }
}
