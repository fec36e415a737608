//! # bff-api
//!
//! bff's HTTP API on actix-web, wiring [`bff_auth`] (who is calling, RBAC),
//! [`bff_providers`] (LiteLLM) and [`bff_telemetry`] (Langfuse, Helicone) together. The `bff`
//! binary (`src/main.rs`) is a thin CLI over [`Application`].
//!
//! Middleware order and the public allow-list are documented in [`context`]; the route table
//! and each route's permission in [`routes`]; errors in [`error`]; metrics in [`metrics`].

pub mod access;
pub mod context;
pub mod diagnose;
pub mod disconnect;
pub mod error;
pub mod metrics;
pub mod observability;
pub mod routes;
pub mod settings;
pub mod state;
pub mod traffic;
pub mod usage;

use crate::access::AccessPolicy;
use crate::context::{PUBLIC_ROUTES, request_context};
use crate::metrics::Metrics;
use crate::observability::{LangfuseReader, Observability};
use crate::settings::Settings;
use crate::state::AppState;
use crate::usage::{RecentRequests, UsageLedger};
use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::middleware::{Condition, from_fn};
use actix_web::{App, HttpServer, web};
use bff_auth::{ConfigError, Gate};
use bff_providers::{ClientBuildError, LiteLlm, LiteLlmClient, LiteLlmConfig};
use bff_quota::{
    BackendError, Clock, Counters, LocalCounters, Quota, RedisCounters, SystemClock, run_writer,
};
use bff_telemetry::{
    HeliconeConfig, HeliconeSink, LangfuseConfig, LangfuseSink, Pipeline, PipelineConfig,
    TelemetryError, TelemetrySink, basic_authorization,
};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

/// Why bff could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Auth settings or policy.
    #[error(transparent)]
    Auth(#[from] ConfigError),
    /// The LiteLLM client.
    #[error("LITELLM_URL / LITELLM_API_KEY: {0}")]
    LiteLlm(#[from] ClientBuildError),
    /// Telemetry sinks or spool.
    #[error("telemetry: {0}")]
    Telemetry(#[from] TelemetryError),
    /// Binding the listen address.
    #[error("BFF_BIND: cannot listen: {0}")]
    Bind(std::io::Error),
    /// An HTTP client could not be built.
    #[error("cannot build an HTTP client: {0}")]
    Http(String),
    /// The quota counters cannot be used.
    #[error("QUOTA_REDIS_URL / QUOTA_STORE_PATH: {0}")]
    Quota(BackendError),
}

/// A built, bound, not yet running bff.
pub struct Application {
    server: Server,
    port: u16,
    telemetry: Arc<Pipeline>,
    telemetry_deadline: Duration,
    quota: Arc<Quota>,
}

impl Application {
    /// Builds everything from settings and binds `settings.bind` (port 0 picks a free port).
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let mut config = LiteLlmConfig::new(
            settings.litellm.url.clone(),
            settings.litellm.api_key.clone(),
        );
        config.connect_timeout = settings.litellm.connect_timeout;
        config.first_byte_timeout = settings.litellm.first_byte_timeout;
        config.request_timeout = settings.request_timeout;
        config.stream_idle_timeout = settings.litellm.stream_idle_timeout;
        config.max_attempts = settings.litellm.max_attempts;
        let litellm: Arc<dyn LiteLlm> = Arc::new(LiteLlmClient::new(config)?);
        Self::build_with(settings, litellm).await
    }

    /// Like [`Self::build`], with a given LiteLLM (tests pass a mock).
    pub async fn build_with(
        settings: Settings,
        litellm: Arc<dyn LiteLlm>,
    ) -> Result<Self, StartupError> {
        for warning in settings.warnings() {
            tracing::warn!("{warning}");
        }
        let access = AccessPolicy::load(&settings.auth.policy_file).map_err(ConfigError::from)?;
        let gate = Gate::from_settings(&settings.auth, access.policy().clone())?;
        let telemetry = Arc::new(Pipeline::start(
            pipeline_config(&settings),
            sinks(&settings)?,
        )?);
        let observability = Observability::new(
            settings.auth.openwebui_url.clone(),
            settings.langfuse.as_ref().map(|langfuse| LangfuseReader {
                host: langfuse.host.clone(),
                credentials: basic_authorization(&langfuse.public_key, &langfuse.secret_key),
                ui_url: langfuse.ui_url.clone(),
            }),
            settings
                .helicone
                .as_ref()
                .map(|helicone| (helicone.api_url.clone(), helicone.api_key.clone())),
        )
        .map_err(|error| StartupError::Http(error.to_string()))?;
        let metrics = Arc::new(Metrics::default());
        let quota = build_quota(&settings)?;
        let state = web::Data::new(AppState {
            litellm,
            gate,
            access,
            telemetry: Arc::clone(&telemetry),
            metrics,
            quota: Arc::clone(&quota),
            usage: UsageLedger::default(),
            recent: RecentRequests::default(),
            observability,
            request_timeout: settings.request_timeout,
            environment: settings
                .langfuse
                .as_ref()
                .and_then(|l| l.environment.clone()),
            max_body_bytes: settings.max_body_bytes,
            metrics_require_auth: settings.metrics_require_auth,
        });

        let (server, port) = serve(state, &settings)?;
        Ok(Self {
            server,
            port,
            telemetry,
            telemetry_deadline: settings.telemetry.shutdown_deadline,
            quota,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT/SIGTERM: then stops accepting, lets in-flight requests and streams
    /// finish within `SHUTDOWN_GRACE_SECONDS`, and flushes telemetry within
    /// `TELEMETRY_SHUTDOWN_SECONDS` (spooling what is left).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.quota.flush().await;
        tracing::info!("server stopped; flushing telemetry");
        let stats = self.telemetry.shutdown(self.telemetry_deadline).await;
        for sink in stats {
            tracing::info!(sink = %sink.sink, exported = sink.exported, spooled = sink.spooled, dropped = sink.dropped, "telemetry flushed");
        }
        served
    }
}

/// Binds the listen address and builds the HTTP server over `state`.
fn serve(state: web::Data<AppState>, settings: &Settings) -> Result<(Server, u16), StartupError> {
    let listener = TcpListener::bind(settings.bind).map_err(StartupError::Bind)?;
    let port = listener.local_addr().map_err(StartupError::Bind)?.port();
    let origins = settings.cors_allowed_origins.clone();
    let max_body = settings.max_body_bytes;
    let metrics_require_auth = settings.metrics_require_auth;
    let mut public_paths = PUBLIC_ROUTES.to_vec();
    if !metrics_require_auth {
        public_paths.push("/metrics");
    }
    tracing::info!(port, "bff configuration: {settings}");
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(max_body))
            .app_data(web::QueryConfig::default())
            // Innermost first; the order, outermost first, is documented in `context`.
            .wrap(
                state
                    .gate
                    .authenticate_requests(public_paths.iter().copied()),
            )
            .wrap(Condition::new(!origins.is_empty(), cors(&origins)))
            .wrap(from_fn(request_context))
            .configure(|config| routes::configure(config, &state.gate, metrics_require_auth))
    })
    .on_connect(disconnect::on_connect)
    // Each streamed chunk leaves at once: with Nagle's algorithm a small write waits for the
    // ACK of the previous one (the response head, for the first chunk).
    .tcp_nodelay(true)
    .listen(listener)
    .map_err(StartupError::Bind)?
    .shutdown_timeout(settings.shutdown_grace.as_secs())
    .run();
    Ok((server, port))
}

/// The quota engine: counters in Redis, or in process with spend kept in a file.
fn build_quota(settings: &Settings) -> Result<Arc<Quota>, StartupError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let counters: Arc<dyn Counters> = match (&settings.quota.redis_url, &settings.quota.store_path)
    {
        (Some(url), _) => Arc::new(
            RedisCounters::new(url.expose(), settings.quota.redis_timeout)
                .map_err(StartupError::Quota)?,
        ),
        (None, Some(path)) => {
            let local = Arc::new(LocalCounters::persistent(path).map_err(StartupError::Quota)?);
            tokio::spawn(run_writer(Arc::downgrade(&local), Arc::clone(&clock)));
            local
        }
        (None, None) => Arc::new(LocalCounters::in_memory()),
    };
    // A slot is held at most as long as a request may run, plus a margin.
    let lease = settings.request_timeout + Duration::from_secs(60);
    Ok(Arc::new(Quota::new(
        counters,
        clock,
        settings.quota.fail_mode,
        lease,
    )))
}

fn pipeline_config(settings: &Settings) -> PipelineConfig {
    PipelineConfig {
        batch_size: settings.telemetry.batch_size,
        flush_interval: settings.telemetry.flush_interval,
        spool_dir: settings.telemetry.spool_dir.clone(),
        spool_max_bytes: settings.telemetry.spool_max_bytes,
        capture: settings.telemetry.capture,
        max_capture_bytes: settings.telemetry.max_capture_bytes,
        ..PipelineConfig::default()
    }
}

fn sinks(settings: &Settings) -> Result<Vec<Arc<dyn TelemetrySink>>, StartupError> {
    let mut sinks: Vec<Arc<dyn TelemetrySink>> = Vec::new();
    if let Some(langfuse) = &settings.langfuse {
        let mut config =
            LangfuseConfig::new(&langfuse.host, &langfuse.public_key, &langfuse.secret_key)?;
        config.environment.clone_from(&langfuse.environment);
        sinks.push(Arc::new(LangfuseSink::new(config)?));
    }
    if let Some(helicone) = &settings.helicone {
        let mut config = HeliconeConfig::new(&helicone.log_url, helicone.api_key.clone())?;
        config.concurrency = helicone.concurrency;
        sinks.push(Arc::new(HeliconeSink::new(config)?));
    }
    Ok(sinks)
}

fn cors(origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods(["GET", "POST", "OPTIONS"])
        .allowed_headers([
            "authorization",
            "content-type",
            "x-request-id",
            "traceparent",
        ])
        .expose_headers(["x-request-id"])
        .max_age(600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}
