use crate::permissions::{Action, Role, Scope, role_allows, scopes_allow};
use crate::{Error, Result};

/// Who is calling, and in which organisation. Every tenant-scoped service method takes one.
#[derive(Clone, Debug)]
pub struct Actor {
    pub principal: Principal,
    /// The one organisation this request acts in.
    pub org_id: iocloud_db::ids::OrgId,
    pub is_operator: bool,
}

#[derive(Clone, Debug)]
pub enum Principal {
    /// A signed-in user, through an access token of session `session_id`.
    User {
        user_id: String,
        session_id: String,
        role: Role,
    },
    /// An API key bound to the actor's organisation. It may do what its scopes allow and its
    /// maker's current role allows too, so demoting or removing the maker narrows or ends it.
    ApiKey {
        key_id: String,
        scopes: Vec<Scope>,
        /// The user the key answers to: its creator, or the user behind the key that made it.
        maker_user_id: String,
        /// The maker's role in the organisation, read when the key authenticated.
        maker_role: Role,
    },
}

impl Actor {
    /// Refuses with 403 `forbidden` unless the permission table allows `action` (for a key:
    /// its scopes and its maker's current role both do).
    pub fn authorize(&self, action: Action) -> Result<()> {
        let allowed = match &self.principal {
            Principal::User { role, .. } => role_allows(*role, action),
            Principal::ApiKey {
                scopes, maker_role, ..
            } => scopes_allow(scopes, action) && role_allows(*maker_role, action),
        };
        if allowed {
            Ok(())
        } else {
            Err(Error::Forbidden(action.describe()))
        }
    }

    /// Refuses with 403 `forbidden` to hand out `role` (by invitation or role change) when it
    /// carries a permission this actor does not hold: nobody grants more than they have.
    pub fn authorize_grant(&self, role: Role) -> Result<()> {
        let exceeds = Action::ALL
            .into_iter()
            .any(|a| role_allows(role, a) && self.authorize(a).is_err());
        if exceeds {
            Err(Error::Forbidden(
                "granting a role with rights you do not hold",
            ))
        } else {
            Ok(())
        }
    }

    pub fn user_id(&self) -> Option<&str> {
        match &self.principal {
            Principal::User { user_id, .. } => Some(user_id),
            Principal::ApiKey { .. } => None,
        }
    }

    /// The user's role, or `None` for an API key.
    pub fn role(&self) -> Option<Role> {
        match &self.principal {
            Principal::User { role, .. } => Some(*role),
            Principal::ApiKey { .. } => None,
        }
    }

    /// `("user", id)` or `("api_key", id)`, for the audit log.
    pub fn audit_identity(&self) -> (&'static str, &str) {
        match &self.principal {
            Principal::User { user_id, .. } => ("user", user_id),
            Principal::ApiKey { key_id, .. } => ("api_key", key_id),
        }
    }

    /// The id recorded as creator of what this actor makes.
    pub fn id(&self) -> &str {
        self.audit_identity().1
    }
}
