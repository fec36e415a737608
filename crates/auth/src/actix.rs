//! actix-web integration (feature `actix`, on by default).
//!
//! - [`Gate::require`] returns a middleware that authenticates the caller, checks one
//!   [`Permission`] and stores the [`Identity`] in the request extensions, so the permission is
//!   visible where the route is defined:
//!   `web::resource("/chat").wrap(gate.require(Permission::Chat))`.
//! - [`Identity`] is an extractor: it takes the identity the middleware stored, or authenticates
//!   on the spot through the [`Gate`] registered with `App::app_data(gate.clone())`.
//! - [`AuthError`] is an actix `ResponseError`: 401 (with `WWW-Authenticate: Bearer`), 403 or
//!   503, and an OpenAI-style body `{"error":{"message","type","param","code"}}`.
//!
//! ```no_run
//! # use bff_auth::{Gate, Identity, Permission};
//! # use actix_web::{web, App, HttpResponse};
//! # fn app(gate: Gate) {
//! App::new().app_data(gate.clone()).service(
//!     web::resource("/chat")
//!         .wrap(gate.require(Permission::Chat)) // 401/403/503 with an OpenAI-style body
//!         .route(web::post().to(|who: Identity| async move { HttpResponse::Ok().body(who.user_id) })),
//! );
//! # }
//! ```

use crate::authenticator::Gate;
use crate::credentials::RequestCredentials;
use crate::error::AuthError;
use crate::identity::Identity;
use crate::policy::Permission;
use actix_web::body::EitherBody;
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;

impl ResponseError for AuthError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if self.status() == 401 {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        response.json(serde_json::json!({
            "error": {
                "message": self.to_string(),
                "type": self.error_type(),
                "param": null,
                "code": self.code(),
            }
        }))
    }
}

/// Reads the credential-bearing headers of an actix request.
pub fn credentials_from_request(request: &HttpRequest) -> RequestCredentials {
    RequestCredentials::from_headers(
        request
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes())),
    )
}

/// The identity already established for this request, or a fresh authentication.
async fn identify(request: &HttpRequest) -> Result<Identity, AuthError> {
    if let Some(identity) = request.extensions().get::<Identity>() {
        return Ok(identity.clone());
    }
    let gate = request
        .app_data::<Gate>()
        .cloned()
        .ok_or(AuthError::NotConfigured)?;
    let identity = gate
        .authenticate(&credentials_from_request(request))
        .await?;
    request.extensions_mut().insert(identity.clone());
    Ok(identity)
}

impl FromRequest for Identity {
    type Error = AuthError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let request = request.clone();
        Box::pin(async move { identify(&request).await })
    }
}

impl Gate {
    /// Middleware that lets a request through only if its caller holds `permission`.
    pub fn require(&self, permission: Permission) -> RequirePermission {
        RequirePermission {
            gate: self.clone(),
            permission,
        }
    }
}

/// The middleware returned by [`Gate::require`].
#[derive(Clone)]
pub struct RequirePermission {
    gate: Gate,
    permission: Permission,
}

impl<S, B> Transform<S, ServiceRequest> for RequirePermission
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = RequirePermissionService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequirePermissionService {
            service: Rc::new(service),
            gate: self.gate.clone(),
            permission: self.permission,
        }))
    }
}

/// The service wrapped by [`RequirePermission`].
pub struct RequirePermissionService<S> {
    service: Rc<S>,
    gate: Gate,
    permission: Permission,
}

impl<S, B> Service<ServiceRequest> for RequirePermissionService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let service = Rc::clone(&self.service);
        let gate = self.gate.clone();
        let permission = self.permission;
        Box::pin(async move {
            let existing = request.extensions().get::<Identity>().cloned();
            let identity = match existing {
                Some(identity) => identity,
                None => match gate
                    .authenticate(&credentials_from_request(request.request()))
                    .await
                {
                    Ok(identity) => identity,
                    Err(error) => return Ok(reject(request, error)),
                },
            };
            if let Err(error) = gate.authorize(&identity, permission) {
                tracing::debug!(user_id = %identity.user_id, %permission, "permission denied");
                return Ok(reject(request, error));
            }
            request.extensions_mut().insert(identity);
            service
                .call(request)
                .await
                .map(ServiceResponse::map_into_left_body)
        })
    }
}

fn reject<B>(request: ServiceRequest, error: AuthError) -> ServiceResponse<EitherBody<B>> {
    tracing::debug!(code = error.code(), "request not authorized");
    request.error_response(error).map_into_right_body()
}
