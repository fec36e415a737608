//! tower integration (feature `tower`), for axum, hyper or any `tower::Service` over `http`
//! types:
//! - [`AuthLayer`] decides who is calling, once per request: the [`Identity`] goes into the
//!   request's extensions (axum: `Extension<Identity>`), or the request is answered with 401,
//!   400 or 503 in OpenAI's error shape. `OPTIONS` and the public paths pass unauthenticated.
//! - [`RequireLayer`] lets through only callers holding a permission (403 otherwise), for a
//!   route or a router.
//! - [`error_response`] renders any [`AuthError`] the same way, for handlers that check more
//!   themselves (`gate.authorize(&identity, &permission)`).
//!
//! ```no_run
//! # use bff_auth::{Gate, Permission, Identity};
//! # use bff_auth::tower::{AuthLayer, RequireLayer};
//! # fn app(gate: Gate) {
//! const CHAT: Permission = Permission::new("chat");
//! let layers = tower::ServiceBuilder::new()
//!     .layer(AuthLayer::new(gate.clone(), ["/health"]))
//!     .layer(RequireLayer::new(gate, CHAT));
//! # let _ = layers;
//! # }
//! ```

use crate::authenticator::Gate;
use crate::credentials::RequestCredentials;
use crate::error::AuthError;
use crate::identity::Identity;
use crate::policy::Permission;
use http::{Method, Request, Response, StatusCode, header};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_layer::Layer;
use tower_service::Service;

/// A boxed, sendable response future.
type ResponseFuture<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

/// `error` as an HTTP response: its status, OpenAI's error body, `WWW-Authenticate: Bearer` on
/// 401. The body type is any that can be made from a `String` (axum's `Body`, `String`, …).
pub fn error_response<B: From<String>>(error: &AuthError) -> Response<B> {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = Response::new(B::from(error.body().to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

/// The credentials a request presents (headers and method).
pub fn credentials_of<B>(request: &Request<B>) -> RequestCredentials {
    RequestCredentials::from_headers(
        request
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_bytes())),
    )
    .with_method(request.method().as_str())
}

/// Authenticates every request except `OPTIONS` and the public paths (exact matches).
#[derive(Clone)]
pub struct AuthLayer {
    gate: Gate,
    public_paths: Arc<[String]>,
}

impl AuthLayer {
    /// A layer asking `gate` who is calling; `public_paths` need no credential.
    pub fn new<'a>(gate: Gate, public_paths: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            gate,
            public_paths: public_paths.into_iter().map(str::to_owned).collect(),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = GateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GateService {
            inner,
            gate: self.gate.clone(),
            check: Check::Authenticate(Arc::clone(&self.public_paths)),
        }
    }
}

/// Lets through only callers whose [`Identity`] (put there by [`AuthLayer`]) holds a permission.
#[derive(Clone)]
pub struct RequireLayer {
    gate: Gate,
    permission: Permission,
}

impl RequireLayer {
    /// A layer requiring `permission` under `gate`'s policy.
    pub fn new(gate: Gate, permission: Permission) -> Self {
        Self { gate, permission }
    }
}

impl<S> Layer<S> for RequireLayer {
    type Service = GateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GateService {
            inner,
            gate: self.gate.clone(),
            check: Check::Require(self.permission.clone()),
        }
    }
}

/// What a [`GateService`] checks before the inner service runs.
#[derive(Clone)]
enum Check {
    /// Who is calling, except on these paths and `OPTIONS`.
    Authenticate(Arc<[String]>),
    /// That the caller holds this permission.
    Require(Permission),
}

/// The service [`AuthLayer`] and [`RequireLayer`] make.
#[derive(Clone)]
pub struct GateService<S> {
    inner: S,
    gate: Gate,
    check: Check,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GateService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The clone waits for its own readiness; the ready one serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (gate, check) = (self.gate.clone(), self.check.clone());
        Box::pin(async move {
            let decision = match check {
                Check::Authenticate(public) => {
                    let exempt = request.method() == Method::OPTIONS
                        || public.iter().any(|path| path == request.uri().path());
                    if exempt {
                        Ok(())
                    } else {
                        gate.authenticate(&credentials_of(&request))
                            .await
                            .map(|identity| {
                                request.extensions_mut().insert(identity);
                            })
                    }
                }
                Check::Require(permission) => match request.extensions().get::<Identity>() {
                    // No identity: the route was wired without AuthLayer in front, or is public.
                    None => Err(AuthError::MissingCredentials),
                    Some(identity) => gate.authorize(identity, &permission),
                },
            };
            match decision {
                Ok(()) => inner.call(request).await,
                Err(error) => Ok(error_response(&error)),
            }
        })
    }
}
