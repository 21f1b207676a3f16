use std::sync::Arc;

use iocloud_control::Control;

use crate::config::Config;
use crate::graphql::ApiSchema;
use crate::metrics::Metrics;

/// What every handler can reach: handles, not logic.
#[derive(Clone)]
pub struct AppState {
    pub control: Control,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub schema: ApiSchema,
}
