//! # bff-api
//!
//! bff's HTTP API on actix-web, wiring [`bff_auth`] (who is calling, RBAC),
//! [`bff_providers`] (LiteLLM) and [`bff_telemetry`] (Langfuse, Helicone) together. The `bff`
//! binary (`src/main.rs`) is a thin CLI over [`Application`].
//!
//! Middleware order and the public allow-list are documented in [`context`]; the route table
//! and each route's permission in [`routes`]; what a caller may do in [`access`]; errors in
//! [`error`]. Every finished request becomes one [`exchange::Exchange`], which the metrics, the
//! reports ([`reporting`]), telemetry, quota settlement and the log line all count.

pub mod access;
pub mod context;
pub mod descriptors;
pub mod diagnose;
pub mod error;
pub mod exchange;
pub mod metrics;
pub mod models;
pub mod observability;
pub mod reporting;
pub mod routes;
pub mod settings;
pub mod state;
pub mod subscribers;
pub mod tasks;

use crate::access::AccessPolicy;
use crate::context::{PUBLIC_ROUTES, request_context};
use crate::error::ErrorContext;
use crate::exchange::{Hub, Subscriber};
use crate::metrics::Metrics;
use crate::models::KnownModels;
use crate::observability::{LangfuseReader, Observability};
use crate::reporting::Reporting;
use crate::reporting::embedded::EmbeddedStore;
use crate::reporting::redis::RedisStore;
use crate::reporting::store::{StoreError, UsageStore};
use crate::reporting::writer::{Recorder, WriterConfig};
use crate::settings::Settings;
use crate::state::AppState;
use crate::subscribers::{LogLine, QuotaSettlement, Telemetry};
use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::middleware::{Condition, from_fn};
use actix_web::{App, HttpServer, web};
use bff_auth::{ConfigError, Gate};
use bff_providers::{ClientBuildError, LiteLlm, LiteLlmClient, LiteLlmConfig};
use bff_quota::{
    BackendError, Clock, Counters, LocalCounters, Quota, RedisConnection, RedisCounters,
    SystemClock, run_writer,
};
use bff_telemetry::{
    HeliconeConfig, HeliconeSink, LangfuseConfig, LangfuseSink, Pipeline, PipelineConfig,
    TelemetryError, TelemetrySink, basic_authorization,
};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
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
    #[error("REDIS_URL / QUOTA_STORE_PATH: {0}")]
    Quota(BackendError),
    /// The usage store cannot be used.
    #[error("REDIS_URL / USAGE_STORE_PATH: {0}")]
    Usage(StoreError),
}

/// A built, bound, not yet running bff.
pub struct Application {
    server: Server,
    port: u16,
    telemetry: Arc<Pipeline>,
    /// The threads telemetry exports on; kept until the application is dropped.
    _telemetry_threads: TelemetryThreads,
    telemetry_deadline: Duration,
    quota: Arc<Quota>,
    reporting: Arc<Reporting>,
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
        config.pools = settings.litellm.pools;
        config.max_captured_output_bytes = settings.telemetry.max_capture_bytes;
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
        let telemetry_threads = TelemetryThreads::start()?;
        let telemetry = Arc::new(Pipeline::start_on(
            telemetry_threads.handle(),
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
        let redis = match &settings.redis_url {
            Some(url) => Some(Arc::new(
                RedisConnection::new(url.expose(), REDIS_CONNECT_TIMEOUT)
                    .map_err(|error| StartupError::Quota(BackendError(error)))?,
            )),
            None => None,
        };
        let quota = build_quota(&settings, redis.clone())?;
        let open_streams = Arc::new(AtomicU64::new(0));
        let (reporting, recorder) = build_reporting(&settings, redis, Arc::clone(&open_streams))?;
        let metrics = Arc::new(Metrics::default());
        spawn_upkeep(Arc::downgrade(&metrics));
        let subscribers: Vec<Box<dyn Subscriber>> = vec![
            Box::new(Arc::clone(&metrics)),
            Box::new(recorder),
            Box::new(Telemetry(Arc::clone(&telemetry))),
            Box::new(QuotaSettlement),
            Box::new(LogLine),
        ];
        let capture = (
            settings.telemetry.capture,
            settings.telemetry.max_capture_bytes,
        );
        let hub = Arc::new(Hub::new(
            subscribers,
            capture,
            &routes::ROUTES,
            open_streams,
        ));
        let state = web::Data::new(AppState {
            litellm,
            gate,
            access,
            models: KnownModels::default(),
            telemetry: Arc::clone(&telemetry),
            metrics,
            quota: Arc::clone(&quota),
            reporting: Arc::clone(&reporting),
            observability,
            request_timeout: settings.request_timeout,
            environment: settings
                .langfuse
                .as_ref()
                .and_then(|l| l.environment.clone()),
            metrics_require_auth: settings.metrics_require_auth,
        });

        let (server, port) = serve(state, hub, &settings)?;
        Ok(Self {
            server,
            port,
            telemetry,
            _telemetry_threads: telemetry_threads,
            telemetry_deadline: settings.telemetry.shutdown_deadline,
            quota,
            reporting,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that stops the server as SIGTERM does (graceful: in-flight requests finish,
    /// then usage and telemetry are flushed).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGINT/SIGTERM: then stops accepting, lets in-flight requests and streams
    /// finish within `SHUTDOWN_GRACE_SECONDS`, and flushes telemetry within
    /// `TELEMETRY_SHUTDOWN_SECONDS` (spooling what is left).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.reporting.shutdown(self.telemetry_deadline).await;
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
fn serve(
    state: web::Data<AppState>,
    hub: Arc<Hub>,
    settings: &Settings,
) -> Result<(Server, u16), StartupError> {
    let origins = settings.cors_allowed_origins.clone();
    let max_body = settings.max_body_bytes;
    let hub = web::Data::from(hub);
    let errors = web::Data::new(ErrorContext {
        max_body_bytes: max_body,
    });
    let metrics_require_auth = settings.metrics_require_auth;
    let mut public_paths = PUBLIC_ROUTES.to_vec();
    if !metrics_require_auth {
        public_paths.push("/metrics");
    }
    let (connections, workers) = connection_limit(settings);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(hub.clone())
            .app_data(errors.clone())
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
    .workers(workers)
    // Past the descriptor budget, new connections wait in the listen backlog; open ones go on.
    .max_connections(connections.div_ceil(workers))
    // A client that closes its side of the connection has left: the server drops its request
    // at once, waiting for the first byte or streaming, and so the upstream call (with the
    // exchange finished as abandoned). A client that half-closes and still waits for the answer
    // is not supported.
    .h1_allow_half_closed(false)
    // Each streamed chunk leaves at once: with Nagle's algorithm a small write waits for the
    // ACK of the previous one (the response head, for the first chunk).
    .tcp_nodelay(true)
    // Connections past the cap wait here; std's own `bind` would keep only 128.
    .backlog(LISTEN_BACKLOG)
    .bind(settings.bind)
    .map_err(StartupError::Bind)?;
    let port = server.addrs().first().map_or(0, std::net::SocketAddr::port);
    tracing::info!(port, "bff configuration: {settings}");
    let server = server
        .shutdown_timeout(settings.shutdown_grace.as_secs())
        .run();
    Ok((server, port))
}

/// Connections the kernel holds for bff before it accepts them.
const LISTEN_BACKLOG: u32 = 2048;

/// The most client connections at once (from `BFF_MAX_CONNECTIONS`, or what the open-file
/// limit allows) and the worker threads to share them.
fn connection_limit(settings: &Settings) -> (usize, usize) {
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let reserve = descriptors::RESERVE
        + settings
            .helicone
            .as_ref()
            .map_or(0, |helicone| helicone.concurrency as u64);
    let budget = match descriptors::open_file_limit() {
        Ok(limit) => descriptors::max_connections(limit, reserve),
        Err(error) => {
            tracing::warn!(%error, "the open-file limit is unknown; connections are not capped by it");
            usize::MAX
        }
    };
    let connections = match settings.max_connections {
        Some(wanted) if wanted > budget => {
            tracing::warn!(
                wanted,
                budget,
                "BFF_MAX_CONNECTIONS is more than the open-file limit allows; past the budget, accepting would fail with too many open files"
            );
            wanted
        }
        Some(wanted) => wanted,
        None => budget.min(1_000_000),
    };
    tracing::info!(
        max_connections = connections,
        workers,
        "accepting at most {connections} connections at once"
    );
    (connections, workers)
}

/// The quota engine: counters in Redis, or in process with spend kept in a file.
fn build_quota(
    settings: &Settings,
    redis: Option<Arc<RedisConnection>>,
) -> Result<Arc<Quota>, StartupError> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let counters: Arc<dyn Counters> = match (redis, &settings.quota.store_path) {
        (Some(redis), _) => Arc::new(RedisCounters::new(redis, settings.quota.redis_timeout)),
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

/// How long the reports wait for Redis: they are read by people, not on the request path.
const USAGE_REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// How long opening the Redis connection may take (each call has its own, shorter bound).
const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The usage store (Redis, or a file) and its writer; the recorder is its subscriber.
fn build_reporting(
    settings: &Settings,
    redis: Option<Arc<RedisConnection>>,
    open_streams: Arc<AtomicU64>,
) -> Result<(Arc<Reporting>, Recorder), StartupError> {
    let usage = &settings.usage;
    let store: Arc<dyn UsageStore> = match (redis, &usage.store_path) {
        (Some(redis), _) => Arc::new(RedisStore::new(
            redis,
            USAGE_REDIS_TIMEOUT,
            Duration::from_secs(usage.retention_days * 86_400),
            usage.recent_max,
        )),
        (None, Some(path)) => {
            Arc::new(EmbeddedStore::open(path, usage.recent_max).map_err(StartupError::Usage)?)
        }
        (None, None) => {
            Arc::new(EmbeddedStore::in_memory(usage.recent_max).map_err(StartupError::Usage)?)
        }
    };
    let config = WriterConfig {
        flush_interval: usage.flush_interval,
        retention_days: usage.retention_days,
        max_recent: usage.recent_max,
        queue: 65_536,
        chat_routes: &routes::CHAT_ROUTES,
    };
    let open = move || open_streams.load(std::sync::atomic::Ordering::Relaxed);
    let (reporting, recorder) = Reporting::start(store, config, Arc::new(open));
    Ok((Arc::new(reporting), recorder))
}

/// Drains the metrics' histogram samples every few seconds, while the metrics live.
/// Threads of telemetry's own: exports (building, compressing, posting every record) run there,
/// not on actix's main thread behind timers and the usage writer, and the scheduler gives them
/// their share of the CPU under load instead of one thread's.
struct TelemetryThreads {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl TelemetryThreads {
    /// Threads telemetry exports on.
    const THREADS: usize = 2;

    fn start() -> Result<Self, StartupError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(Self::THREADS)
            .thread_name("bff-telemetry")
            .enable_all()
            .build()
            .map_err(|error| StartupError::Http(format!("telemetry threads: {error}")))?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for TelemetryThreads {
    fn drop(&mut self) {
        // Dropped from inside actix's runtime, where blocking is not allowed; the pipeline was
        // shut down (flushed, then spooled) before this.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn spawn_upkeep(metrics: std::sync::Weak<Metrics>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            let Some(metrics) = metrics.upgrade() else {
                return;
            };
            metrics.upkeep();
        }
    });
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
