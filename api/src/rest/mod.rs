//! REST under `/v1`: thin handlers over the domain services, described by the OpenAPI document.

mod api_keys;
mod audit;
mod auth;
mod billing;
mod clusters;
mod costaking;
mod deposits;
mod devices;
mod explorer;
mod governance;
mod members;
mod org;
pub mod payments;
mod payouts;
mod quotes;
mod rewards;
mod slashing;
mod ssh_keys;
pub(crate) mod usage;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "IO Cloud API", description = "The control plane of a decentralized GPU cloud. Authenticate with `Authorization: Bearer <access token or API key>`. Errors are RFC 9457 problem documents with a stable `code`."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(crate::error::Problem)),
    tags(
        (name = "auth", description = "Sign-up, login and sessions"),
        (name = "org", description = "The organisation, its members and invitations"),
        (name = "api-keys", description = "API keys"),
        (name = "ssh-keys", description = "SSH public keys the organisation's nodes let in"),
        (name = "audit", description = "The audit log"),
        (name = "billing", description = "Balances, the ledger, holds and credits"),
        (name = "payouts", description = "Payouts of earnings on chain, and the wallets they go to"),
        (name = "providers", description = "The GPU and region catalogs, devices, and stake"),
        (name = "rewards", description = "Hourly block rewards: what each device earned, or why it did not"),
        (name = "slashing", description = "Slashing cases against devices: evidence, escrow, appeal, decision"),
        (name = "costaking", description = "Co-staking: offers of a device's stake, positions, unstaking"),
        (name = "explorer", description = "IO Explorer: the network, its devices and blocks, staking and slashing, the bookings ledger and the supply; public, cacheable"),
        (name = "governance", description = "Proposals, votes weighed by staked $IO, the protocol parameters and their versions; reading is public"),
        (name = "placement", description = "Quotes: where a cluster would go and what it would cost"),
        (name = "clusters", description = "Clusters: create, watch, extend, terminate; quota"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT or ioc_ API key")
                    .build(),
            ),
        );
    }
}

/// The `/v1` routes and their OpenAPI document.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::router())
        .merge(org::router())
        .merge(members::router())
        .merge(api_keys::router())
        .merge(ssh_keys::router())
        .merge(audit::router())
        .merge(billing::router())
        .merge(payments::router())
        .merge(deposits::router())
        .merge(payouts::router())
        .merge(quotes::router())
        .merge(clusters::router())
        .merge(usage::router())
        .merge(devices::router())
        .merge(rewards::router())
        .merge(slashing::router())
        .merge(costaking::router())
        .merge(explorer::router())
        .merge(governance::router())
}
