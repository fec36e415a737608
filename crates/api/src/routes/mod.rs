//! The route table. Every route requires an authenticated caller (see [`crate::context`])
//! except the public allow-list; the permission each needs is written next to it.

pub mod chat;
pub mod observability;
pub mod ops;
pub mod quota;

/// Every route bff serves, as `(method, path)`; the deploy kit's routes must point at these.
pub const ROUTES: [(&str, &str); 19] = [
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/monitoring"),
    ("GET", "/monitoring.js"),
    ("GET", "/monitoring.css"),
    ("GET", "/monitoring.svg"),
    ("GET", "/metrics"),
    ("POST", "/chat/completions"),
    ("POST", "/chat/stream"),
    ("POST", "/v1/chat/completions"),
    ("GET", "/v1/models"),
    ("GET", "/observability/me"),
    ("GET", "/observability/health"),
    ("GET", "/observability/traces"),
    ("GET", "/observability/usage"),
    ("GET", "/observability/usage/users"),
    ("GET", "/observability/usage/groups"),
    ("GET", "/observability/quota"),
    ("GET", "/observability/traffic"),
];

/// The routes that call LiteLLM for a chat: what the usage store and the traffic panel count.
pub const CHAT_ROUTES: [&str; 3] = ["/chat/completions", "/chat/stream", "/v1/chat/completions"];

use crate::access::{CHAT, METRICS, MODELS, OBSERVABILITY_ALL, OBSERVABILITY_OWN};
use actix_web::middleware::Condition;
use actix_web::web;
use bff_auth::Gate;

/// Registers every route.
pub fn configure(config: &mut web::ServiceConfig, gate: &Gate, metrics_require_auth: bool) {
    config
        .route("/health", web::get().to(ops::health)) // public
        .route("/ready", web::get().to(ops::ready)) // public
        .route("/monitoring", web::get().to(ops::monitoring)) // public page; its data needs credentials
        .route("/monitoring.js", web::get().to(ops::monitoring_script)) // public
        .route("/monitoring.css", web::get().to(ops::monitoring_style)) // public
        .route("/monitoring.svg", web::get().to(ops::monitoring_icon)) // public
        .service(
            web::resource("/metrics") // public unless METRICS_REQUIRE_AUTH
                .wrap(Condition::new(metrics_require_auth, gate.require(METRICS)))
                .route(web::get().to(ops::metrics)),
        )
        .service(
            web::resource("/chat/completions")
                .wrap(gate.require(CHAT))
                .route(web::post().to(chat::completions)),
        )
        .service(
            web::resource("/chat/stream")
                .wrap(gate.require(CHAT))
                .route(web::post().to(chat::stream)),
        )
        .service(
            web::resource("/v1/chat/completions")
                .wrap(gate.require(CHAT))
                .route(web::post().to(chat::completions)),
        )
        .service(
            web::resource("/v1/models")
                .wrap(gate.require(MODELS))
                .route(web::get().to(ops::models)),
        )
        .service(
            web::scope("/observability")
                // Own data; `observability:all` widens traces and usage to every user.
                .wrap(gate.require(OBSERVABILITY_OWN))
                .route("/me", web::get().to(observability::me))
                .route("/health", web::get().to(observability::health))
                .route("/traces", web::get().to(observability::traces))
                .route("/usage", web::get().to(observability::usage))
                .service(
                    web::resource("/usage/users") // everyone's spend ranked: admins only
                        .wrap(gate.require(OBSERVABILITY_ALL))
                        .route(web::get().to(observability::top_users)),
                )
                .service(
                    web::resource("/usage/groups") // every group's spend: admins only
                        .wrap(gate.require(OBSERVABILITY_ALL))
                        .route(web::get().to(observability::groups)),
                )
                .route("/quota", web::get().to(quota::quota))
                .route("/traffic", web::get().to(observability::traffic)),
        );
}
