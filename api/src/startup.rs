//! Building the application (used by `iocloud serve`, the tests and the benchmarks alike) and
//! serving it.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::{Json, Router, middleware};
use iocloud_control::Control;
use iocloud_control::jwt::JwtKeys;
use iocloud_db::{Db, Kv};
use iocloud_web::Page;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer as Set;
use tower_http::trace::TraceLayer;

use crate::config::{Config, MAX_BODY_BYTES};
use crate::drain::{DRAIN_LIMIT, Drain};
use crate::error::ApiError;
use crate::state::AppState;
use crate::{graphql, rest};

/// Connects the database (migrating it) and Redis or its stand-in, and loads the signing keys.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    let db = Db::connect_sized(&config.database_url, config.db_max_connections).await?;
    db.migrate().await?;
    let kv = match &config.redis_url {
        Some(url) => Kv::connect(url, &config.redis_prefix).await?,
        None => Kv::memory(),
    };
    let configured_key = match &config.jwt_key_file {
        Some(path) => {
            Some(std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?)
        }
        None => None,
    };
    let jwt = JwtKeys::load(&db, configured_key.as_deref()).await?;
    let mut settings = config.domain_settings().map_err(|e| anyhow::anyhow!(e))?;
    settings.chain = match config.chain_settings().parse()? {
        Some(chain) => Some(iocloud_billing::rails::solana::SolanaRail::connect(chain).await?),
        None => None,
    };
    let catalog = iocloud_control::providers::Catalog::load(&db).await?;
    let control = Control::new(db, kv, jwt, settings, catalog)?;
    control.cache.spawn_listener();
    control.devices.spawn_workers();
    control.agents.spawn_wakeup_listener();
    control.clusters.spawn_event_listener();
    {
        // Email a replica wrote but did not deliver before it stopped goes out now.
        let control = control.clone();
        tokio::spawn(async move {
            if let Err(e) = control.outbox.deliver().await {
                tracing::warn!(error = %e, "could not deliver waiting email");
            }
        });
    }
    if config.reconcile_interval_secs > 0 {
        control
            .clusters
            .spawn_reconciler(std::time::Duration::from_secs(
                config.reconcile_interval_secs,
            ));
    }
    if config.accrual_interval_secs > 0 {
        control
            .billing
            .spawn_accrual(std::time::Duration::from_secs(config.accrual_interval_secs));
    }
    if config.card_reconcile_interval_secs > 0 && control.payments.is_on() {
        control
            .payments
            .spawn_missed_pass(std::time::Duration::from_secs(
                config.card_reconcile_interval_secs,
            ));
    }
    if config.auto_reload_interval_secs > 0 && control.payments.is_on() {
        control.payments.spawn_auto_reload(
            std::time::Duration::from_secs(config.auto_reload_interval_secs),
            control.outbox.clone(),
        );
    }
    if config.solana_watch_interval_secs > 0 && control.deposits.is_on() {
        control
            .deposits
            .spawn_watcher(std::time::Duration::from_secs(
                config.solana_watch_interval_secs,
            ));
    }
    if config.solana_payout_interval_secs > 0 && control.deposits.is_on() {
        control.payouts.spawn_sender(std::time::Duration::from_secs(
            config.solana_payout_interval_secs,
        ));
    }
    if config.balance_alert_interval_secs > 0 {
        control.billing.spawn_balance_alerts(
            std::time::Duration::from_secs(config.balance_alert_interval_secs),
            control.outbox.clone(),
        );
    }
    if config.block_interval_secs > 0 {
        control
            .rewards
            .spawn(std::time::Duration::from_secs(config.block_interval_secs));
        // The detectors read the blocks, and the burns wait on the clock: on the same beat.
        control
            .slashing
            .spawn(std::time::Duration::from_secs(config.block_interval_secs));
        // Votes close and changes apply on the same beat; each pass also reads the
        // parameters in force into this replica.
        control
            .governance
            .spawn(std::time::Duration::from_secs(config.block_interval_secs));
    }
    if config.retention_sweep_interval_secs > 0 {
        control.sweeper.spawn(std::time::Duration::from_secs(
            config.retention_sweep_interval_secs,
        ));
    }
    let drain = Drain::default();
    let schema = graphql::build_schema(control.clone(), &config, drain.clone());
    Ok(AppState::new(control, config, schema, drain))
}

/// The whole HTTP surface with its middleware.
pub fn router(state: AppState) -> Router {
    let (v1, mut openapi) = rest::router().split_for_parts();
    let (agent, agent_doc) = crate::agent::router().split_for_parts();
    openapi.merge(agent_doc);
    // Stripe signs its webhooks instead of presenting a key: outside the caller's routes.
    let (webhooks, webhook_doc) = rest::payments::webhook_router().split_for_parts();
    openapi.merge(webhook_doc);
    crate::openapi::complete(&mut openapi);
    let openapi = Arc::new(openapi);

    // Routes that act for a caller: audited, authenticated, idempotent.
    let api = v1
        .route("/graphql", get(graphql::graphiql).post(graphql::execute))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::middleware::api,
        ));

    let public = Router::new()
        .route("/", get(|| async { Redirect::temporary("/app/") }))
        .route("/console", get(old_console))
        .route("/console/", get(old_console))
        .route("/console/{*rest}", get(old_console))
        .route("/assets/{*path}", get(asset))
        .route("/graphql/ws", get(graphql::websocket))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/docs",
            get(|| async { iocloud_web::page(Page::Reference) }),
        )
        .route(
            "/openapi.json",
            get(move || async move { Json(openapi.as_ref().clone()) }),
        );

    let cors = cors(&state.config.cors_origins);
    let console = crate::app::router().route_layer(middleware::from_fn_with_state(
        state.clone(),
        crate::app::audited,
    ));
    let public = public.merge(console);
    api.merge(public)
        .merge(agent)
        .merge(webhooks)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), crate::middleware::front))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                }))
                .layer(cors)
                .layer(CompressionLayer::new())
                // Every answer: no MIME sniffing, no framing, no referrer to other sites; and
                // for anything but a page (which sets its own), a policy that loads nothing.
                .layer(Set::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
                .layer(Set::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
                .layer(Set::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
                .layer(Set::if_not_present(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
                )),
        )
        .with_state(state)
}

fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<&String> = origins.iter().filter(|o| !o.is_empty()).collect();
    let base = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            "idempotency-key".parse().expect("static header"),
        ])
        .expose_headers([
            "x-request-id".parse().expect("static header"),
            header::RETRY_AFTER,
            // A replayed answer says so, and which secrets it no longer shows.
            "idempotent-replayed".parse().expect("static header"),
            crate::middleware::idempotency::WITHHELD_HEADER
                .parse()
                .expect("static header"),
        ]);
    if origins.iter().any(|o| o.as_str() == "*") {
        base.allow_origin(Any)
    } else {
        let list: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
        base.allow_origin(AllowOrigin::list(list))
    }
}

/// The console moved to `/app/`; invitation links sent from `/console/accept` still work.
async fn old_console(uri: Uri) -> Redirect {
    match (uri.path(), uri.query()) {
        ("/console/accept", Some(query)) => {
            Redirect::permanent(&format!("/app/invitations/accept?{query}"))
        }
        _ => Redirect::permanent("/app/"),
    }
}

async fn asset(Path(path): Path<String>) -> Response {
    iocloud_web::asset(&path)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::RouteNotFound(uri.path().chars().take(200).collect())
}

async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{method} is not allowed on {}",
        uri.path().chars().take(200).collect::<String>()
    ))
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the database answers. Redis away leaves the replica ready, degraded: every
/// replica shares one Redis, so failing readiness on it would take all of them out of service at
/// once, while without it a replica still serves every request (rate limits let requests
/// through, caches are bypassed, followers and agents read the database).
async fn readyz(State(state): State<AppState>) -> Response {
    // A stopping replica takes nothing new, whatever its stores say.
    if state.drain.is_draining() {
        let body = serde_json::json!({"status": "draining"});
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    let ready = state.control.readiness().await;
    let (status, word) = match (&ready.database, &ready.kv) {
        (Err(_), _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        (Ok(_), Err(_)) => (StatusCode::OK, "degraded"),
        (Ok(_), Ok(_)) => (StatusCode::OK, "ready"),
    };
    let body = serde_json::json!({
        "status": word,
        "database": if ready.database.is_ok() { "ok" } else { "unavailable" },
        "redis": match (&ready.kv, ready.kv_shared) { (Ok(_), true) => "ok", (Ok(_), false) => "in-process", (Err(_), _) => "unavailable" },
    });
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if let Some(token) = &state.config.metrics_token {
        let offered = crate::middleware::client::bearer(&headers).and_then(Result::ok);
        if !offered.is_some_and(|t| token.matches(t)) {
            return ApiError::Domain(iocloud_control::Error::Unauthenticated).into_response();
        }
    }
    let mut text = state.metrics.render();
    text.push_str(&state.admission.render());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// A running server: where it listens, and a handle to stop it.
pub struct Server {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Binds `config.listen` (port 0 for any free port) and serves in the background.
    pub async fn start(mut config: Config) -> anyhow::Result<Server> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        // Port 0 becomes a port only now: links say the one bound.
        config.listen = addr;
        let state = build_state(config).await?;
        // Without TCP_NODELAY, a small write that follows another before the client's delayed
        // ACK (an event on a stream, the end of a chunked body) waits up to 40 ms for it.
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
        });
        let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
        });
        Ok(Server {
            addr,
            state,
            shutdown: Some(tx),
            task,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drains and stops (see [`crate::drain`]): at most [`DRAIN_LIMIT`] for what is in flight.
    pub async fn stop(mut self) {
        if let Err(e) = self.drain().await {
            tracing::warn!(error = %e, "the server stopped with an error");
        }
    }

    /// Serves until Ctrl-C or SIGTERM, then drains and stops.
    pub async fn run_until_signal(mut self) -> anyhow::Result<()> {
        shutdown_signal().await;
        tracing::info!("shutting down: draining");
        self.drain().await
    }

    async fn drain(&mut self) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        self.state.drain.start();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let served = match tokio::time::timeout(DRAIN_LIMIT, &mut self.task).await {
            Ok(done) => done.map_err(anyhow::Error::from).and_then(|r| Ok(r?)),
            Err(_) => {
                tracing::warn!(
                    limit_secs = DRAIN_LIMIT.as_secs(),
                    "requests still open at the drain limit were cut"
                );
                self.task.abort();
                Ok(())
            }
        };
        self.state.control.close().await;
        tracing::info!(ms = started.elapsed().as_millis() as u64, "stopped");
        served
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
