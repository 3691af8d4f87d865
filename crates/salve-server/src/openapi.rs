//! The OpenAPI document, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::{health, patients};
use crate::error::{Problem, ProblemField};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Salve API", description = "Patient messaging for medical practices. Errors are RFC 9457 problem documents."),
    paths(
        health::healthz, health::readyz,
        patients::create, patients::list, patients::read, patients::update, patients::search, patients::lookup,
    ),
    components(schemas(Problem, ProblemField, patients::PatientCreate, patients::PatientPatch, patients::PatientView,
        patients::PatientList, patients::ContactBody, patients::ContactView, patients::SearchBody, patients::LookupBody)),
    modifiers(&BearerAuth),
    tags((name = "patients", description = "Patients of the token's practice"), (name = "operations", description = "Health and readiness")),
)]
pub struct ApiDoc;

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
