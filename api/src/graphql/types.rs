//! The page wrapper every GraphQL list answers with. The values inside are the domain's own
//! types, which derive their GraphQL shape beside their serde one (`iocloud-control`'s
//! `graphql` feature); the supply side's and clusters' shapes still live in their modules.

use async_graphql::SimpleObject;
use iocloud_control::api_keys::ApiKey;
use iocloud_control::audit::AuditEvent;
use iocloud_control::billing::{HoldView, PostingView};
use iocloud_control::invitations::Invitation;
use iocloud_control::orgs::Member;

/// One page of a list; pass `nextCursor` as `cursor` for the next.
#[derive(SimpleObject)]
#[graphql(concrete(name = "MemberPage", params(Member)))]
#[graphql(concrete(name = "InvitationPage", params(Invitation)))]
#[graphql(concrete(name = "ApiKeyPage", params(ApiKey)))]
#[graphql(concrete(name = "AuditEventPage", params(AuditEvent)))]
#[graphql(concrete(name = "PostingPage", params(PostingView)))]
#[graphql(concrete(name = "HoldPage", params(HoldView)))]
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
