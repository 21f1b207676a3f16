//! GraphQL for governance: the same service as `/v1/governance`. Reading is public; proposing
//! and voting need a token; vetoing needs an operator.

use async_graphql::{Context, Object};
use iocloud_control::Page;
use iocloud_control::governance::{
    NewProposal, ParamsView, Proposal, VetoRequest, Vote, VoteRequest,
};

use super::schema::{actor, control, gql_error, list_cost, page};

type GqlResult<T> = async_graphql::Result<T>;

#[derive(Default)]
pub struct GovernanceQuery;

#[Object]
impl GovernanceQuery {
    /// The proposals, newest first, optionally of one status.
    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn governance_proposals(
        &self,
        ctx: &Context<'_>,
        status: Option<String>,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<Proposal>> {
        control(ctx)
            .governance
            .proposals(status.as_deref(), &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }

    /// One proposal, with its tally.
    async fn governance_proposal(&self, ctx: &Context<'_>, id: String) -> GqlResult<Proposal> {
        control(ctx)
            .governance
            .proposal(&id)
            .await
            .map_err(gql_error)
    }

    /// A proposal's votes, each with its weight.
    #[graphql(complexity = "list_cost(&limit, child_complexity)")]
    async fn governance_votes(
        &self,
        ctx: &Context<'_>,
        id: String,
        cursor: Option<String>,
        limit: Option<u32>,
    ) -> GqlResult<Page<Vote>> {
        control(ctx)
            .governance
            .votes(&id, &page(cursor, limit)?)
            .await
            .map_err(gql_error)
    }

    /// The protocol parameters in force, their ranges and every version.
    async fn protocol_params(&self, ctx: &Context<'_>) -> GqlResult<ParamsView> {
        control(ctx).governance.params().await.map_err(gql_error)
    }
}

#[derive(Default)]
pub struct GovernanceMutation;

#[Object]
impl GovernanceMutation {
    /// Puts a proposal to the vote.
    async fn propose(&self, ctx: &Context<'_>, input: NewProposal) -> GqlResult<Proposal> {
        control(ctx)
            .governance
            .propose(actor(ctx)?, &input)
            .await
            .map_err(gql_error)
    }

    /// Casts or changes the organisation's vote (`yes`, `no` or `abstain`).
    async fn vote(&self, ctx: &Context<'_>, id: String, choice: String) -> GqlResult<Vote> {
        control(ctx)
            .governance
            .vote(actor(ctx)?, &id, &VoteRequest { choice })
            .await
            .map_err(gql_error)
    }

    /// Vetoes a passed change during its timelock (operators only).
    async fn veto_proposal(
        &self,
        ctx: &Context<'_>,
        id: String,
        reason: String,
    ) -> GqlResult<Proposal> {
        control(ctx)
            .governance
            .veto(actor(ctx)?, &id, &VetoRequest { reason })
            .await
            .map_err(gql_error)
    }
}
