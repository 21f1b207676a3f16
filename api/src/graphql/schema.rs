//! Query, mutation and subscription roots: each resolver a few lines over the same domain
//! service the REST handler calls.

use async_graphql::{Context, ErrorExtensions, Object, Subscription};
use futures::StreamExt;
use futures::stream::BoxStream;
use iocloud_control::accounts::SignUp;
use iocloud_control::api_keys::NewApiKey;
use iocloud_control::{Actor, Control, Error as DomainError, Page, PageRequest};

use iocloud_control::Role;
use iocloud_control::accounts::AuthSession;
use iocloud_control::api_keys::{ApiKey, CreatedApiKey};
use iocloud_control::audit::AuditEvent;
use iocloud_control::billing::{Balance, Correction, CreditGrant, HoldView, PostingView};
use iocloud_control::invitations::Invitation;
use iocloud_control::orgs::{Me, Member, Membership, Organization};
use iocloud_control::usage::{Invoice, UsageRow};

use crate::error::ApiError;

type GqlResult<T> = async_graphql::Result<T>;

/// A domain or API error as a GraphQL error carrying the same `code` as REST.
pub fn gql_error(e: impl Into<ApiError>) -> async_graphql::Error {
    let e: ApiError = e.into();
    if e.code() == iocloud_control::ErrorCode::Internal {
        tracing::error!(error = ?e, "graphql resolver failed");
    }
    let problem = e.problem();
    async_graphql::Error::new(e.detail()).extend_with(|_, ext| {
        ext.set("code", problem.code.as_str());
        ext.set("status", problem.status);
        if let Some(f) = &problem.field {
            ext.set("field", f.clone());
        }
        if let Some(c) = &problem.capacity {
            ext.set("constraint", c.constraint.clone());
            ext.set("availableGpus", c.available_gpus);
            if let Some(n) = &c.nearest {
                ext.set("nearest", format!("{} {}", n.field, n.value));
            }
        }
        if let Some(q) = &problem.quota {
            ext.set("limit", q.limit);
            ext.set("allowed", q.allowed.clone());
            ext.set("inUse", q.in_use.clone());
            ext.set("requested", q.requested.clone());
        }
    })
}

pub(super) fn control<'a>(ctx: &Context<'a>) -> &'a Control {
    ctx.data_unchecked::<Control>()
}

pub(super) fn actor<'a>(ctx: &Context<'a>) -> GqlResult<&'a Actor> {
    ctx.data_opt::<Actor>()
        .ok_or_else(|| gql_error(DomainError::Unauthenticated))
}

pub(super) fn page(cursor: Option<String>, limit: Option<u32>) -> GqlResult<PageRequest> {
    PageRequest::parse(cursor.as_deref(), limit).map_err(gql_error)
}

/// List fields cost their page size times their children, so a deep list of lists is refused.
pub(super) fn list_cost(limit: &Option<u32>, child: usize) -> usize {
    limit.unwrap_or(iocloud_control::page::DEFAULT_LIMIT) as usize * child
}

/// Every query: accounts, organisations and billing here; the supply side in `providers`.
#[derive(async_graphql::MergedObject, Default)]
pub struct QueryRoot(
    CoreQuery,
    super::providers::ProvidersQuery,
    super::quotes::QuotesQuery,
    super::clusters::ClustersQuery,
    super::payments::PaymentsQuery,
    super::deposits::DepositsQuery,
    super::payouts::PayoutsQuery,
    super::ssh_keys::SshKeysQuery,
    super::rewards::RewardsQuery,
    super::slashing::SlashingQuery,
    super::costaking::CostakingQuery,
    super::explorer::ExplorerQuery,
    super::governance::GovernanceQuery,
);

#[derive(Default)]
pub struct CoreQuery;

#[Object]
impl CoreQuery {
    /// The caller.
    async fn me(&self, ctx: &Context<'_>) -> GqlResult<Me> {
        control(ctx).orgs.me(actor(ctx)?).await.map_err(gql_error)
    }

    /// The organisation this request acts in.
    async fn organization(&self, ctx: &Context<'_>) -> GqlResult<Organization> {
        control(ctx).orgs.get(actor(ctx)?).await.map_err(gql_error)
    }

    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn members(
        &self,
        ctx: &Context<'_>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<Member>> {
        control(ctx)
            .orgs
            .members(actor(ctx)?, &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }

    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn invitations(
        &self,
        ctx: &Context<'_>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<Invitation>> {
        control(ctx)
            .orgs
            .invitations(actor(ctx)?, &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }

    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn api_keys(
        &self,
        ctx: &Context<'_>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<ApiKey>> {
        control(ctx)
            .keys
            .list(actor(ctx)?, &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }

    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<AuditEvent>> {
        control(ctx)
            .audit
            .events(actor(ctx)?, &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }

    /// Available and held balances in every currency.
    async fn balances(&self, ctx: &Context<'_>) -> GqlResult<Vec<Balance>> {
        control(ctx)
            .billing
            .balances(actor(ctx)?)
            .await
            .map_err(gql_error)
    }

    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn postings(
        &self,
        ctx: &Context<'_>,
        cursor: Option<String>,
        limit: Option<u32>,
        currency: Option<String>,
    ) -> GqlResult<Page<PostingView>> {
        control(ctx)
            .billing
            .postings(actor(ctx)?, &page(cursor, limit)?, currency.as_deref())
            .await
            .map_err(gql_error)
    }

    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn holds(
        &self,
        ctx: &Context<'_>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<HoldView>> {
        control(ctx)
            .billing
            .holds(actor(ctx)?, &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }

    /// The currency clusters are paid in.
    async fn billing_preference(&self, ctx: &Context<'_>) -> GqlResult<String> {
        Ok(control(ctx)
            .billing
            .preference(actor(ctx)?)
            .await
            .map_err(gql_error)?
            .currency
            .code()
            .into())
    }

    /// Usage of a month (`YYYY-MM`, default this one) grouped by `cluster` or `day`.
    async fn usage(
        &self,
        ctx: &Context<'_>,
        group_by: Option<String>,
        month: Option<String>,
    ) -> GqlResult<Vec<UsageRow>> {
        control(ctx)
            .billing
            .usage(actor(ctx)?, group_by.as_deref(), month.as_deref())
            .await
            .map_err(gql_error)
    }

    /// The monthly invoice.
    async fn invoice(&self, ctx: &Context<'_>, month: String) -> GqlResult<Invoice> {
        control(ctx)
            .billing
            .invoice(actor(ctx)?, &month)
            .await
            .map_err(gql_error)
    }

    /// Provider earnings of a month grouped by `device` or `day`, after the platform fee.
    async fn earnings(
        &self,
        ctx: &Context<'_>,
        group_by: Option<String>,
        month: Option<String>,
    ) -> GqlResult<Vec<UsageRow>> {
        control(ctx)
            .billing
            .earnings(actor(ctx)?, group_by.as_deref(), month.as_deref())
            .await
            .map_err(gql_error)
    }
}

#[derive(async_graphql::MergedObject, Default)]
pub struct MutationRoot(
    CoreMutation,
    super::providers::ProvidersMutation,
    super::quotes::QuotesMutation,
    super::clusters::ClustersMutation,
    super::payments::PaymentsMutation,
    super::deposits::DepositsMutation,
    super::payouts::PayoutsMutation,
    super::ssh_keys::SshKeysMutation,
    super::slashing::SlashingMutation,
    super::costaking::CostakingMutation,
    super::governance::GovernanceMutation,
);

#[derive(Default)]
pub struct CoreMutation;

#[Object]
impl CoreMutation {
    /// Creates an account: with `orgName`, in a new organisation it owns; with `invitation`
    /// (the token of an invitation for this email), in the organisation that invited it.
    async fn sign_up(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
        name: String,
        org_name: Option<String>,
        invitation: Option<String>,
    ) -> GqlResult<AuthSession> {
        let s = control(ctx)
            .accounts
            .sign_up(SignUp {
                email: &email,
                password: &password,
                name: &name,
                org_name: org_name.as_deref(),
                invitation: invitation.as_deref(),
            })
            .await
            .map_err(gql_error)?;
        note_user(ctx, &s);
        Ok(s)
    }

    async fn log_in(
        &self,
        ctx: &Context<'_>,
        email: String,
        password: String,
        org_id: Option<String>,
    ) -> GqlResult<AuthSession> {
        let s = control(ctx)
            .accounts
            .log_in(&email, &password, org_id.as_deref())
            .await
            .map_err(gql_error)?;
        note_user(ctx, &s);
        Ok(s)
    }

    async fn refresh(
        &self,
        ctx: &Context<'_>,
        refresh_token: String,
        org_id: Option<String>,
    ) -> GqlResult<AuthSession> {
        let s = control(ctx)
            .accounts
            .refresh(&refresh_token, org_id.as_deref())
            .await
            .map_err(gql_error)?;
        note_user(ctx, &s);
        Ok(s)
    }

    async fn log_out(&self, ctx: &Context<'_>) -> GqlResult<bool> {
        control(ctx)
            .accounts
            .log_out(actor(ctx)?)
            .await
            .map_err(gql_error)?;
        Ok(true)
    }

    async fn update_organization(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> GqlResult<Organization> {
        control(ctx)
            .orgs
            .rename(actor(ctx)?, &name)
            .await
            .map_err(gql_error)
    }

    async fn create_organization(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> GqlResult<Organization> {
        control(ctx)
            .orgs
            .create(actor(ctx)?, &name)
            .await
            .map_err(gql_error)
    }

    async fn change_member_role(
        &self,
        ctx: &Context<'_>,
        user_id: String,
        role: Role,
    ) -> GqlResult<Member> {
        control(ctx)
            .orgs
            .change_role(actor(ctx)?, &user_id, role)
            .await
            .map_err(gql_error)
    }

    async fn remove_member(&self, ctx: &Context<'_>, user_id: String) -> GqlResult<bool> {
        control(ctx)
            .orgs
            .remove_member(actor(ctx)?, &user_id)
            .await
            .map_err(gql_error)?;
        Ok(true)
    }

    async fn create_invitation(
        &self,
        ctx: &Context<'_>,
        email: String,
        role: Role,
    ) -> GqlResult<Invitation> {
        control(ctx)
            .orgs
            .invite(actor(ctx)?, &email, role)
            .await
            .map_err(gql_error)
    }

    async fn revoke_invitation(&self, ctx: &Context<'_>, id: String) -> GqlResult<Invitation> {
        control(ctx)
            .orgs
            .revoke_invitation(actor(ctx)?, &id)
            .await
            .map_err(gql_error)
    }

    async fn accept_invitation(&self, ctx: &Context<'_>, token: String) -> GqlResult<Membership> {
        control(ctx)
            .orgs
            .accept_invitation(actor(ctx)?, &token)
            .await
            .map_err(gql_error)
    }

    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        name: String,
        scopes: Vec<String>,
        expires_in_days: Option<u32>,
    ) -> GqlResult<CreatedApiKey> {
        let created = control(ctx)
            .keys
            .create(
                actor(ctx)?,
                NewApiKey {
                    name: &name,
                    scopes: &scopes,
                    expires_in_days,
                },
            )
            .await
            .map_err(gql_error)?;
        Ok(created)
    }

    async fn revoke_api_key(&self, ctx: &Context<'_>, id: String) -> GqlResult<ApiKey> {
        control(ctx)
            .keys
            .revoke(actor(ctx)?, &id)
            .await
            .map_err(gql_error)
    }

    async fn set_billing_preference(
        &self,
        ctx: &Context<'_>,
        currency: String,
    ) -> GqlResult<String> {
        let p = control(ctx)
            .billing
            .set_preference(actor(ctx)?, &currency)
            .await
            .map_err(gql_error)?;
        Ok(p.currency.code().into())
    }

    /// Platform operators only: reverse a ledger transaction with a compensating one (once).
    async fn correct_transaction(
        &self,
        ctx: &Context<'_>,
        transaction_id: String,
        reason: String,
    ) -> GqlResult<Correction> {
        control(ctx)
            .billing
            .correct_transaction(actor(ctx)?, &transaction_id, &reason)
            .await
            .map_err(gql_error)
    }

    /// Platform operators only. The same `reference` twice is one grant.
    async fn grant_credit(
        &self,
        ctx: &Context<'_>,
        org_id: String,
        amount: String,
        currency: String,
        reason: String,
        reference: Option<String>,
    ) -> GqlResult<CreditGrant> {
        let g = control(ctx)
            .billing
            .grant_credit(
                actor(ctx)?,
                &org_id,
                &amount,
                &currency,
                &reason,
                reference.as_deref(),
            )
            .await
            .map_err(gql_error)?;
        Ok(g)
    }
}

/// Sign-up and login learn who acted only when they succeed; tell the audit log.
fn note_user(ctx: &Context<'_>, s: &iocloud_control::accounts::AuthSession) {
    if let Some(slot) = ctx.data_opt::<crate::middleware::audit::AuditSlot>() {
        slot.set_user(&s.organization.id, &s.user.id);
    }
}

#[derive(async_graphql::MergedSubscription, Default)]
pub struct SubscriptionRoot(CoreSubscription, super::clusters::ClustersSubscription);

#[derive(Default)]
pub struct CoreSubscription;

#[Subscription]
impl CoreSubscription {
    /// Audit events of the caller's organisation as they are recorded (owners and admins).
    async fn audit_events(&self, ctx: &Context<'_>) -> BoxStream<'static, GqlResult<AuditEvent>> {
        let stream = match actor(ctx) {
            Ok(actor) => control(ctx).audit.stream(actor).await.map_err(gql_error),
            Err(e) => Err(e),
        };
        match stream {
            // The feed ends only when it broke (Redis went away, or this subscriber fell
            // behind): say so, rather than end as if the server had nothing more to say.
            Ok(s) => s
                .map(Ok)
                .chain(futures::stream::once(async {
                    Err(gql_error(iocloud_control::Error::Conflict {
                        code: iocloud_control::ErrorCode::StreamInterrupted,
                        message: "the audit feed broke and events may have been missed: \
                                  read them with the auditEvents query and subscribe again"
                            .into(),
                    }))
                }))
                .boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }
}
