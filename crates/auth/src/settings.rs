//! Typed, validated auth settings read from environment variables.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `WEBUI_SECRET_KEY` | — | Open WebUI's session signing secret (used byte for byte) |
//! | `WEBUI_SECRET_KEY_FILE` | — | or: path of Open WebUI's `.webui_secret_key` |
//! | `AUTH_TOKEN_LEEWAY_SECONDS` | `0` | clock skew tolerated on `exp`/`nbf`/`iat` |
//! | `AUTH_ALLOW_NON_EXPIRING_TOKENS` | `false` | accept session tokens without `exp` |
//! | `OPENWEBUI_URL` | — | Open WebUI base URL; without it callers get no role |
//! | `OPENWEBUI_TIMEOUT_MS` | `2000` | per-call timeout for role/revocation lookups |
//! | `AUTH_CACHE_TTL_SECONDS` | `60` | how long an answer is reused: the revocation lag |
//! | `AUTH_CACHE_CAPACITY` | `10000` | credentials remembered at most |
//! | `AUTH_SERVICE_KEYS` | — | `name=key,…`: keys of trusted backends |
//! | `OPENWEBUI_FORWARD_JWT_SECRET` | — | Open WebUI's `FORWARD_USER_INFO_HEADER_JWT_SECRET` |
//! | `AUTH_TRUST_FORWARDED_USER_HEADERS` | `false` | honour plain `X-OpenWebUI-User-*` with a service key; refused together with `OPENWEBUI_FORWARD_JWT_SECRET` |
//! | `AUTH_LEARN_GROUPS` | `true` | ask Open WebUI for each caller's groups (with the role, same cache) |
//! | `OPENWEBUI_ADMIN_API_KEY` | — | an Open WebUI admin's API key: forwarded users' groups are looked up with it instead of read from `X-OpenWebUI-User-Groups` |
//! | `RBAC_POLICY_FILE` | `config/rbac.toml` | role → permission policy |

use crate::credentials::is_api_key_body;
use crate::error::ConfigError;
use crate::secret::Secret;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// Recommended minimum secret length; shorter secrets work but draw a start-up warning.
pub const RECOMMENDED_SECRET_BYTES: usize = 32;
/// Shortest service key accepted.
pub const MIN_SERVICE_KEY_BYTES: usize = 16;

/// Every environment variable this crate reads, for documentation checks.
pub const ENV_VARIABLES: [&str; 14] = [
    "WEBUI_SECRET_KEY",
    "WEBUI_SECRET_KEY_FILE",
    "AUTH_TOKEN_LEEWAY_SECONDS",
    "AUTH_ALLOW_NON_EXPIRING_TOKENS",
    "OPENWEBUI_URL",
    "OPENWEBUI_TIMEOUT_MS",
    "AUTH_CACHE_TTL_SECONDS",
    "AUTH_CACHE_CAPACITY",
    "AUTH_SERVICE_KEYS",
    "OPENWEBUI_FORWARD_JWT_SECRET",
    "AUTH_TRUST_FORWARDED_USER_HEADERS",
    "AUTH_LEARN_GROUPS",
    "OPENWEBUI_ADMIN_API_KEY",
    "RBAC_POLICY_FILE",
];

/// Secret variables checked for surrounding whitespace (a start-up warning).
const SECRET_VARIABLES: [&str; 3] = [
    "WEBUI_SECRET_KEY",
    "OPENWEBUI_FORWARD_JWT_SECRET",
    "OPENWEBUI_ADMIN_API_KEY",
];

/// Auth configuration. Build with [`AuthSettings::from_env`] or [`AuthSettings::from_lookup`].
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// Open WebUI's `WEBUI_SECRET_KEY`.
    pub webui_secret: Secret,
    /// Clock skew tolerated on token times, in seconds.
    pub token_leeway_secs: u64,
    /// Accept session tokens without `exp`.
    pub allow_non_expiring_tokens: bool,
    /// Open WebUI base URL, for roles, revocation and API keys.
    pub openwebui_url: Option<Url>,
    /// Timeout of one Open WebUI lookup.
    pub directory_timeout: Duration,
    /// How long a lookup answer is reused.
    pub cache_ttl: Duration,
    /// Most credentials cached.
    pub cache_capacity: usize,
    /// Named service keys.
    pub service_keys: Vec<(String, Secret)>,
    /// Secret for `X-OpenWebUI-User-Jwt`.
    pub forward_jwt_secret: Option<Secret>,
    /// Honour plain `X-OpenWebUI-User-*` headers (with a service key).
    pub trust_forwarded_headers: bool,
    /// Ask Open WebUI for each caller's groups.
    pub learn_groups: bool,
    /// An Open WebUI admin's API key, for forwarded users' groups.
    pub admin_api_key: Option<Secret>,
    /// Path of the RBAC policy.
    pub policy_file: PathBuf,
    /// Secret variables that had leading or trailing whitespace (warned about at start-up).
    pub padded_secrets: Vec<&'static str>,
}

impl AuthSettings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (the environment, a `.env` map, a test table).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let settings = Self {
            webui_secret: webui_secret(lookup("WEBUI_SECRET_KEY"), get("WEBUI_SECRET_KEY_FILE"))?,
            token_leeway_secs: parse_number(
                "AUTH_TOKEN_LEEWAY_SECONDS",
                get("AUTH_TOKEN_LEEWAY_SECONDS"),
                0,
                0..=3600,
            )?,
            allow_non_expiring_tokens: parse_bool(
                "AUTH_ALLOW_NON_EXPIRING_TOKENS",
                get("AUTH_ALLOW_NON_EXPIRING_TOKENS"),
                false,
            )?,
            openwebui_url: get("OPENWEBUI_URL")
                .map(|value| parse_url("OPENWEBUI_URL", &value))
                .transpose()?,
            directory_timeout: Duration::from_millis(parse_number(
                "OPENWEBUI_TIMEOUT_MS",
                get("OPENWEBUI_TIMEOUT_MS"),
                2000,
                1..=600_000,
            )?),
            cache_ttl: Duration::from_secs(parse_number(
                "AUTH_CACHE_TTL_SECONDS",
                get("AUTH_CACHE_TTL_SECONDS"),
                60,
                0..=86_400,
            )?),
            cache_capacity: usize::try_from(parse_number(
                "AUTH_CACHE_CAPACITY",
                get("AUTH_CACHE_CAPACITY"),
                10_000,
                1..=10_000_000,
            )?)
            .unwrap_or(usize::MAX),
            service_keys: get("AUTH_SERVICE_KEYS")
                .map(|value| parse_service_keys(&value))
                .transpose()?
                .unwrap_or_default(),
            // Open WebUI strips this secret before signing with it; so does bff.
            forward_jwt_secret: get("OPENWEBUI_FORWARD_JWT_SECRET")
                .map(|value| Secret::new(value.trim())),
            padded_secrets: SECRET_VARIABLES
                .into_iter()
                .filter(|name| lookup(name).is_some_and(|value| value.trim() != value))
                .collect(),
            trust_forwarded_headers: parse_bool(
                "AUTH_TRUST_FORWARDED_USER_HEADERS",
                get("AUTH_TRUST_FORWARDED_USER_HEADERS"),
                false,
            )?,
            learn_groups: parse_bool("AUTH_LEARN_GROUPS", get("AUTH_LEARN_GROUPS"), true)?,
            admin_api_key: get("OPENWEBUI_ADMIN_API_KEY")
                .map(|value| parse_admin_key(&value))
                .transpose()?,
            policy_file: get("RBAC_POLICY_FILE")
                .map_or_else(|| PathBuf::from("config/rbac.toml"), PathBuf::from),
        };
        if settings.trust_forwarded_headers && settings.forward_jwt_secret.is_some() {
            return Err(ConfigError::InvalidValue {
                variable: "AUTH_TRUST_FORWARDED_USER_HEADERS",
                reason: "must be false when OPENWEBUI_FORWARD_JWT_SECRET is set: Open WebUI then signs the user it forwards, and honouring unsigned X-OpenWebUI-User-* headers as well would let a service-key holder claim any user and role".to_owned(),
            });
        }
        Ok(settings)
    }

    /// Things that work but that an operator should hear about at start-up.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for variable in &self.padded_secrets {
            warnings.push(format!(
                "{variable} has leading or trailing whitespace; {}",
                if *variable == "WEBUI_SECRET_KEY" {
                    "it is used byte for byte, as Open WebUI does, so check that this is intended"
                } else {
                    "it was removed, as Open WebUI does"
                }
            ));
        }
        if self.webui_secret.len() < RECOMMENDED_SECRET_BYTES {
            warnings.push(format!(
                "WEBUI_SECRET_KEY is {} bytes; at least {RECOMMENDED_SECRET_BYTES} are recommended",
                self.webui_secret.len()
            ));
        }
        if self.openwebui_url.is_none() {
            warnings.push(
                "OPENWEBUI_URL is not set: session tokens authenticate but carry no role, so they get no permissions, API keys cannot be verified, and revoked sessions stay valid until they expire"
                    .to_owned(),
            );
        }
        if self.trust_forwarded_headers && self.service_keys.is_empty() {
            warnings.push(
                "AUTH_TRUST_FORWARDED_USER_HEADERS=true has no effect without AUTH_SERVICE_KEYS"
                    .to_owned(),
            );
        }
        if self.admin_api_key.is_some() && self.openwebui_url.is_none() {
            warnings.push("OPENWEBUI_ADMIN_API_KEY has no effect without OPENWEBUI_URL".to_owned());
        }
        if self.forward_jwt_secret.is_some() && self.service_keys.is_empty() {
            warnings.push(
                "OPENWEBUI_FORWARD_JWT_SECRET has no effect without AUTH_SERVICE_KEYS".to_owned(),
            );
        }
        warnings
    }
}

/// The secret from the variable (byte for byte, even with surrounding spaces) or the file.
fn webui_secret(value: Option<String>, file: Option<String>) -> Result<Secret, ConfigError> {
    if let Some(value) = value.filter(|value| !value.is_empty()) {
        return Ok(Secret::new(value));
    }
    let Some(path) = file else {
        return Err(ConfigError::MissingSecret);
    };
    let bytes = std::fs::read(&path).map_err(|error| ConfigError::SecretFile {
        path: path.clone(),
        reason: format!("cannot be read: {error}"),
    })?;
    // Open WebUI uses the file's text as-is: no trimming, no base64 decoding.
    let text = String::from_utf8(bytes).map_err(|_| ConfigError::SecretFile {
        path: path.clone(),
        reason: "is not UTF-8 text".to_owned(),
    })?;
    if text.is_empty() {
        return Err(ConfigError::SecretFile {
            path,
            reason: "is empty; set WEBUI_SECRET_KEY or point WEBUI_SECRET_KEY_FILE at Open WebUI's .webui_secret_key".to_owned(),
        });
    }
    Ok(Secret::new(text))
}

fn parse_number(
    variable: &'static str,
    value: Option<String>,
    default: u64,
    range: RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    match value.trim().parse::<u64>() {
        Ok(number) if range.contains(&number) => Ok(number),
        _ => Err(ConfigError::InvalidValue {
            variable,
            reason: format!(
                "expected a whole number from {} to {}, got `{}`",
                range.start(),
                range.end(),
                value.trim()
            ),
        }),
    }
}

fn parse_bool(
    variable: &'static str,
    value: Option<String>,
    default: bool,
) -> Result<bool, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        other => Err(ConfigError::InvalidValue {
            variable,
            reason: format!("expected true or false, got `{other}`"),
        }),
    }
}

/// An Open WebUI API key (`sk-` and 32 hex digits); the message never echoes the value.
fn parse_admin_key(value: &str) -> Result<Secret, ConfigError> {
    let key = value.trim();
    if !key.strip_prefix("sk-").is_some_and(is_api_key_body) {
        return Err(ConfigError::InvalidValue {
            variable: "OPENWEBUI_ADMIN_API_KEY",
            reason: "expected an Open WebUI API key (`sk-` and 32 hexadecimal digits) of an admin account".to_owned(),
        });
    }
    Ok(Secret::new(key))
}

fn parse_url(variable: &'static str, value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value.trim()).map_err(|error| ConfigError::InvalidValue {
        variable,
        reason: format!(
            "expected an http(s) URL such as http://open-webui:8080, got an invalid URL ({error})"
        ),
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::InvalidValue {
            variable,
            reason: "expected an http(s) URL with a host, such as http://open-webui:8080"
                .to_owned(),
        });
    }
    Ok(url)
}

/// Parses `name=key,name=key`. Names: letters, digits, `-`, `_`, `.`; keys: at least
/// [`MIN_SERVICE_KEY_BYTES`]. Errors never echo a key.
fn parse_service_keys(value: &str) -> Result<Vec<(String, Secret)>, ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidValue {
        variable: "AUTH_SERVICE_KEYS",
        reason,
    };
    let mut keys: Vec<(String, Secret)> = Vec::new();
    for (position, entry) in value.split(',').map(str::trim).enumerate() {
        let entry_number = position + 1;
        let Some((name, key)) = entry.split_once('=') else {
            return Err(invalid(format!(
                "entry {entry_number} is not `name=key` (expected e.g. openwebui=<key>,batch=<key>)"
            )));
        };
        let name = name.trim();
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_name {
            return Err(invalid(format!(
                "entry {entry_number}: the name must be 1-64 letters, digits, `-`, `_` or `.`"
            )));
        }
        if key.len() < MIN_SERVICE_KEY_BYTES {
            return Err(invalid(format!(
                "the key named `{name}` is shorter than {MIN_SERVICE_KEY_BYTES} bytes"
            )));
        }
        if keys.iter().any(|(existing, _)| existing == name) {
            return Err(invalid(format!("the name `{name}` is used twice")));
        }
        keys.push((name.to_owned(), Secret::new(key)));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<AuthSettings, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        AuthSettings::from_lookup(|name| map.get(name).cloned())
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn defaults() {
        let s = settings(&[("WEBUI_SECRET_KEY", SECRET)]).unwrap();
        assert_eq!(s.webui_secret.expose(), SECRET);
        assert_eq!(s.token_leeway_secs, 0);
        assert!(!s.allow_non_expiring_tokens);
        assert_eq!(s.openwebui_url, None);
        assert_eq!(s.directory_timeout, Duration::from_secs(2));
        assert_eq!(s.cache_ttl, Duration::from_secs(60));
        assert_eq!(s.cache_capacity, 10_000);
        assert!(s.service_keys.is_empty());
        assert!(!s.trust_forwarded_headers);
        assert_eq!(s.policy_file, PathBuf::from("config/rbac.toml"));
    }

    #[test]
    fn missing_or_empty_secret_names_both_variables() {
        for pairs in [&[][..], &[("WEBUI_SECRET_KEY", "")][..]] {
            let message = settings(pairs).unwrap_err().to_string();
            assert!(message.contains("WEBUI_SECRET_KEY "), "{message}");
            assert!(message.contains("WEBUI_SECRET_KEY_FILE"), "{message}");
        }
    }

    #[test]
    fn secret_is_used_byte_for_byte() {
        let s = settings(&[("WEBUI_SECRET_KEY", " spaced secret \n")]).unwrap();
        assert_eq!(s.webui_secret.expose(), " spaced secret \n");
    }

    #[test]
    fn secret_file_is_read_without_trimming_or_decoding() {
        let dir = std::env::temp_dir().join(format!("bff-auth-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".webui_secret_key");
        std::fs::write(&path, "c2VjcmV0LWJhc2U2NC10ZXh0LTI0Ynl0\n").unwrap();
        let s = settings(&[("WEBUI_SECRET_KEY_FILE", path.to_str().unwrap())]).unwrap();
        assert_eq!(
            s.webui_secret.expose(),
            "c2VjcmV0LWJhc2U2NC10ZXh0LTI0Ynl0\n"
        );

        std::fs::write(&path, "").unwrap();
        let message = settings(&[("WEBUI_SECRET_KEY_FILE", path.to_str().unwrap())])
            .unwrap_err()
            .to_string();
        assert!(message.contains("is empty"), "{message}");

        let message = settings(&[("WEBUI_SECRET_KEY_FILE", "/nonexistent/key")])
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("WEBUI_SECRET_KEY_FILE (/nonexistent/key)"),
            "{message}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn short_secret_and_missing_directory_warn() {
        let s = settings(&[("WEBUI_SECRET_KEY", "short")]).unwrap();
        let warnings = s.warnings();
        assert!(
            warnings.iter().any(|w| w.contains("5 bytes")),
            "{warnings:?}"
        );
        assert!(
            warnings.iter().any(|w| w.contains("OPENWEBUI_URL")),
            "{warnings:?}"
        );
        let s = settings(&[
            ("WEBUI_SECRET_KEY", SECRET),
            ("OPENWEBUI_URL", "http://open-webui:8080"),
        ])
        .unwrap();
        assert!(s.warnings().is_empty(), "{:?}", s.warnings());
    }

    #[test]
    fn unsigned_headers_cannot_be_trusted_next_to_a_signing_secret() {
        let error = settings(&[
            ("WEBUI_SECRET_KEY", "x"),
            ("OPENWEBUI_FORWARD_JWT_SECRET", "forward-secret"),
            ("AUTH_TRUST_FORWARDED_USER_HEADERS", "true"),
        ])
        .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("AUTH_TRUST_FORWARDED_USER_HEADERS: must be false"),
            "{error}"
        );
    }

    #[test]
    fn the_forward_secret_is_trimmed_like_open_webui_does_and_padding_is_reported() {
        let s = settings(&[
            ("WEBUI_SECRET_KEY", " padded-webui-secret-of-32-bytes!"),
            ("OPENWEBUI_FORWARD_JWT_SECRET", "forward-secret \n"),
        ])
        .unwrap();
        assert_eq!(s.forward_jwt_secret.unwrap().expose(), "forward-secret");
        assert_eq!(s.webui_secret.expose(), " padded-webui-secret-of-32-bytes!");
        assert_eq!(
            s.padded_secrets,
            ["WEBUI_SECRET_KEY", "OPENWEBUI_FORWARD_JWT_SECRET"]
        );
    }

    #[test]
    fn numbers_have_upper_bounds() {
        let error = settings(&[
            ("WEBUI_SECRET_KEY", "x"),
            ("AUTH_CACHE_TTL_SECONDS", "99999999999"),
        ])
        .unwrap_err();
        assert!(error.to_string().contains("from 0 to 86400"), "{error}");
    }

    #[test]
    fn malformed_values_name_the_variable() {
        let cases = [
            ("AUTH_TOKEN_LEEWAY_SECONDS", "soon"),
            ("AUTH_ALLOW_NON_EXPIRING_TOKENS", "maybe"),
            ("OPENWEBUI_URL", "not a url"),
            ("OPENWEBUI_URL", "ftp://open-webui"),
            ("OPENWEBUI_TIMEOUT_MS", "0"),
            ("AUTH_CACHE_CAPACITY", "-1"),
            ("AUTH_SERVICE_KEYS", "no-equals-sign-here-at-all"),
        ];
        for (variable, value) in cases {
            let message = settings(&[("WEBUI_SECRET_KEY", SECRET), (variable, value)])
                .unwrap_err()
                .to_string();
            assert!(
                message.starts_with(variable),
                "{variable}={value}: {message}"
            );
        }
    }

    #[test]
    fn service_keys_parse_and_errors_do_not_echo_keys() {
        let s = settings(&[
            ("WEBUI_SECRET_KEY", SECRET),
            (
                "AUTH_SERVICE_KEYS",
                "openwebui=sk-bff-connection-key-0001, batch=base64+key/with==",
            ),
        ])
        .unwrap();
        let names: Vec<&str> = s.service_keys.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["openwebui", "batch"]);
        assert_eq!(s.service_keys[1].1.expose(), "base64+key/with==");

        let message = settings(&[
            ("WEBUI_SECRET_KEY", SECRET),
            ("AUTH_SERVICE_KEYS", "openwebui=short-key"),
        ])
        .unwrap_err()
        .to_string();
        assert!(message.contains("shorter than 16"), "{message}");
        assert!(!message.contains("short-key"), "{message}");
        let message = settings(&[
            ("WEBUI_SECRET_KEY", SECRET),
            (
                "AUTH_SERVICE_KEYS",
                "a=aaaaaaaaaaaaaaaaaaaa,a=bbbbbbbbbbbbbbbbbbbbbb",
            ),
        ])
        .unwrap_err()
        .to_string();
        assert!(message.contains("used twice"), "{message}");
    }
}
