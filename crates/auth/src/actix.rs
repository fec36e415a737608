//! actix-web integration (feature `actix`, on by default).
//!
//! One place decides who is calling, another what they may do:
//! - [`Gate::authenticate_requests`] returns the app-wide middleware that authenticates every
//!   request (except the public paths it is given) once and stores the [`Identity`] in the
//!   request extensions. It is the only code here that reads credentials.
//! - [`Gate::require`] returns a per-route middleware that checks one [`Permission`] of the
//!   stored identity, so the permission is visible where the route is defined:
//!   `web::resource("/chat").wrap(gate.require(CHAT))`.
//! - [`Identity`] is an extractor of the stored identity.
//! - [`AuthError`] is an actix `ResponseError`: 400, 401 (with `WWW-Authenticate: Bearer`), 403
//!   or 503, and an OpenAI-style body `{"error":{"message","type","param","code"}}`.
//!
//! ```no_run
//! # use bff_auth::{Gate, Identity, Permission};
//! # use actix_web::{web, App, HttpResponse};
//! const CHAT: Permission = Permission::new("chat");
//! # fn app(gate: Gate) {
//! App::new()
//!     .wrap(gate.authenticate_requests(["/health"])) // 401/503 with an OpenAI-style body
//!     .service(
//!         web::resource("/chat")
//!             .wrap(gate.require(CHAT)) // 403
//!             .route(web::post().to(|who: Identity| async move { HttpResponse::Ok().body(who.user_id) })),
//!     );
//! # }
//! ```

use crate::authenticator::Gate;
use crate::credentials::RequestCredentials;
use crate::error::AuthError;
use crate::identity::Identity;
use crate::policy::Permission;
use actix_web::body::EitherBody;
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError};
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

impl ResponseError for AuthError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if self.status() == 401 {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        response.json(self.body())
    }
}

/// Reads the credential-bearing headers and the method of an actix request.
pub fn credentials_from_request(request: &HttpRequest) -> RequestCredentials {
    RequestCredentials::from_headers(
        request
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes())),
    )
    .with_method(request.method().as_str())
}

impl FromRequest for Identity {
    type Error = AuthError;
    type Future = Ready<Result<Self, Self::Error>>;

    /// The identity [`Gate::authenticate_requests`] stored; 401 on a route it left public.
    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            request
                .extensions()
                .get::<Identity>()
                .cloned()
                .ok_or(AuthError::MissingCredentials),
        )
    }
}

impl Gate {
    /// App-wide middleware: authenticates every request except `OPTIONS` and the exact
    /// `public_paths`, and stores the [`Identity`]; refuses with 401/503 otherwise.
    pub fn authenticate_requests<'a>(
        &self,
        public_paths: impl IntoIterator<Item = &'a str>,
    ) -> Authenticate {
        Authenticate {
            gate: self.clone(),
            public_paths: public_paths.into_iter().map(str::to_owned).collect(),
        }
    }

    /// Per-route middleware: lets a request through only if the identity stored by
    /// [`Gate::authenticate_requests`] holds `permission`.
    pub fn require(&self, permission: Permission) -> RequirePermission {
        RequirePermission {
            gate: self.clone(),
            permission,
        }
    }
}

/// The middleware returned by [`Gate::authenticate_requests`].
#[derive(Clone)]
pub struct Authenticate {
    gate: Gate,
    public_paths: Arc<[String]>,
}

impl<S, B> Transform<S, ServiceRequest> for Authenticate
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = AuthenticateService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(AuthenticateService {
            service: Rc::new(service),
            gate: self.gate.clone(),
            public_paths: Arc::clone(&self.public_paths),
        }))
    }
}

/// The service wrapped by [`Authenticate`].
pub struct AuthenticateService<S> {
    service: Rc<S>,
    gate: Gate,
    public_paths: Arc<[String]>,
}

impl<S, B> Service<ServiceRequest> for AuthenticateService<S>
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
        let public = request.method() == Method::OPTIONS
            || self.public_paths.iter().any(|path| path == request.path());
        Box::pin(async move {
            if !public {
                match gate
                    .authenticate(&credentials_from_request(request.request()))
                    .await
                {
                    Ok(identity) => {
                        request.extensions_mut().insert(identity);
                    }
                    Err(error) => return Ok(reject(request, error)),
                }
            }
            service
                .call(request)
                .await
                .map(ServiceResponse::map_into_left_body)
        })
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
            permission: self.permission.clone(),
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
        let identity = request.extensions().get::<Identity>().cloned();
        let verdict = match &identity {
            None => Err(AuthError::MissingCredentials),
            Some(identity) => self.gate.authorize(identity, &self.permission),
        };
        if let Err(error) = verdict {
            tracing::debug!(permission = %self.permission, code = error.code(), "permission denied");
            return Box::pin(ready(Ok(reject(request, error))));
        }
        let service = Rc::clone(&self.service);
        Box::pin(async move {
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
