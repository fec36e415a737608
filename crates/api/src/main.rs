//! `bff`: the LLM backend-for-frontend. See `bff --help`.
// A command-line program: stdout and stderr are its interface (the server itself logs via tracing).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use bff_api::Application;
use bff_api::settings::Settings;
use bff_telemetry::{LogFormat, init_logging};
use clap::{Parser, Subcommand};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// mimalloc instead of glibc's allocator: under load, a quarter of bff's CPU samples were
/// glibc's malloc/free (see BENCHMARKS.md); mimalloc's thread-local free lists cost far less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// LLM backend-for-frontend: Open WebUI authentication and RBAC in front of a LiteLLM proxy,
/// with telemetry to Langfuse and Helicone.
///
/// Configuration comes from environment variables and a `.env` file (see `.env.example`).
#[derive(Parser)]
#[command(name = "bff", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Validate the configuration and the RBAC policy, print the effective configuration
    /// (secrets masked), and exit non-zero with the reasons if anything is wrong.
    CheckConfig,
    /// Mint a token for local testing, signed with the configured secret.
    ///
    /// Without --role: an Open WebUI session token (`Authorization: Bearer <token>`), signed
    /// with WEBUI_SECRET_KEY. It carries no role: bff learns the role from Open WebUI
    /// (OPENWEBUI_URL). With --role: a forwarded-user token for the `X-OpenWebUI-User-Jwt`
    /// header, signed with OPENWEBUI_FORWARD_JWT_SECRET; send it together with a service key
    /// from AUTH_SERVICE_KEYS as the Bearer credential.
    Token {
        /// The user id.
        #[arg(long)]
        user: String,
        /// The role (mints a forwarded-user token; see above).
        #[arg(long)]
        role: Option<String>,
        /// Lifetime, e.g. 30m, 1h, 7d.
        #[arg(long, default_value = "1h")]
        ttl: humantime::Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("bff: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings),
        Command::CheckConfig => check_config(&settings),
        Command::Token { user, role, ttl } => token(&settings, &user, role.as_deref(), ttl.into()),
    }
}

fn serve(settings: Settings) -> ExitCode {
    let format = settings.log_format;
    let _log_writer = match init_logging(format, &settings.log_filter) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("bff: {error}");
            return ExitCode::from(2);
        }
    };
    match bff_api::descriptors::raise_open_file_limit() {
        Ok(files) => tracing::info!(
            soft_before = files.before,
            soft = files.soft,
            hard = files.hard,
            "open-file limit: soft {} raised to the hard limit {}",
            files.before,
            files.hard
        ),
        Err(error) => tracing::warn!(%error, "the open-file limit could not be raised"),
    }
    let result = actix_web::rt::System::new().block_on(async move {
        let application = Application::build(settings).await?;
        application
            .run_until_stopped()
            .await
            .map_err(bff_api::StartupError::Bind)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("bff could not start: {error}");
            if format == LogFormat::Pretty {
                eprintln!("bff: {error}");
            }
            ExitCode::from(1)
        }
    }
}

/// Asks Open WebUI whether it answers and accepts bff's secret; prints what it found.
fn check_openwebui(url: &url::Url, settings: &Settings) -> bool {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            println!("error: cannot check Open WebUI: {error}");
            return false;
        }
    };
    let findings = runtime.block_on(bff_api::diagnose::openwebui(
        url,
        &settings.auth.webui_secret,
        settings.auth.directory_timeout.max(Duration::from_secs(2)),
    ));
    let mut ok = true;
    for finding in findings {
        match finding {
            Ok(fine) => println!("{fine}"),
            Err(problem) => {
                println!("error: {problem}");
                ok = false;
            }
        }
    }
    if settings.auth.forward_jwt_secret.is_some() {
        println!(
            "note: OPENWEBUI_FORWARD_JWT_SECRET cannot be checked from here (Open WebUI only signs with it); a mismatch shows as 401 invalid_signature on forwarded requests"
        );
    }
    ok
}

fn check_config(settings: &Settings) -> ExitCode {
    println!("effective configuration: {settings}");
    let mut ok = true;
    for warning in settings
        .auth
        .warnings()
        .into_iter()
        .chain(settings.warnings())
    {
        println!("warning: {warning}");
    }
    match bff_api::access::AccessPolicy::load(&settings.auth.policy_file) {
        Ok(access) => println!(
            "RBAC policy {}: roles {}; groups {}",
            settings.auth.policy_file.display(),
            access.policy().roles().collect::<Vec<_>>().join(", "),
            access.policy().groups().collect::<Vec<_>>().join(", ")
        ),
        Err(error) => {
            println!("error: RBAC policy {error}");
            ok = false;
        }
    }
    if let Some(url) = &settings.auth.openwebui_url {
        ok &= check_openwebui(url, settings);
    }
    if ok {
        println!("configuration is valid");
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn token(settings: &Settings, user: &str, role: Option<&str>, ttl: Duration) -> ExitCode {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let exp = now + ttl.as_secs();
    let (claims, secret, hint) = match role {
        None => (
            json!({"id": user, "typ": "session", "auth_method": "password", "auth_time": now,
                   "session_stamp": uuid::Uuid::new_v4().to_string(), "mfa_verified": false,
                   "exp": exp, "jti": uuid::Uuid::new_v4().to_string(), "iat": now}),
            settings.auth.webui_secret.expose().to_owned(),
            "send as `Authorization: Bearer <token>`; the role comes from Open WebUI (OPENWEBUI_URL)",
        ),
        Some(role) => {
            let Some(secret) = &settings.auth.forward_jwt_secret else {
                eprintln!(
                    "bff: --role mints an X-OpenWebUI-User-Jwt, which needs OPENWEBUI_FORWARD_JWT_SECRET (and a service key in AUTH_SERVICE_KEYS to send it with)"
                );
                return ExitCode::from(2);
            };
            (
                json!({"sub": user, "role": role, "iss": "open-webui", "iat": now, "exp": exp}),
                secret.expose().to_owned(),
                "send as `X-OpenWebUI-User-Jwt: <token>` with `Authorization: Bearer <a key from AUTH_SERVICE_KEYS>`",
            )
        }
    };
    match jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    ) {
        Ok(token) => {
            println!("{token}");
            eprintln!("bff: {hint}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("bff: cannot sign the token: {error}");
            ExitCode::from(1)
        }
    }
}
