//! GraphQL shapes of the domain's values: the same fields as REST, camelCased.

use async_graphql::{Enum, SimpleObject};
use iocloud_control::{Role, accounts, api_keys, audit, invitations, orgs};
use iocloud_db::time::to_rfc3339;

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(name = "Role")]
pub enum GqlRole {
    Owner,
    Admin,
    Member,
    Billing,
    Viewer,
}

impl From<Role> for GqlRole {
    fn from(r: Role) -> Self {
        match r {
            Role::Owner => GqlRole::Owner,
            Role::Admin => GqlRole::Admin,
            Role::Member => GqlRole::Member,
            Role::Billing => GqlRole::Billing,
            Role::Viewer => GqlRole::Viewer,
        }
    }
}

impl From<GqlRole> for Role {
    fn from(r: GqlRole) -> Self {
        match r {
            GqlRole::Owner => Role::Owner,
            GqlRole::Admin => Role::Admin,
            GqlRole::Member => Role::Member,
            GqlRole::Billing => Role::Billing,
            GqlRole::Viewer => Role::Viewer,
        }
    }
}

fn opt_time(t: Option<i64>) -> Option<String> {
    t.map(to_rfc3339)
}

#[derive(SimpleObject)]
#[graphql(name = "User")]
pub struct GqlUser {
    id: String,
    email: String,
    name: String,
    is_operator: bool,
    created_at: String,
}

impl From<accounts::User> for GqlUser {
    fn from(u: accounts::User) -> Self {
        GqlUser {
            id: u.id,
            email: u.email,
            name: u.name,
            is_operator: u.is_operator,
            created_at: to_rfc3339(u.created_at),
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Organization")]
pub struct GqlOrganization {
    id: String,
    name: String,
    created_at: String,
    updated_at: String,
}

impl From<orgs::Organization> for GqlOrganization {
    fn from(o: orgs::Organization) -> Self {
        GqlOrganization {
            id: o.id,
            name: o.name,
            created_at: to_rfc3339(o.created_at),
            updated_at: to_rfc3339(o.updated_at),
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Membership")]
pub struct GqlMembership {
    organization: GqlOrganization,
    role: GqlRole,
}

impl From<orgs::Membership> for GqlMembership {
    fn from(m: orgs::Membership) -> Self {
        GqlMembership {
            organization: m.organization.into(),
            role: m.role.into(),
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Member")]
pub struct GqlMember {
    user_id: String,
    email: String,
    name: String,
    role: GqlRole,
    joined_at: String,
}

impl From<orgs::Member> for GqlMember {
    fn from(m: orgs::Member) -> Self {
        GqlMember {
            user_id: m.user_id,
            email: m.email,
            name: m.name,
            role: m.role.into(),
            joined_at: to_rfc3339(m.joined_at),
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Invitation")]
pub struct GqlInvitation {
    id: String,
    email: String,
    role: GqlRole,
    invited_by: String,
    status: String,
    created_at: String,
    expires_at: String,
    accepted_at: Option<String>,
    revoked_at: Option<String>,
}

impl From<invitations::Invitation> for GqlInvitation {
    fn from(i: invitations::Invitation) -> Self {
        GqlInvitation {
            id: i.id,
            email: i.email,
            role: i.role.into(),
            invited_by: i.invited_by,
            status: i.status.to_string(),
            created_at: to_rfc3339(i.created_at),
            expires_at: to_rfc3339(i.expires_at),
            accepted_at: opt_time(i.accepted_at),
            revoked_at: opt_time(i.revoked_at),
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "ApiKey")]
pub struct GqlApiKey {
    id: String,
    name: String,
    prefix: String,
    scopes: Vec<String>,
    created_by: String,
    status: String,
    created_at: String,
    expires_at: Option<String>,
    revoked_at: Option<String>,
    last_used_at: Option<String>,
}

impl From<api_keys::ApiKey> for GqlApiKey {
    fn from(k: api_keys::ApiKey) -> Self {
        GqlApiKey {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            scopes: k.scopes.iter().map(|s| s.as_str().to_string()).collect(),
            created_by: k.created_by,
            status: k.status.to_string(),
            created_at: to_rfc3339(k.created_at),
            expires_at: opt_time(k.expires_at),
            revoked_at: opt_time(k.revoked_at),
            last_used_at: opt_time(k.last_used_at),
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "CreatedApiKey")]
pub struct GqlCreatedApiKey {
    api_key: GqlApiKey,
    /// Shown once.
    secret: String,
}

impl From<api_keys::CreatedApiKey> for GqlCreatedApiKey {
    fn from(c: api_keys::CreatedApiKey) -> Self {
        GqlCreatedApiKey {
            api_key: c.api_key.into(),
            secret: c.secret,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "AuditEvent")]
pub struct GqlAuditEvent {
    id: String,
    actor_type: String,
    actor_id: Option<String>,
    action: String,
    target: Option<String>,
    status: i64,
    outcome: String,
    request_id: String,
    ip: Option<String>,
    created_at: String,
}

impl From<audit::AuditEvent> for GqlAuditEvent {
    fn from(e: audit::AuditEvent) -> Self {
        GqlAuditEvent {
            id: e.id,
            actor_type: e.actor_type,
            actor_id: e.actor_id,
            action: e.action,
            target: e.target,
            status: e.status,
            outcome: e.outcome,
            request_id: e.request_id,
            ip: e.ip,
            created_at: to_rfc3339(e.created_at),
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "AuthSession")]
pub struct GqlAuthSession {
    user: GqlUser,
    organization: GqlOrganization,
    role: GqlRole,
    access_token: String,
    token_type: String,
    expires_in: i64,
    refresh_token: String,
}

impl From<accounts::AuthSession> for GqlAuthSession {
    fn from(s: accounts::AuthSession) -> Self {
        GqlAuthSession {
            user: s.user.into(),
            organization: s.organization.into(),
            role: s.role.into(),
            access_token: s.access_token,
            token_type: s.token_type.to_string(),
            expires_in: s.expires_in,
            refresh_token: s.refresh_token,
        }
    }
}

/// The caller: a user (with `user` and `memberships`) or an API key (with `apiKey`).
#[derive(SimpleObject)]
#[graphql(name = "Me")]
pub struct GqlMe {
    kind: String,
    organization: GqlOrganization,
    user: Option<GqlUser>,
    role: Option<GqlRole>,
    memberships: Vec<GqlMembership>,
    api_key: Option<GqlApiKey>,
}

impl From<orgs::Me> for GqlMe {
    fn from(m: orgs::Me) -> Self {
        match m {
            orgs::Me::User {
                user,
                organization,
                role,
                memberships,
            } => GqlMe {
                kind: "user".into(),
                organization: organization.into(),
                user: Some(user.into()),
                role: Some(role.into()),
                memberships: memberships.into_iter().map(Into::into).collect(),
                api_key: None,
            },
            orgs::Me::ApiKey {
                api_key,
                organization,
            } => GqlMe {
                kind: "api_key".into(),
                organization: organization.into(),
                user: None,
                role: None,
                memberships: Vec::new(),
                api_key: Some(api_key.into()),
            },
        }
    }
}

/// One page of a list; pass `nextCursor` as `cursor` for the next.
#[derive(SimpleObject)]
#[graphql(concrete(name = "MemberPage", params(GqlMember)))]
#[graphql(concrete(name = "InvitationPage", params(GqlInvitation)))]
#[graphql(concrete(name = "ApiKeyPage", params(GqlApiKey)))]
#[graphql(concrete(name = "AuditEventPage", params(GqlAuditEvent)))]
#[graphql(concrete(name = "PostingPage", params(GqlPosting)))]
#[graphql(concrete(name = "HoldPage", params(GqlHold)))]
#[graphql(concrete(name = "DevicePage", params(super::providers::GqlDevice)))]
#[graphql(concrete(name = "DeviceEventPage", params(super::providers::GqlDeviceEvent)))]
#[graphql(concrete(name = "ClusterPage", params(super::clusters::GqlCluster)))]
pub struct GqlPage<T: async_graphql::OutputType> {
    items: Vec<T>,
    next_cursor: Option<String>,
}

impl<T: async_graphql::OutputType> GqlPage<T> {
    pub fn from_page<D>(page: iocloud_control::Page<D>) -> Self
    where
        T: From<D>,
    {
        GqlPage {
            items: page.items.into_iter().map(T::from).collect(),
            next_cursor: page.next_cursor,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Balance")]
pub struct GqlBalance {
    currency: String,
    available: String,
    held: String,
}

impl From<iocloud_control::billing::Balance> for GqlBalance {
    fn from(b: iocloud_control::billing::Balance) -> Self {
        GqlBalance {
            currency: b.currency.code().into(),
            available: b.available,
            held: b.held,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Posting")]
pub struct GqlPosting {
    id: String,
    transaction_id: String,
    account: String,
    currency: String,
    amount: String,
    kind: String,
    memo: String,
    created_at: String,
}

impl From<iocloud_control::billing::PostingView> for GqlPosting {
    fn from(p: iocloud_control::billing::PostingView) -> Self {
        GqlPosting {
            id: p.id,
            transaction_id: p.transaction_id,
            account: p.account,
            currency: p.currency,
            amount: p.amount,
            kind: p.kind,
            memo: p.memo,
            created_at: to_rfc3339(p.created_at),
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Hold")]
pub struct GqlHold {
    id: String,
    currency: String,
    amount: String,
    captured: String,
    released: String,
    remaining: String,
    status: String,
    reference: String,
    created_at: String,
    updated_at: String,
}

impl From<iocloud_control::billing::HoldView> for GqlHold {
    fn from(h: iocloud_control::billing::HoldView) -> Self {
        GqlHold {
            id: h.id,
            currency: h.currency.code().into(),
            amount: h.amount,
            captured: h.captured,
            released: h.released,
            remaining: h.remaining,
            status: h.status,
            reference: h.reference,
            created_at: to_rfc3339(h.created_at),
            updated_at: to_rfc3339(h.updated_at),
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "Correction")]
pub struct GqlCorrection {
    transaction_id: String,
    corrects: String,
    corrected_kind: String,
    reason: String,
    replayed: bool,
}

impl From<iocloud_control::billing::Correction> for GqlCorrection {
    fn from(c: iocloud_control::billing::Correction) -> Self {
        GqlCorrection {
            transaction_id: c.transaction_id,
            corrects: c.corrects,
            corrected_kind: c.corrected_kind,
            reason: c.reason,
            replayed: c.replayed,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "CreditGrant")]
pub struct GqlCreditGrant {
    transaction_id: String,
    org_id: String,
    amount: String,
    currency: String,
    reason: String,
    replayed: bool,
}

impl From<iocloud_control::billing::CreditGrant> for GqlCreditGrant {
    fn from(g: iocloud_control::billing::CreditGrant) -> Self {
        GqlCreditGrant {
            transaction_id: g.transaction_id,
            org_id: g.org_id,
            amount: g.amount,
            currency: g.currency.code().into(),
            reason: g.reason,
            replayed: g.replayed,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "UsageRow")]
pub struct GqlUsageRow {
    key: String,
    currency: String,
    gpu_hours: String,
    amount: String,
}

impl From<iocloud_control::usage::UsageRow> for GqlUsageRow {
    fn from(r: iocloud_control::usage::UsageRow) -> Self {
        GqlUsageRow {
            key: r.key,
            currency: r.currency.code().into(),
            gpu_hours: r.gpu_hours,
            amount: r.amount,
        }
    }
}

#[derive(SimpleObject)]
#[graphql(name = "InvoiceLine")]
pub struct GqlInvoiceLine {
    cluster_id: String,
    currency: String,
    gpu_hours: String,
    rate: String,
    amount: String,
    unpaid: String,
}

#[derive(SimpleObject)]
#[graphql(name = "InvoiceTotal")]
pub struct GqlInvoiceTotal {
    currency: String,
    amount: String,
    unpaid: String,
}

#[derive(SimpleObject)]
#[graphql(name = "Invoice")]
pub struct GqlInvoice {
    org_id: String,
    organization: String,
    month: String,
    lines: Vec<GqlInvoiceLine>,
    totals: Vec<GqlInvoiceTotal>,
}

impl From<iocloud_control::usage::Invoice> for GqlInvoice {
    fn from(i: iocloud_control::usage::Invoice) -> Self {
        GqlInvoice {
            org_id: i.org_id,
            organization: i.organization,
            month: i.month,
            lines: i
                .lines
                .into_iter()
                .map(|l| GqlInvoiceLine {
                    cluster_id: l.cluster_id,
                    currency: l.currency.code().into(),
                    gpu_hours: l.gpu_hours,
                    rate: l.rate,
                    amount: l.amount,
                    unpaid: l.unpaid,
                })
                .collect(),
            totals: i
                .totals
                .into_iter()
                .map(|t| GqlInvoiceTotal {
                    currency: t.currency.code().into(),
                    amount: t.amount,
                    unpaid: t.unpaid,
                })
                .collect(),
        }
    }
}
