//! Roles, API-key scopes and the one table that says who may do what. Every service method
//! asks [`crate::Actor::authorize`], which reads only this table.

use serde::{Deserialize, Serialize};

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[cfg_attr(
    feature = "graphql",
    derive(async_graphql::Enum),
    graphql(name = "Role")
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Member,
    Billing,
    Viewer,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Owner,
        Role::Admin,
        Role::Member,
        Role::Billing,
        Role::Viewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Billing => "billing",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// What an API key may do: `read` < `write` < `admin`; a key holds one or more.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Everything a caller can ask to do inside an organisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    OrgRead,
    OrgUpdate,
    MembersRead,
    MembersManage,
    InvitationsRead,
    InvitationsManage,
    ApiKeysRead,
    ApiKeysManage,
    AuditRead,
    BillingRead,
    BillingManage,
    ResourcesRead,
    ResourcesWrite,
    /// Placement and price quotes: each is written and kept for a while, and is the first step
    /// of renting or paying, so it needs write rights though it changes nothing else.
    QuotesCreate,
    /// The organisation's SSH public keys: every member sees what lets people into its nodes.
    SshKeysRead,
    /// Adding and removing SSH keys: those who may change clusters, whose nodes take them.
    SshKeysManage,
}

impl Action {
    pub const ALL: [Action; 16] = [
        Action::OrgRead,
        Action::OrgUpdate,
        Action::MembersRead,
        Action::MembersManage,
        Action::InvitationsRead,
        Action::InvitationsManage,
        Action::ApiKeysRead,
        Action::ApiKeysManage,
        Action::AuditRead,
        Action::BillingRead,
        Action::BillingManage,
        Action::ResourcesRead,
        Action::ResourcesWrite,
        Action::QuotesCreate,
        Action::SshKeysRead,
        Action::SshKeysManage,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Action::OrgRead => "reading the organisation",
            Action::OrgUpdate => "changing the organisation",
            Action::MembersRead => "listing members",
            Action::MembersManage => "managing members",
            Action::InvitationsRead => "listing invitations",
            Action::InvitationsManage => "managing invitations",
            Action::ApiKeysRead => "listing API keys",
            Action::ApiKeysManage => "managing API keys",
            Action::AuditRead => "reading the audit log",
            Action::BillingRead => "reading billing",
            Action::BillingManage => "managing billing",
            Action::ResourcesRead => "reading clusters and devices",
            Action::ResourcesWrite => "changing clusters and devices",
            Action::QuotesCreate => "creating quotes",
            Action::SshKeysRead => "listing SSH keys",
            Action::SshKeysManage => "managing SSH keys",
        }
    }

    /// The API-key scope an action needs.
    pub fn scope(self) -> Scope {
        use Action::*;
        match self {
            OrgRead | MembersRead | InvitationsRead | ApiKeysRead | BillingRead | ResourcesRead
            | SshKeysRead => Scope::Read,
            ResourcesWrite | QuotesCreate | SshKeysManage => Scope::Write,
            OrgUpdate | MembersManage | InvitationsManage | ApiKeysManage | AuditRead
            | BillingManage => Scope::Admin,
        }
    }
}

/// The permission table: which roles may perform an action.
pub fn role_allows(role: Role, action: Action) -> bool {
    use Action::*;
    use Role::*;
    match action {
        OrgRead | MembersRead | ResourcesRead | SshKeysRead => true,
        OrgUpdate | MembersManage | InvitationsRead | InvitationsManage | ApiKeysRead
        | ApiKeysManage | AuditRead => matches!(role, Owner | Admin),
        BillingRead => matches!(role, Owner | Admin | Billing),
        BillingManage => matches!(role, Owner | Billing),
        ResourcesWrite | SshKeysManage => matches!(role, Owner | Admin | Member),
        // Those who rent (placement quotes) or pay (price quotes in the paying currency).
        QuotesCreate => matches!(role, Owner | Admin | Member | Billing),
    }
}

/// Whether a key holding `scopes` may perform `action`. Scopes nest: `admin` implies `write`
/// implies `read`.
pub fn scopes_allow(scopes: &[Scope], action: Action) -> bool {
    scopes.iter().any(|s| *s >= action.scope())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_may_do_everything_viewers_only_read() {
        for a in Action::ALL {
            assert!(role_allows(Role::Owner, a), "{a:?}");
            assert_eq!(
                role_allows(Role::Viewer, a),
                matches!(
                    a,
                    Action::OrgRead
                        | Action::MembersRead
                        | Action::ResourcesRead
                        | Action::SshKeysRead
                ),
                "{a:?}"
            );
        }
    }

    #[test]
    fn scopes_nest() {
        assert!(scopes_allow(&[Scope::Admin], Action::ResourcesWrite));
        assert!(scopes_allow(&[Scope::Write], Action::ResourcesRead));
        assert!(!scopes_allow(&[Scope::Read], Action::ResourcesWrite));
        assert!(!scopes_allow(&[Scope::Read], Action::QuotesCreate));
        assert!(scopes_allow(&[Scope::Write], Action::QuotesCreate));
        assert!(!scopes_allow(&[Scope::Write], Action::ApiKeysManage));
        assert!(scopes_allow(&[Scope::Write], Action::SshKeysManage));
        assert!(!scopes_allow(&[Scope::Read], Action::SshKeysManage));
        assert!(!scopes_allow(&[], Action::OrgRead));
    }

    #[test]
    fn names_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
