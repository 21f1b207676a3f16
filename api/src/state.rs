use std::ops::Deref;
use std::sync::Arc;

use iocloud_control::Control;

use crate::config::Config;
use crate::drain::Drain;
use crate::graphql::ApiSchema;
use crate::metrics::Metrics;
use crate::middleware::admission::Admission;

/// What every handler can reach: handles, not logic. One `Arc`, because axum clones the state
/// for every layer of every request.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub control: Control,
    pub config: Config,
    pub metrics: Metrics,
    pub schema: ApiSchema,
    /// Whether this replica is stopping.
    pub drain: Drain,
    /// How many requests it works on at once.
    pub admission: Admission,
}

impl AppState {
    pub fn new(control: Control, config: Config, schema: ApiSchema, drain: Drain) -> AppState {
        let metrics = Metrics::new(config.otel_endpoint.is_some());
        let admission = Admission::new(config.max_in_flight, config.admission_wait());
        AppState(Arc::new(Shared {
            control,
            config,
            metrics,
            schema,
            drain,
            admission,
        }))
    }
}

impl Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
