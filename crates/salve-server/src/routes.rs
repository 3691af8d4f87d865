//! The route table: every route with its method, path and the access it requires. The router
//! is built from it, and tests enumerate it, so a route cannot exist without a declared access.

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, patch, post};
use salve_core::audit::{Action, Actor, AuditEvent, ChainScope, Outcome, RequestContext};
use salve_core::permissions::{Operation, authorize_token};

use crate::AppState;
use crate::api::{health, patients};
use crate::context::ClientInfo;
use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials; serves no patient data.
    Public,
    /// An API token of the practice, with the scope the operation needs.
    Token(Operation),
    /// The metrics token (when metrics are served on the main listener).
    MetricsToken,
}

#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

fn table() -> Vec<(RouteSpec, MethodRouter<AppState>)> {
    use Access::*;
    use Operation::*;
    let r =
        |method: Method, path: &'static str, access: Access, handler: MethodRouter<AppState>| {
            (
                RouteSpec {
                    method,
                    path,
                    access,
                },
                handler,
            )
        };
    vec![
        r(Method::GET, "/healthz", Public, get(health::healthz)),
        r(Method::GET, "/readyz", Public, get(health::readyz)),
        r(
            Method::GET,
            "/metrics",
            MetricsToken,
            get(health::metrics_with_token),
        ),
        r(
            Method::GET,
            "/api/v1/openapi.json",
            Public,
            get(crate::openapi::document),
        ),
        r(
            Method::POST,
            "/api/v1/patients",
            Token(PatientCreate),
            post(patients::create),
        ),
        r(
            Method::GET,
            "/api/v1/patients",
            Token(PatientList),
            get(patients::list),
        ),
        r(
            Method::POST,
            "/api/v1/patients/search",
            Token(PatientSearch),
            post(patients::search),
        ),
        r(
            Method::POST,
            "/api/v1/patients/lookup",
            Token(PatientLookup),
            post(patients::lookup),
        ),
        r(
            Method::GET,
            "/api/v1/patients/{id}",
            Token(PatientRead),
            get(patients::read),
        ),
        r(
            Method::PATCH,
            "/api/v1/patients/{id}",
            Token(PatientUpdate),
            patch(patients::update),
        ),
    ]
}

/// Every route and its declared access, for tests and documentation.
pub fn route_specs() -> Vec<RouteSpec> {
    table().into_iter().map(|(spec, _)| spec).collect()
}

pub(crate) fn router(state: &AppState) -> axum::Router<AppState> {
    let mut router = axum::Router::new();
    for (spec, handler) in table() {
        let handler = match spec.access {
            Access::Public | Access::MetricsToken => handler,
            Access::Token(op) => handler.route_layer(middleware::from_fn_with_state(
                state.clone(),
                move |State(s): State<AppState>, req: Request, next: Next| {
                    token_gate(s, op, req, next)
                },
            )),
        };
        router = router.route(spec.path, handler);
    }
    router
}

fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Records a refused request, then answers with `error` (or with the audit failure).
async fn refuse(
    state: &AppState,
    scope: ChainScope,
    actor: Actor,
    context: RequestContext,
    error: ApiError,
) -> Response {
    let event = AuditEvent {
        scope,
        actor,
        action: Action::AccessDenied,
        targets: Vec::new(),
        outcome: Outcome::Denied,
        context,
    };
    match state.store.record_audit(event).await {
        Ok(()) => error.into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Authenticates the bearer token and asks `salve_core::permissions` whether its scopes allow
/// the route's operation. Refusals are audited.
async fn token_gate(state: AppState, op: Operation, mut req: Request, next: Next) -> Response {
    let client = req.extensions().get::<ClientInfo>().cloned();
    let context = client.map(|c| c.audit_context()).unwrap_or_default();
    let principal = match bearer(&req) {
        None => None,
        Some(token) => match state
            .store
            .authenticate_token(&salve_crypto::token::hash(token))
            .await
        {
            Ok(p) => p,
            Err(e) => return ApiError::from(e).into_response(),
        },
    };
    let Some(principal) = principal else {
        return refuse(
            &state,
            ChainScope::System,
            Actor::System,
            context,
            ApiError::unauthorized(),
        )
        .await;
    };
    if let Err(denied) = authorize_token(&principal.scopes, op) {
        let error = ApiError::forbidden(format!("this token lacks the `{}` scope", denied.missing));
        let scope = ChainScope::Practice(principal.practice_id);
        return refuse(
            &state,
            scope,
            Actor::ApiToken(principal.token_id),
            context,
            error,
        )
        .await;
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}
