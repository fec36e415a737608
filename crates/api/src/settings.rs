//! One typed settings struct, loaded once at start from the environment and a `.env` file,
//! validated before the server binds. Every problem is a sentence naming the variable.

use bff_auth::{AuthSettings, ConfigError};
use bff_providers::{ApiKey, PoolMode};
use bff_quota::FailMode;
use bff_telemetry::{CapturePolicy, HeliconeConfig, LogFormat, Secret};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

/// Every variable bff reads (its own and bff-auth's); `.env.example` must document them all.
pub const ENV_VARIABLES: [&str; 46] = [
    "BFF_BIND",
    "BFF_MAX_CONNECTIONS",
    "BFF_DATA_DIR",
    "LITELLM_URL",
    "LITELLM_API_KEY",
    "LITELLM_CONNECT_TIMEOUT_MS",
    "LITELLM_FIRST_BYTE_TIMEOUT_SECONDS",
    "LITELLM_STREAM_IDLE_TIMEOUT_SECONDS",
    "LITELLM_MAX_ATTEMPTS",
    "LITELLM_POOLS",
    "REQUEST_TIMEOUT_SECONDS",
    "MAX_BODY_BYTES",
    "CORS_ALLOWED_ORIGINS",
    "METRICS_REQUIRE_AUTH",
    "SHUTDOWN_GRACE_SECONDS",
    "LOG_FORMAT",
    "RUST_LOG",
    "LANGFUSE_HOST",
    "LANGFUSE_PUBLIC_KEY",
    "LANGFUSE_SECRET_KEY",
    "LANGFUSE_ENVIRONMENT",
    "LANGFUSE_UI_URL",
    "HELICONE_API_KEY",
    "HELICONE_BASE_URL",
    "HELICONE_API_URL",
    "HELICONE_CONCURRENCY",
    "TELEMETRY_SPOOL_DIR",
    "TELEMETRY_SPOOL_MAX_MB",
    "TELEMETRY_BATCH_SIZE",
    "TELEMETRY_FLUSH_INTERVAL_MS",
    "TELEMETRY_CAPTURE",
    "TELEMETRY_MAX_CAPTURE_BYTES",
    "TELEMETRY_SHUTDOWN_SECONDS",
    "REDIS_URL",
    "QUOTA_REDIS_URL",
    "QUOTA_FAIL_MODE",
    "QUOTA_REDIS_TIMEOUT_MS",
    "QUOTA_STORE_PATH",
    "USAGE_STORE_PATH",
    "USAGE_RETENTION_DAYS",
    "USAGE_RECENT_MAX",
    "USAGE_FLUSH_INTERVAL_MS",
    // Read by `.env` discovery and the auth settings (listed in bff_auth::ENV_VARIABLES too).
    "BFF_ENV_FILE",
    "WEBUI_SECRET_KEY",
    "OPENWEBUI_URL",
    "RBAC_POLICY_FILE",
];

/// A setting that cannot be used. The message says which variable and what it expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// A variable bff needs is not set.
    #[error("{variable} is not set: {expected}")]
    Missing {
        /// The variable.
        variable: &'static str,
        /// What to set it to.
        expected: &'static str,
    },
    /// A variable holds something unusable.
    #[error("{variable}: {reason}")]
    Invalid {
        /// The variable.
        variable: &'static str,
        /// What is wrong (never echoes a secret).
        reason: String,
    },
    /// The auth settings or policy are unusable.
    #[error(transparent)]
    Auth(#[from] ConfigError),
    /// The `.env` file cannot be read.
    #[error("{path}: {reason}")]
    EnvFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// LiteLLM connection settings.
#[derive(Debug, Clone)]
pub struct LiteLlmSettings {
    /// Proxy base URL.
    pub url: Url,
    /// Master or virtual key.
    pub api_key: ApiKey,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Time to first byte.
    pub first_byte_timeout: Duration,
    /// Silence allowed between stream chunks.
    pub stream_idle_timeout: Duration,
    /// HTTP attempts per call.
    pub max_attempts: u32,
    /// Connection pools: one per actix worker thread (default) or one shared.
    pub pools: PoolMode,
}

/// Langfuse settings (all three variables, or none).
#[derive(Debug, Clone)]
pub struct LangfuseSettings {
    /// Base URL.
    pub host: Url,
    /// Project public key.
    pub public_key: String,
    /// Project secret key.
    pub secret_key: Secret,
    /// `langfuse.environment`.
    pub environment: Option<String>,
    /// Langfuse as a browser reaches it, for trace links (default: `host`).
    pub ui_url: Url,
}

/// Helicone settings.
#[derive(Debug, Clone)]
pub struct HeliconeSettings {
    /// API key.
    pub api_key: Secret,
    /// Async-log (worker) base URL.
    pub log_url: Url,
    /// Query API (Jawn) base URL, for health.
    pub api_url: Url,
    /// Posts in flight at once (one record each): the sink's throughput is about this many
    /// records per round trip to Helicone.
    pub concurrency: usize,
}

/// Telemetry pipeline settings.
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    /// Spool folder; `None` when set to `off`.
    pub spool_dir: Option<PathBuf>,
    /// Spool cap per sink, bytes.
    pub spool_max_bytes: u64,
    /// Records per export.
    pub batch_size: usize,
    /// Longest wait before exporting.
    pub flush_interval: Duration,
    /// What to keep of prompts and answers.
    pub capture: CapturePolicy,
    /// Most bytes of input, and of output, one telemetry record keeps.
    pub max_capture_bytes: usize,
    /// Flush deadline at shutdown.
    pub shutdown_deadline: Duration,
}

/// Everything bff needs to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listen address.
    pub bind: SocketAddr,
    /// LiteLLM.
    pub litellm: LiteLlmSettings,
    /// Auth (bff-auth's own settings).
    pub auth: AuthSettings,
    /// Caller deadline for one chat request.
    pub request_timeout: Duration,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Most client connections at once; `None`: what the open-file limit allows.
    pub max_connections: Option<usize>,
    /// Allowed CORS origins; empty means CORS off.
    pub cors_allowed_origins: Vec<String>,
    /// Whether `/metrics` needs the `metrics` permission.
    pub metrics_require_auth: bool,
    /// How long in-flight requests may finish at shutdown.
    pub shutdown_grace: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter (`RUST_LOG`, from the environment or `.env`; default `info`).
    pub log_filter: String,
    /// Langfuse, if configured.
    pub langfuse: Option<LangfuseSettings>,
    /// Helicone, if configured.
    pub helicone: Option<HeliconeSettings>,
    /// Telemetry pipeline.
    pub telemetry: TelemetrySettings,
    /// Redis, shared by every replica: quota counters and the usage store. `None`: in process
    /// and on disk (one replica).
    pub redis_url: Option<Secret>,
    /// Quota counters.
    pub quota: QuotaSettings,
    /// The usage store.
    pub usage: UsageSettings,
}

/// Where usage is kept and for how long.
#[derive(Debug, Clone)]
pub struct UsageSettings {
    /// The embedded store's file (without Redis); `None` (`off`): memory only.
    pub store_path: Option<PathBuf>,
    /// Days of daily rows kept.
    pub retention_days: u64,
    /// Requests the recent list keeps.
    pub recent_max: usize,
    /// Longest time between two writes to the store: how far behind the reports may be.
    pub flush_interval: Duration,
}

/// Where quota counters live and what happens when they cannot be reached.
#[derive(Debug, Clone)]
pub struct QuotaSettings {
    /// Refuse (closed) or admit uncounted (open) when the counters cannot be reached.
    pub fail_mode: FailMode,
    /// Longest wait for Redis per call.
    pub redis_timeout: Duration,
    /// Where in-process spend is kept across restarts; `None` (`off`): memory only.
    pub store_path: Option<PathBuf>,
}

impl Settings {
    /// Loads from the process environment and the `.env` file (`BFF_ENV_FILE`, default
    /// `./.env`, optional). Real environment variables win over the file.
    pub fn load() -> Result<Self, SettingsError> {
        let chosen = std::env::var("BFF_ENV_FILE").ok();
        let path = chosen.as_deref().unwrap_or(".env");
        let file = read_env_file(Path::new(path), chosen.is_some())?;
        Self::from_lookup(|name| std::env::var(name).ok().or_else(|| file.get(name).cloned()))
    }

    /// Loads through `lookup` (tests pass a table).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let auth = AuthSettings::from_lookup(&lookup)?;
        let data_dir = PathBuf::from(get("BFF_DATA_DIR").unwrap_or_else(|| "data".into()));
        let log_format = match get("LOG_FORMAT") {
            None => LogFormat::Json,
            Some(value) => LogFormat::parse(&value).ok_or_else(|| SettingsError::Invalid {
                variable: "LOG_FORMAT",
                reason: format!("expected `json` or `pretty`, got `{value}`"),
            })?,
        };
        Ok(Self {
            bind: get("BFF_BIND")
                .unwrap_or_else(|| "0.0.0.0:8080".into())
                .parse()
                .map_err(|_| SettingsError::Invalid {
                    variable: "BFF_BIND",
                    reason: "expected host:port, e.g. 0.0.0.0:8080".into(),
                })?,
            litellm: LiteLlmSettings::read(&get)?,
            auth,
            request_timeout: seconds(&get, "REQUEST_TIMEOUT_SECONDS", 600, 1)?,
            max_body_bytes: usize::try_from(number(
                &get,
                "MAX_BODY_BYTES",
                10 << 20,
                1024..=256 << 20,
            )?)
            .unwrap_or(10 << 20),
            max_connections: get("BFF_MAX_CONNECTIONS")
                .map(|_| number(&get, "BFF_MAX_CONNECTIONS", 0, 1..=1_000_000))
                .transpose()?
                .map(|n| usize::try_from(n).unwrap_or(1_000_000)),
            cors_allowed_origins: get("CORS_ALLOWED_ORIGINS")
                .map(|value| {
                    value
                        .split(',')
                        .map(|origin| origin.trim().to_owned())
                        .filter(|origin| !origin.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            metrics_require_auth: boolean(&get, "METRICS_REQUIRE_AUTH")?,
            shutdown_grace: seconds(&get, "SHUTDOWN_GRACE_SECONDS", 30, 0)?,
            log_format,
            log_filter: get("RUST_LOG").unwrap_or_else(|| "info".into()),
            langfuse: LangfuseSettings::read(&get)?,
            helicone: HeliconeSettings::read(&get)?,
            telemetry: TelemetrySettings::read(&get, &data_dir)?,
            redis_url: redis_url(&get)?,
            quota: QuotaSettings::read(&get, &data_dir)?,
            usage: UsageSettings::read(&get, &data_dir)?,
        })
    }

    /// Things that work but deserve a warning at start-up (bff's own; the auth warnings are
    /// [`AuthSettings::warnings`], logged when the auth gate is built).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.langfuse.is_none() && self.helicone.is_none() {
            warnings.push("no telemetry sink is configured (LANGFUSE_* or HELICONE_API_KEY): usage is kept in memory only".into());
        }
        warnings
    }
}

/// The effective configuration, secrets masked: the one start-up log line.
impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sinks = Vec::new();
        if let Some(langfuse) = &self.langfuse {
            sinks.push(format!("langfuse({})", langfuse.host));
        }
        if let Some(helicone) = &self.helicone {
            sinks.push(format!("helicone({})", helicone.log_url));
        }
        write!(
            f,
            "bind={} litellm={} litellm_key=*** openwebui={} policy={} service_keys=[{}] forwarded_jwt={} forwarded_headers={} sinks=[{}] spool={} capture={:?} metrics_auth={} cors=[{}] max_body_bytes={} quota={}",
            self.bind,
            self.litellm.url,
            self.auth
                .openwebui_url
                .as_ref()
                .map_or_else(|| "none".to_owned(), ToString::to_string),
            self.auth.policy_file.display(),
            self.auth
                .service_keys
                .iter()
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            if self.auth.forward_jwt_secret.is_some() {
                "on"
            } else {
                "off"
            },
            self.auth.trust_forwarded_headers,
            sinks.join(","),
            self.telemetry
                .spool_dir
                .as_ref()
                .map_or_else(|| "off".to_owned(), |dir| dir.display().to_string()),
            self.telemetry.capture,
            self.metrics_require_auth,
            self.cors_allowed_origins.join(","),
            self.max_body_bytes,
            match (&self.redis_url, &self.quota.store_path) {
                (Some(_), _) => format!("redis(***,{:?})", self.quota.fail_mode),
                (None, Some(path)) => format!("local({})", path.display()),
                (None, None) => "local(memory)".to_owned(),
            },
        )
    }
}

/// A settings reader: the value of a variable, `None` when unset or blank.
trait Get: Fn(&str) -> Option<String> {}
impl<F: Fn(&str) -> Option<String>> Get for F {}

impl LiteLlmSettings {
    fn read(get: &impl Get) -> Result<Self, SettingsError> {
        Ok(Self {
            url: url(
                "LITELLM_URL",
                &get("LITELLM_URL").ok_or(SettingsError::Missing {
                    variable: "LITELLM_URL",
                    expected: "the LiteLLM proxy's base URL, e.g. http://litellm:4000",
                })?,
            )?,
            api_key: ApiKey::new(get("LITELLM_API_KEY").ok_or(SettingsError::Missing {
                variable: "LITELLM_API_KEY",
                expected: "LiteLLM's master key or a virtual key (sk-…)",
            })?),
            connect_timeout: Duration::from_millis(number(
                get,
                "LITELLM_CONNECT_TIMEOUT_MS",
                5000,
                1..=600_000,
            )?),
            first_byte_timeout: seconds(get, "LITELLM_FIRST_BYTE_TIMEOUT_SECONDS", 120, 1)?,
            stream_idle_timeout: seconds(get, "LITELLM_STREAM_IDLE_TIMEOUT_SECONDS", 120, 1)?,
            max_attempts: u32::try_from(number(get, "LITELLM_MAX_ATTEMPTS", 3, 1..=10)?)
                .unwrap_or(3),
            pools: pool_mode(get("LITELLM_POOLS"))?,
        })
    }
}

/// `LITELLM_POOLS`: `per-thread` (default: actix runs one runtime per worker thread, where
/// per-thread pools were measured to help) or `shared`.
fn pool_mode(value: Option<String>) -> Result<PoolMode, SettingsError> {
    match value.as_deref().map(str::trim) {
        None | Some("per-thread") => Ok(PoolMode::PerThread),
        Some("shared") => Ok(PoolMode::Shared),
        Some(other) => Err(SettingsError::Invalid {
            variable: "LITELLM_POOLS",
            reason: format!("expected `per-thread` or `shared`, got `{other}`"),
        }),
    }
}

impl LangfuseSettings {
    fn read(get: &impl Get) -> Result<Option<Self>, SettingsError> {
        match (
            get("LANGFUSE_HOST"),
            get("LANGFUSE_PUBLIC_KEY"),
            get("LANGFUSE_SECRET_KEY"),
        ) {
            (None, None, None) => Ok(None),
            (Some(host), Some(public_key), Some(secret_key)) => Ok(Some(Self {
                ui_url: url("LANGFUSE_UI_URL", &get("LANGFUSE_UI_URL").unwrap_or(host.clone()))?,
                host: url("LANGFUSE_HOST", &host)?,
                public_key,
                secret_key: Secret::new(secret_key),
                environment: get("LANGFUSE_ENVIRONMENT"),
            })),
            _ => Err(SettingsError::Invalid {
                variable: "LANGFUSE_HOST",
                reason: "set LANGFUSE_HOST, LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY together, or none of them".into(),
            }),
        }
    }
}

impl HeliconeSettings {
    fn read(get: &impl Get) -> Result<Option<Self>, SettingsError> {
        let Some(key) = get("HELICONE_API_KEY") else {
            return Ok(None);
        };
        Ok(Some(Self {
            api_key: Secret::new(key),
            log_url: url(
                "HELICONE_BASE_URL",
                &get("HELICONE_BASE_URL")
                    .unwrap_or_else(|| "https://api.worker.helicone.ai".into()),
            )?,
            api_url: url(
                "HELICONE_API_URL",
                &get("HELICONE_API_URL").unwrap_or_else(|| "https://api.helicone.ai".into()),
            )?,
            concurrency: helicone_concurrency(get)?,
        }))
    }
}

/// A path variable: its value, `None` for `off`, or `default` inside the data directory.
fn data_path(get: &impl Get, variable: &str, data_dir: &Path, default: &str) -> Option<PathBuf> {
    match get(variable) {
        Some(path) if path.trim() == "off" => None,
        Some(path) => Some(PathBuf::from(path)),
        None => Some(data_dir.join(default)),
    }
}

/// `REDIS_URL`, or the older `QUOTA_REDIS_URL` (the same setting); both must agree.
fn redis_url(get: &impl Get) -> Result<Option<Secret>, SettingsError> {
    match (get("REDIS_URL"), get("QUOTA_REDIS_URL")) {
        (Some(new), Some(old)) if new.trim() != old.trim() => Err(SettingsError::Invalid {
            variable: "REDIS_URL",
            reason: "QUOTA_REDIS_URL is set too, to another address; it means the same, so set one of them".into(),
        }),
        (new, old) => Ok(new.or(old).map(Secret::new)),
    }
}

impl UsageSettings {
    fn read(get: &impl Get, data_dir: &Path) -> Result<Self, SettingsError> {
        Ok(Self {
            store_path: data_path(get, "USAGE_STORE_PATH", data_dir, "usage.redb"),
            retention_days: number(get, "USAGE_RETENTION_DAYS", 366, 1..=3660)?,
            recent_max: usize::try_from(number(get, "USAGE_RECENT_MAX", 1000, 1..=100_000)?)
                .unwrap_or(1000),
            flush_interval: Duration::from_millis(number(
                get,
                "USAGE_FLUSH_INTERVAL_MS",
                1000,
                10..=60_000,
            )?),
        })
    }
}

impl TelemetrySettings {
    fn read(get: &impl Get, data_dir: &Path) -> Result<Self, SettingsError> {
        let capture = match get("TELEMETRY_CAPTURE") {
            None => CapturePolicy::Full,
            Some(value) => CapturePolicy::parse(&value).ok_or_else(|| SettingsError::Invalid {
                variable: "TELEMETRY_CAPTURE",
                reason: format!("expected `full` or `metadata-only`, got `{value}`"),
            })?,
        };
        Ok(Self {
            spool_dir: data_path(get, "TELEMETRY_SPOOL_DIR", data_dir, "telemetry-spool"),
            spool_max_bytes: number(get, "TELEMETRY_SPOOL_MAX_MB", 256, 1..=1 << 20)? << 20,
            batch_size: usize::try_from(number(get, "TELEMETRY_BATCH_SIZE", 50, 1..=10_000)?)
                .unwrap_or(50),
            flush_interval: Duration::from_millis(number(
                get,
                "TELEMETRY_FLUSH_INTERVAL_MS",
                1000,
                1..=3_600_000,
            )?),
            capture,
            max_capture_bytes: usize::try_from(number(
                get,
                "TELEMETRY_MAX_CAPTURE_BYTES",
                64 << 10,
                0..=16 << 20,
            )?)
            .unwrap_or(64 << 10),
            shutdown_deadline: seconds(get, "TELEMETRY_SHUTDOWN_SECONDS", 10, 0)?,
        })
    }
}

impl QuotaSettings {
    fn read(get: &impl Get, data_dir: &Path) -> Result<Self, SettingsError> {
        Ok(Self {
            fail_mode: match get("QUOTA_FAIL_MODE").as_deref().map(str::trim) {
                None | Some("closed") => FailMode::Closed,
                Some("open") => FailMode::Open,
                Some(other) => {
                    return Err(SettingsError::Invalid {
                        variable: "QUOTA_FAIL_MODE",
                        reason: format!("expected `closed` or `open`, got `{other}`"),
                    });
                }
            },
            redis_timeout: Duration::from_millis(number(
                get,
                "QUOTA_REDIS_TIMEOUT_MS",
                250,
                1..=60_000,
            )?),
            store_path: data_path(get, "QUOTA_STORE_PATH", data_dir, "quota.redb"),
        })
    }
}

fn read_env_file(path: &Path, required: bool) -> Result<HashMap<String, String>, SettingsError> {
    let iter = match dotenvy::from_path_iter(path) {
        Ok(iter) => iter,
        Err(_) if !required && !path.exists() => return Ok(HashMap::new()),
        Err(error) => {
            return Err(SettingsError::EnvFile {
                path: path.display().to_string(),
                reason: error.to_string(),
            });
        }
    };
    iter.map(|item| {
        item.map_err(|error| SettingsError::EnvFile {
            path: path.display().to_string(),
            reason: error.to_string(),
        })
    })
    .collect()
}

fn url(variable: &'static str, value: &str) -> Result<Url, SettingsError> {
    let parsed = Url::parse(value.trim()).map_err(|error| SettingsError::Invalid {
        variable,
        reason: format!("expected an http(s) URL, got an invalid one ({error})"),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(SettingsError::Invalid {
            variable,
            reason: "expected an http(s) URL with a host".into(),
        });
    }
    Ok(parsed)
}

/// `HELICONE_CONCURRENCY`: 1 to 256, the sink's own default when unset.
fn helicone_concurrency(get: &impl Get) -> Result<usize, SettingsError> {
    const DEFAULT: usize = HeliconeConfig::DEFAULT_CONCURRENCY;
    let number = number(get, "HELICONE_CONCURRENCY", DEFAULT as u64, 1..=256)?;
    Ok(usize::try_from(number).unwrap_or(DEFAULT))
}

/// A whole number within `range` (every numeric setting has an upper bound, so no later
/// arithmetic on it can overflow).
fn number(
    get: &impl Get,
    variable: &'static str,
    default: u64,
    range: RangeInclusive<u64>,
) -> Result<u64, SettingsError> {
    match get(variable) {
        None => Ok(default),
        Some(value) => match value.trim().parse::<u64>() {
            Ok(number) if range.contains(&number) => Ok(number),
            _ => Err(SettingsError::Invalid {
                variable,
                reason: format!(
                    "expected a whole number from {} to {}, got `{}`",
                    range.start(),
                    range.end(),
                    value.trim()
                ),
            }),
        },
    }
}

/// Seconds from `minimum` up to a day.
fn seconds(
    get: &impl Get,
    variable: &'static str,
    default: u64,
    minimum: u64,
) -> Result<Duration, SettingsError> {
    number(get, variable, default, minimum..=86_400).map(Duration::from_secs)
}

fn boolean(get: &impl Get, variable: &'static str) -> Result<bool, SettingsError> {
    match get(variable).map(|value| value.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(value) if matches!(value.as_str(), "true" | "1" | "yes" | "on") => Ok(true),
        Some(value) if matches!(value.as_str(), "false" | "0" | "no" | "off") => Ok(false),
        Some(value) => Err(SettingsError::Invalid {
            variable,
            reason: format!("expected true or false, got `{value}`"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    const BASE: [(&str, &str); 3] = [
        ("WEBUI_SECRET_KEY", "0123456789abcdef0123456789abcdef"),
        ("LITELLM_URL", "http://litellm:4000"),
        ("LITELLM_API_KEY", "sk-master-secret"),
    ];

    #[test]
    fn defaults_and_masked_display() {
        let settings = load(&BASE).unwrap();
        assert_eq!(settings.bind.to_string(), "0.0.0.0:8080");
        assert_eq!(settings.max_body_bytes, 10 << 20);
        assert!(settings.langfuse.is_none() && settings.helicone.is_none());
        let line = settings.to_string();
        assert!(line.contains("openwebui=none"), "{line}");
        assert!(!line.contains("sk-master-secret"), "{line}");
        assert!(!line.contains("0123456789abcdef"), "{line}");
    }

    #[test]
    fn missing_values_name_the_variable() {
        let message = load(&BASE[..2]).unwrap_err().to_string();
        assert!(
            message.starts_with("LITELLM_API_KEY is not set"),
            "{message}"
        );
        let message = load(&[BASE[0]]).unwrap_err().to_string();
        assert!(message.starts_with("LITELLM_URL is not set"), "{message}");
        let message = load(&BASE[1..]).unwrap_err().to_string();
        assert!(message.contains("WEBUI_SECRET_KEY_FILE"), "{message}");
    }

    #[test]
    fn rust_log_is_read_like_every_other_setting() {
        assert_eq!(load(&BASE).unwrap().log_filter, "info");
        let mut pairs = BASE.to_vec();
        pairs.push(("RUST_LOG", "warn,bff_api=debug"));
        assert_eq!(load(&pairs).unwrap().log_filter, "warn,bff_api=debug");
    }

    #[test]
    fn malformed_values_name_the_variable() {
        for (variable, value) in [
            ("BFF_BIND", "everywhere"),
            ("MAX_BODY_BYTES", "ten"),
            ("LOG_FORMAT", "xml"),
            ("TELEMETRY_CAPTURE", "some"),
            ("METRICS_REQUIRE_AUTH", "perhaps"),
            ("LANGFUSE_HOST", "http://langfuse:3000"),
            // Huge numbers would overflow a deadline or a shift later: refused here.
            ("REQUEST_TIMEOUT_SECONDS", "18446744073709551615"),
            ("TELEMETRY_SPOOL_MAX_MB", "17592186044416"),
            ("MAX_BODY_BYTES", "99999999999999"),
            ("TELEMETRY_MAX_CAPTURE_BYTES", "-1"),
        ] {
            let mut pairs = BASE.to_vec();
            pairs.push((variable, value));
            let message = load(&pairs).unwrap_err().to_string();
            assert!(message.starts_with(variable), "{variable}: {message}");
        }
    }

    #[test]
    fn every_variable_looked_up_is_in_the_documented_list() {
        let asked = std::sync::Mutex::new(std::collections::BTreeSet::new());
        let values: HashMap<&str, &str> = BASE.into_iter().collect();
        Settings::from_lookup(|name| {
            asked.lock().unwrap().insert(name.to_owned());
            values.get(name).map(|value| (*value).to_owned())
        })
        .unwrap();
        let asked = asked.into_inner().unwrap();
        let undocumented: Vec<&String> = asked
            .iter()
            .filter(|name| {
                !ENV_VARIABLES.contains(&name.as_str())
                    && !bff_auth::ENV_VARIABLES.contains(&name.as_str())
            })
            .collect();
        assert!(
            undocumented.is_empty(),
            "read but not listed: {undocumented:?}"
        );
        assert!(asked.len() > 30, "{asked:?}");
    }

    #[test]
    fn langfuse_and_helicone_are_configured_together() {
        let mut pairs = BASE.to_vec();
        pairs.extend([
            ("LANGFUSE_HOST", "http://langfuse:3000"),
            ("LANGFUSE_PUBLIC_KEY", "pk-lf"),
            ("LANGFUSE_SECRET_KEY", "sk-lf"),
            ("HELICONE_API_KEY", "sk-helicone"),
        ]);
        let settings = load(&pairs).unwrap();
        assert!(settings.langfuse.is_some());
        let helicone = settings.helicone.unwrap();
        assert_eq!(helicone.log_url.as_str(), "https://api.worker.helicone.ai/");
        assert_eq!(helicone.concurrency, 64);
    }

    #[test]
    fn helicone_concurrency_is_bounded() {
        let mut pairs = BASE.to_vec();
        pairs.extend([
            ("HELICONE_API_KEY", "sk-helicone"),
            ("HELICONE_CONCURRENCY", "64"),
        ]);
        assert_eq!(load(&pairs).unwrap().helicone.unwrap().concurrency, 64);
        for wrong in ["0", "257", "many"] {
            pairs.pop();
            pairs.push(("HELICONE_CONCURRENCY", wrong));
            let error = load(&pairs).unwrap_err().to_string();
            assert!(error.contains("HELICONE_CONCURRENCY"), "{error}");
        }
    }
}
