//! What every handler shares.

use crate::access::AccessPolicy;
use crate::metrics::Metrics;
use crate::models::KnownModels;
use crate::observability::Observability;
use crate::reporting::Reporting;
use bff_auth::Gate;
use bff_providers::LiteLlm;
use bff_quota::Quota;
use bff_telemetry::Pipeline;
use std::sync::Arc;
use std::time::Duration;

/// Shared application state, built once by [`crate::Application::build`].
pub struct AppState {
    /// The LiteLLM client.
    pub litellm: Arc<dyn LiteLlm>,
    /// Authentication and RBAC.
    pub gate: Gate,
    /// What each caller may do: routes, models, body fields, usage limits.
    pub access: AccessPolicy,
    /// The models LiteLLM is known to serve.
    pub models: KnownModels,
    /// The telemetry pipeline (for its counters; records reach it as finished exchanges).
    pub telemetry: Arc<Pipeline>,
    /// Prometheus metrics (counted from finished exchanges; read here to render).
    pub metrics: Arc<Metrics>,
    /// Usage limits.
    pub quota: Arc<Quota>,
    /// Usage, people, recent requests and traffic, for the reports.
    pub reporting: Arc<Reporting>,
    /// Readers of the observability backends.
    pub observability: Observability,
    /// Deadline of one chat request.
    pub request_timeout: Duration,
    /// `langfuse.environment` for telemetry records.
    pub environment: Option<String>,
    /// Whether `/metrics` needs a permission.
    pub metrics_require_auth: bool,
}
