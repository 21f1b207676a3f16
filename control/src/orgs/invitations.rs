//! Invitations: an owner or admin invites an email address with a role; the invitee accepts
//! with the token from the email (see `mail` for how it is delivered). The database keeps only
//! the token's hash.

use iocloud_db::ids::OrgId;
use iocloud_db::time::{MICROS_PER_SEC, now_micros};
use iocloud_db::{DbError, Timestamp, db_run, ids::new_id, tx_run};
use serde::Serialize;
use utoipa::ToSchema;

use super::Membership;
use crate::permissions::Role;
use crate::types::Email;
use crate::{Action, Actor, Error, ErrorCode, Page, PageRequest, Result, secrets};

pub const INVITATION_DAYS: i64 = 7;
const TOKEN_PREFIX: &str = "ioinv_";

#[derive(Clone, Debug, Serialize, ToSchema)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::SimpleObject),
    graphql(name = "Invitation")
)]
pub struct Invitation {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub invited_by: String,
    /// `pending`, `accepted`, `revoked` or `expired`.
    pub status: &'static str,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub accepted_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Timestamp>,
    /// In the answer to sending it: whether it went by email (this server has a mail server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emailed: Option<bool>,
    /// In the answer to sending it, when no email was sent: the link to pass on to the
    /// invitee yourself. Shown once; it holds the invitation's token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accept_link: Option<String>,
}

#[derive(sqlx::FromRow)]
struct InvitationRow {
    id: String,
    org_id: OrgId,
    email: String,
    role: String,
    invited_by: String,
    created_at: i64,
    expires_at: i64,
    accepted_at: Option<i64>,
    revoked_at: Option<i64>,
}

const COLUMNS: &str =
    "id, org_id, email, role, invited_by, created_at, expires_at, accepted_at, revoked_at";

impl InvitationRow {
    fn into_invitation(self, now: i64) -> Invitation {
        let status = match (self.accepted_at, self.revoked_at) {
            (Some(_), _) => "accepted",
            (_, Some(_)) => "revoked",
            _ if self.expires_at <= now => "expired",
            _ => "pending",
        };
        Invitation {
            id: self.id,
            email: self.email,
            role: Role::parse(&self.role).unwrap_or(Role::Viewer),
            invited_by: self.invited_by,
            status,
            created_at: self.created_at.into(),
            expires_at: self.expires_at.into(),
            accepted_at: self.accepted_at.map(Timestamp::from),
            revoked_at: self.revoked_at.map(Timestamp::from),
            emailed: None,
            accept_link: None,
        }
    }
}

impl super::Orgs {
    pub async fn invite(&self, actor: &Actor, email: &str, role: Role) -> Result<Invitation> {
        actor.authorize(Action::InvitationsManage)?;
        let email = Email::parse(email)?;
        if role == Role::Owner && actor.role() != Some(Role::Owner) {
            return Err(Error::Forbidden("inviting an owner"));
        }
        actor.authorize_grant(role)?;
        let now = now_micros();
        let member: Option<String> = db_run!(&self.db, |p| {
            sqlx::query_scalar("SELECT u.id FROM users u JOIN memberships m ON m.user_id = u.id WHERE m.org_id = $1 AND u.email = $2")
                .bind(&actor.org_id).bind(email.as_str()).fetch_optional(p).await
        })
        .map_err(DbError::from)?;
        if member.is_some() {
            return Err(Error::Conflict {
                code: ErrorCode::AlreadyMember,
                message: format!("{email} is already a member"),
            });
        }
        let pending: Option<String> = db_run!(&self.db, |p| {
            sqlx::query_scalar(
                "SELECT id FROM invitations WHERE org_id = $1 AND email = $2 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $3",
            )
            .bind(&actor.org_id).bind(email.as_str()).bind(now).fetch_optional(p).await
        })
        .map_err(DbError::from)?;
        if let Some(id) = pending {
            return Err(Error::Conflict {
                code: ErrorCode::InvitationPending,
                message: format!(
                    "{email} already has a pending invitation ({id}); revoke it to send a new one"
                ),
            });
        }
        let org = self.directory.organization(&actor.org_id).await?;
        let id = new_id("inv");
        let token = secrets::generate(TOKEN_PREFIX);
        let expires_at = now + INVITATION_DAYS * 86_400 * MICROS_PER_SEC;
        let subject = format!("You are invited to {} on IO Cloud", org.name);
        // The token goes into the stored body only at delivery (`mail`); the database keeps
        // its hash, and the accept path finds the invitation by that.
        let link = crate::mail::SECRET_PLACEHOLDER;
        let body = format!(
            "You have been invited to join {} as {}.\n\nAccept within {INVITATION_DAYS} days: open {}/app/invitations/accept?token={link}\n(or POST /v1/invitations/accept with {{\"token\": \"{link}\"}}).\n",
            org.name,
            role.as_str(),
            self.public_url,
        );
        let mut tx = self.db.begin().await?;
        tx_run!(&mut tx, |c| {
            sqlx::query(
                "INSERT INTO invitations (id, org_id, email, role, token_hash, invited_by, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&id).bind(&actor.org_id).bind(email.as_str()).bind(role.as_str()).bind(secrets::hash(&token))
            .bind(actor.id()).bind(now).bind(expires_at)
            .execute(c).await.map(|r| r.rows_affected())
        })
        .map_err(DbError::from)?;
        crate::mail::queue_in(&mut tx, email.as_str(), &subject, &body, Some(&token)).await?;
        tx.commit().await?;
        if let Err(e) = self.outbox.deliver().await {
            // The message waits in the outbox for the next delivery.
            tracing::warn!(error = %e, "could not deliver the invitation email yet");
        }
        let mut invitation = self.invitation(actor, &id).await?;
        let emailed = self.outbox.sends_email();
        invitation.emailed = Some(emailed);
        if !emailed {
            // Nobody else will tell the invitee: the inviter passes the link on.
            invitation.accept_link = Some(format!(
                "{}/app/invitations/accept?token={token}",
                self.public_url
            ));
        }
        Ok(invitation)
    }

    pub async fn invitations(&self, actor: &Actor, page: &PageRequest) -> Result<Page<Invitation>> {
        actor.authorize(Action::InvitationsRead)?;
        let sql = format!(
            "SELECT {COLUMNS} FROM invitations WHERE org_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        );
        let rows: Vec<InvitationRow> = db_run!(&self.db, |p| {
            sqlx::query_as(&sql)
                .bind(&actor.org_id)
                .bind(page.after_id())
                .bind(page.fetch_limit())
                .fetch_all(p)
                .await
        })
        .map_err(DbError::from)?;
        let now = now_micros();
        Ok(Page::from_rows(rows, page, |r| &r.id).map(|r| r.into_invitation(now)))
    }

    pub async fn invitation(&self, actor: &Actor, id: &str) -> Result<Invitation> {
        actor.authorize(Action::InvitationsRead)?;
        let sql = format!("SELECT {COLUMNS} FROM invitations WHERE org_id = $1 AND id = $2");
        let row: Option<InvitationRow> = db_run!(&self.db, |p| {
            sqlx::query_as(&sql)
                .bind(&actor.org_id)
                .bind(id)
                .fetch_optional(p)
                .await
        })
        .map_err(DbError::from)?;
        Ok(row
            .ok_or(Error::NotFound("invitation"))?
            .into_invitation(now_micros()))
    }

    pub async fn revoke_invitation(&self, actor: &Actor, id: &str) -> Result<Invitation> {
        actor.authorize(Action::InvitationsManage)?;
        let inv = self.invitation(actor, id).await?;
        if inv.status == "accepted" {
            return Err(Error::Conflict {
                code: ErrorCode::InvitationUsed,
                message: "this invitation was already accepted".into(),
            });
        }
        db_run!(&self.db, |p| {
            sqlx::query("UPDATE invitations SET revoked_at = $1 WHERE org_id = $2 AND id = $3 AND revoked_at IS NULL AND accepted_at IS NULL")
                .bind(now_micros()).bind(&actor.org_id).bind(id).execute(p).await.map(|r| r.rows_affected())
        })
        .map_err(DbError::from)?;
        self.invitation(actor, id).await
    }

    /// The signed-in user joins the inviting organisation. The invitation must be addressed to
    /// the user's email; any other token is answered as unknown.
    pub async fn accept_invitation(&self, actor: &Actor, token: &str) -> Result<Membership> {
        let user_id = actor.user_id().ok_or_else(|| {
            Error::validation(
                "authorization",
                "invitations are accepted by users, not API keys",
            )
        })?;
        let user = self.directory.user(user_id).await?;
        let mut tx = self.db.begin().await?;
        let (org_id, role) = join_in(&mut tx, user_id, &user.email, token).await?;
        tx.commit().await?;
        Ok(Membership {
            organization: self.directory.organization(&org_id).await?,
            role,
        })
    }
}

/// Makes `user_id` (whose email is `email`) a member by the invitation `token` names, in `tx`:
/// the invitation must be for that email, pending, and is spent here. Another email's
/// invitation reads as missing.
pub(crate) async fn join_in(
    tx: &mut iocloud_db::Tx,
    user_id: &str,
    email: &str,
    token: &str,
) -> Result<(OrgId, Role)> {
    let sql = format!("SELECT {COLUMNS} FROM invitations WHERE token_hash = $1");
    let row: Option<InvitationRow> = tx_run!(tx, |c| {
        sqlx::query_as(&sql)
            .bind(secrets::hash(token))
            .fetch_optional(c)
            .await
    })
    .map_err(DbError::from)?;
    let row = row
        .filter(|r| r.email == email)
        .ok_or(Error::NotFound("invitation"))?;
    let now = now_micros();
    let org_id = row.org_id.clone();
    let inv = row.into_invitation(now);
    match inv.status {
        "accepted" => {
            return Err(Error::Conflict {
                code: ErrorCode::InvitationUsed,
                message: "this invitation was already accepted".into(),
            });
        }
        "revoked" => {
            return Err(Error::Conflict {
                code: ErrorCode::InvitationRevoked,
                message: "this invitation was revoked".into(),
            });
        }
        "expired" => {
            return Err(Error::Conflict {
                code: ErrorCode::InvitationExpired,
                message: "this invitation has expired; ask for a new one".into(),
            });
        }
        _ => {}
    }
    let claimed = tx_run!(tx, |c| {
        sqlx::query("UPDATE invitations SET accepted_at = $1, accepted_by = $2 WHERE id = $3 AND accepted_at IS NULL AND revoked_at IS NULL")
            .bind(now).bind(user_id).bind(&inv.id).execute(c).await.map(|r| r.rows_affected())
    })
    .map_err(DbError::from)?;
    if claimed == 0 {
        return Err(Error::Conflict {
            code: ErrorCode::InvitationUsed,
            message: "this invitation was already accepted".into(),
        });
    }
    let joined = tx_run!(tx, |c| {
        sqlx::query("INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (org_id, user_id) DO NOTHING")
            .bind(&org_id).bind(user_id).bind(inv.role.as_str()).bind(now).execute(c).await.map(|r| r.rows_affected())
    })
    .map_err(DbError::from)?;
    if joined == 0 {
        return Err(Error::Conflict {
            code: ErrorCode::AlreadyMember,
            message: "you are already a member of this organisation".into(),
        });
    }
    Ok((org_id, inv.role))
}
