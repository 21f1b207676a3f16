//! Sign-up, login, token refresh with rotation and reuse detection, logout, and turning a
//! bearer credential into an [`Actor`].

use std::sync::{Arc, LazyLock};

use argon2::Argon2;
use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use iocloud_db::ids::{OrgId, new_id};
use iocloud_db::time::{MICROS_PER_SEC, now_micros};
use iocloud_db::{Db, DbError, Timestamp, db_run, tx_run};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api_keys::ApiKeys;
use crate::billing::Billing;
use crate::cache::{Cache, Forget};
use crate::directory::Directory;
use crate::jwt::JwtKeys;
use crate::login_guard::LoginGuard;
use crate::orgs::Organization;
use crate::permissions::{Role, Scope};
use crate::types::{Email, Password, parse_name};
use crate::{Actor, Error, ErrorCode, Principal, Result, api_keys, secrets};

pub const REFRESH_TOKEN_DAYS: i64 = 30;
const REFRESH_PREFIX: &str = "iort_";

#[derive(Clone, Debug, Serialize, ToSchema, sqlx::FromRow)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "User")
)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: String,
    /// A platform operator (runs the cloud); granted only on the server's machine.
    pub is_operator: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// What sign-up, login and refresh answer. Its `Debug` hides the tokens.
#[derive(Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "AuthSession")
)]
pub struct AuthSession {
    pub user: User,
    pub organization: Organization,
    pub role: Role,
    /// A JWT for `Authorization: Bearer`, valid 15 minutes.
    pub access_token: String,
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Single use: trade it at `/v1/auth/refresh` for a new pair.
    pub refresh_token: String,
}

impl std::fmt::Debug for AuthSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSession")
            .field("user", &self.user.id)
            .field("organization", &self.organization.id)
            .field("role", &self.role)
            .field("access_token", &"***")
            .field("refresh_token", &"***")
            .finish()
    }
}

pub struct SignUp<'a> {
    pub email: &'a str,
    pub password: &'a str,
    pub name: &'a str,
    /// The organisation to create and own; not with `invitation`.
    pub org_name: Option<&'a str>,
    /// An invitation's token (for this email): the account joins that organisation instead
    /// of creating one.
    pub invitation: Option<&'a str>,
}

// Verifying against this when the email is unknown makes a wrong email cost as much as a
// wrong password, so timing does not reveal which accounts exist.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_password_blocking("not a real password at all"));

fn hash_password_blocking(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
}

async fn hash_password(password: Password) -> Result<String> {
    tokio::task::spawn_blocking(move || hash_password_blocking(password.expose()))
        .await
        .map_err(|e| Error::Internal(format!("hash task: {e}")))
}

async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

#[derive(sqlx::FromRow)]
struct LoginRow {
    id: String,
    password_hash: String,
}

#[derive(sqlx::FromRow)]
struct RefreshRow {
    id: String,
    session_id: String,
    expires_at: i64,
    used_at: Option<i64>,
    user_id: String,
    org_id: OrgId,
    revoked_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct AccessRow {
    role: String,
    is_operator: bool,
}

/// Users and their sessions: sign-up, login, refresh, logout, and who a bearer is.
#[derive(Clone)]
pub struct Accounts {
    db: Db,
    jwt: JwtKeys,
    cache: Arc<Cache>,
    login_guard: LoginGuard,
    directory: Directory,
    keys: ApiKeys,
    /// For the sign-up credit.
    billing: Billing,
}

impl Accounts {
    pub(crate) fn new(
        db: Db,
        jwt: JwtKeys,
        cache: Arc<Cache>,
        login_guard: LoginGuard,
        directory: Directory,
        keys: ApiKeys,
        billing: Billing,
    ) -> Self {
        Accounts {
            db,
            jwt,
            cache,
            login_guard,
            directory,
            keys,
            billing,
        }
    }

    /// Creates a user and a session: in the organisation they create (and own), or in the one
    /// an invitation for their email brings them into.
    pub async fn sign_up(&self, input: SignUp<'_>) -> Result<AuthSession> {
        let email = Email::parse(input.email)?;
        let password = Password::parse(input.password)?;
        let name = parse_name("name", input.name)?;
        let org_name = match (input.org_name.map(str::trim), input.invitation) {
            (Some(org_name), None) => Some(parse_name("org_name", org_name)?),
            (None | Some(""), Some(_)) => None,
            (Some(_), Some(_)) => {
                return Err(Error::validation(
                    "org_name",
                    "give an organisation to create or an invitation to accept, not both",
                ));
            }
            (None, None) => {
                return Err(Error::validation(
                    "org_name",
                    "name the organisation to create (or sign up with an invitation)",
                ));
            }
        };
        let password_hash = hash_password(password).await?;
        let now = now_micros();
        let user_id = new_id("usr");
        let org_id = OrgId::new();
        let mut tx = self.db.begin().await?;
        let inserted = tx_run!(&mut tx, |c| {
            sqlx::query("INSERT INTO users (id, email, name, password_hash, is_operator, created_at) VALUES ($1, $2, $3, $4, FALSE, $5) ON CONFLICT (email) DO NOTHING")
                .bind(&user_id).bind(email.as_str()).bind(&name).bind(&password_hash).bind(now)
                .execute(c).await.map(|r| r.rows_affected())
        })
        .map_err(DbError::from)?;
        if inserted == 0 {
            return Err(Error::Conflict {
                code: ErrorCode::EmailTaken,
                message: "an account with this email already exists; log in instead".into(),
            });
        }
        let org_id = match (&org_name, input.invitation) {
            (None, Some(token)) => {
                crate::orgs::invitations::join_in(&mut tx, &user_id, email.as_str(), token.trim())
                    .await?
                    .0
            }
            // Refused above without an organisation name: here there is one.
            _ => {
                let org_name = org_name.as_deref().unwrap_or_default();
                tx_run!(&mut tx, |c| {
                    sqlx::query("INSERT INTO organizations (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3)")
                        .bind(&org_id).bind(org_name).bind(now).execute(&mut *c).await?;
                    sqlx::query("INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, 'owner', $3)")
                        .bind(&org_id).bind(&user_id).bind(now).execute(&mut *c).await.map(|r| r.rows_affected())
                })
                .map_err(DbError::from)?;
                org_id
            }
        };
        let refresh = new_session(&mut tx, &user_id, &org_id).await?;
        tx.commit().await?;
        tracing::info!(user_id, %org_id, "user signed up");
        if org_name.is_some() {
            self.billing.grant_signup_credit(&org_id).await;
        }
        self.session_answer(&user_id, &org_id, refresh).await
    }

    /// Email and password to a session in `org_id`, or in the user's oldest organisation.
    pub async fn log_in(
        &self,
        email: &str,
        password: &str,
        org_id: Option<&str>,
    ) -> Result<AuthSession> {
        // A malformed email is answered like a wrong one: no hint about what exists.
        let email = Email::parse(email).map_err(|_| Error::InvalidCredentials)?;
        self.login_guard.count(email.as_str()).await?;
        let row: Option<LoginRow> = db_run!(&self.db, |p| {
            sqlx::query_as("SELECT id, password_hash FROM users WHERE email = $1")
                .bind(email.as_str())
                .fetch_optional(p)
                .await
        })
        .map_err(DbError::from)?;
        let (user_id, hash) = match row {
            Some(r) => (Some(r.id), r.password_hash),
            None => (None, DUMMY_HASH.clone()),
        };
        let ok = verify_password(password.to_string(), hash).await;
        let user_id = match (ok, user_id) {
            (true, Some(id)) => id,
            _ => return Err(Error::InvalidCredentials),
        };
        self.login_guard.clear(email.as_str()).await;
        let org_id = self.pick_org(&user_id, org_id).await?;
        let mut tx = self.db.begin().await?;
        let refresh = new_session(&mut tx, &user_id, &org_id).await?;
        tx.commit().await?;
        self.session_answer(&user_id, &org_id, refresh).await
    }

    /// Trades a refresh token for a new pair (rotation). A token used twice means it leaked:
    /// the whole session is revoked. `org_id` switches the session to another organisation.
    pub async fn refresh(&self, refresh_token: &str, org_id: Option<&str>) -> Result<AuthSession> {
        if !refresh_token.starts_with(REFRESH_PREFIX) {
            return Err(Error::InvalidToken);
        }
        let hash = secrets::hash(refresh_token);
        let now = now_micros();
        let mut tx = self.db.begin().await?;
        let row: Option<RefreshRow> = tx_run!(&mut tx, |c| {
            sqlx::query_as(
                "SELECT rt.id, rt.session_id, rt.expires_at, rt.used_at, s.user_id, s.org_id, s.revoked_at \
                 FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id WHERE rt.token_hash = $1",
            )
            .bind(&hash).fetch_optional(c).await
        })
        .map_err(DbError::from)?;
        let row = row.ok_or(Error::InvalidToken)?;
        if row.revoked_at.is_some() {
            return Err(Error::InvalidToken);
        }
        let claimed = tx_run!(&mut tx, |c| {
            sqlx::query("UPDATE refresh_tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
                .bind(now)
                .bind(&row.id)
                .execute(c)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(DbError::from)?;
        if row.used_at.is_some() || claimed == 0 {
            revoke_session(&mut tx, &row.session_id, now).await?;
            tx.commit().await?;
            self.cache
                .invalidate(Forget::Session(&row.session_id))
                .await;
            tracing::warn!(
                session_id = row.session_id,
                user_id = row.user_id,
                "refresh token reused; session revoked"
            );
            return Err(Error::RefreshTokenReused);
        }
        if row.expires_at <= now {
            return Err(Error::TokenExpired);
        }
        let org_id = match org_id {
            Some(wanted) if row.org_id != *wanted => {
                let org = self.pick_org(&row.user_id, Some(wanted)).await?;
                tx_run!(&mut tx, |c| {
                    sqlx::query("UPDATE sessions SET org_id = $1 WHERE id = $2")
                        .bind(&org)
                        .bind(&row.session_id)
                        .execute(c)
                        .await
                        .map(|r| r.rows_affected())
                })
                .map_err(DbError::from)?;
                org
            }
            _ => row.org_id.clone(),
        };
        let refresh = issue_refresh(&mut tx, &row.session_id).await?;
        tx.commit().await?;
        self.session_answer_in(&row.user_id, &org_id, &row.session_id, refresh)
            .await
    }

    /// Ends the caller's session: its refresh tokens and access tokens stop working at once.
    pub async fn log_out(&self, actor: &Actor) -> Result<()> {
        let Principal::User { session_id, .. } = &actor.principal else {
            return Err(Error::validation(
                "authorization",
                "log out with a user's access token; revoke API keys instead",
            ));
        };
        let mut tx = self.db.begin().await?;
        revoke_session(&mut tx, session_id, now_micros()).await?;
        tx.commit().await?;
        // Connections holding this session's token (GraphQL WebSockets) end their work now.
        self.cache.invalidate(Forget::Session(session_id)).await;
        Ok(())
    }

    /// Resolves a bearer credential (an access token or an API key) to the acting [`Actor`].
    pub async fn authenticate(&self, bearer: &str) -> Result<Actor> {
        if bearer.starts_with(api_keys::KEY_PREFIX) {
            return self.authenticate_api_key(bearer).await;
        }
        let claims = self.jwt.verify(bearer)?;
        let row: Option<AccessRow> = db_run!(&self.db, |p| {
            sqlx::query_as(
                "SELECT m.role, u.is_operator FROM sessions s \
                 JOIN users u ON u.id = s.user_id \
                 JOIN memberships m ON m.user_id = s.user_id AND m.org_id = $2 \
                 WHERE s.id = $1 AND s.user_id = $3 AND s.revoked_at IS NULL",
            )
            .bind(&claims.sid)
            .bind(&claims.org)
            .bind(&claims.sub)
            .fetch_optional(p)
            .await
        })
        .map_err(DbError::from)?;
        let row = row.ok_or(Error::InvalidToken)?;
        let role =
            Role::parse(&row.role).ok_or_else(|| Error::corrupt("memberships.role", &row.role))?;
        Ok(Actor {
            principal: Principal::User {
                user_id: claims.sub,
                session_id: claims.sid,
                role,
            },
            org_id: OrgId::trusted(claims.org),
            is_operator: row.is_operator,
        })
    }

    /// Grants or removes the platform-operator flag. Only the `iocloud admin` CLI calls this.
    pub async fn set_operator(&self, email: &str, operator: bool) -> Result<User> {
        let email = Email::parse(email)?;
        let n = db_run!(&self.db, |p| {
            sqlx::query("UPDATE users SET is_operator = $1 WHERE email = $2")
                .bind(operator)
                .bind(email.as_str())
                .execute(p)
                .await
                .map(|r| r.rows_affected())
        })
        .map_err(DbError::from)?;
        if n == 0 {
            return Err(Error::NotFound("user"));
        }
        let id: String = db_run!(&self.db, |p| {
            sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
                .bind(email.as_str())
                .fetch_one(p)
                .await
        })
        .map_err(DbError::from)?;
        self.directory.user(&id).await
    }

    async fn pick_org(&self, user_id: &str, wanted: Option<&str>) -> Result<OrgId> {
        let found: Option<OrgId> = match wanted {
            Some(org) => db_run!(&self.db, |p| {
                sqlx::query_scalar("SELECT org_id FROM memberships WHERE user_id = $1 AND org_id = $2")
                    .bind(user_id).bind(org).fetch_optional(p).await
            }),
            None => db_run!(&self.db, |p| {
                sqlx::query_scalar("SELECT org_id FROM memberships WHERE user_id = $1 ORDER BY created_at, org_id LIMIT 1")
                    .bind(user_id).fetch_optional(p).await
            }),
        }
        .map_err(DbError::from)?;
        match (found, wanted) {
            (Some(org), _) => Ok(org),
            (None, Some(_)) => Err(Error::NotFound("organization")),
            (None, None) => Err(Error::Conflict {
                code: ErrorCode::NoOrganization,
                message: "you belong to no organisation; accept an invitation first".into(),
            }),
        }
    }

    async fn session_answer(
        &self,
        user_id: &str,
        org_id: &OrgId,
        refresh: (String, String),
    ) -> Result<AuthSession> {
        let (session_id, token) = refresh;
        self.session_answer_in(user_id, org_id, &session_id, token)
            .await
    }

    async fn session_answer_in(
        &self,
        user_id: &str,
        org_id: &OrgId,
        session_id: &str,
        refresh_token: String,
    ) -> Result<AuthSession> {
        let user = self.directory.user(user_id).await?;
        let organization = self.directory.organization(org_id).await?;
        let role = self
            .directory
            .role_of(org_id, user_id)
            .await?
            .ok_or(Error::NotFound("organization"))?;
        let (access_token, _) = self.jwt.issue(user_id, org_id, session_id)?;
        Ok(AuthSession {
            user,
            organization,
            role,
            access_token,
            token_type: "Bearer",
            expires_in: crate::jwt::ACCESS_TOKEN_SECS,
            refresh_token,
        })
    }

    async fn authenticate_api_key(&self, secret: &str) -> Result<Actor> {
        let key = self.keys.by_secret(secret).await?;
        let scopes = key.scopes.iter().filter_map(|s| Scope::parse(s)).collect();
        Ok(Actor {
            principal: Principal::ApiKey {
                key_id: key.id,
                scopes,
                maker_user_id: key.maker_user_id,
                maker_role: key.maker_role,
            },
            org_id: OrgId::trusted(key.org_id),
            is_operator: false,
        })
    }
}

/// Opens a session (a refresh-token family) and its first refresh token: (session id, token).
async fn new_session(
    tx: &mut iocloud_db::Tx,
    user_id: &str,
    org_id: &OrgId,
) -> Result<(String, String)> {
    let session_id = new_id("ses");
    tx_run!(tx, |c| {
        sqlx::query(
            "INSERT INTO sessions (id, user_id, org_id, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&session_id)
        .bind(user_id)
        .bind(org_id)
        .bind(now_micros())
        .execute(c)
        .await
        .map(|r| r.rows_affected())
    })
    .map_err(DbError::from)?;
    let token = issue_refresh(tx, &session_id).await?;
    Ok((session_id, token))
}

async fn issue_refresh(tx: &mut iocloud_db::Tx, session_id: &str) -> Result<String> {
    let token = secrets::generate(REFRESH_PREFIX);
    let now = now_micros();
    tx_run!(tx, |c| {
        sqlx::query("INSERT INTO refresh_tokens (id, session_id, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(new_id("rtk")).bind(session_id).bind(secrets::hash(&token)).bind(now)
            .bind(now + REFRESH_TOKEN_DAYS * 86_400 * MICROS_PER_SEC)
            .execute(c).await.map(|r| r.rows_affected())
    })
    .map_err(DbError::from)?;
    Ok(token)
}

async fn revoke_session(tx: &mut iocloud_db::Tx, session_id: &str, now: i64) -> Result<()> {
    tx_run!(tx, |c| {
        sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(session_id)
            .execute(c)
            .await
            .map(|r| r.rows_affected())
    })
    .map_err(DbError::from)?;
    Ok(())
}
