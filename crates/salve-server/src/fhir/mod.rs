//! The FHIR R4 API at `/fhir/r4` (`application/fhir+json`). Handlers parse the search,
//! call the same audited store reads as the JSON API (the route table's gate has already
//! asked `authorize`), and render through the pure mappings in [`map`]. Writes (create,
//! update, transactions) are in [`interactions`], parsed by [`write`]. Every error leaves as
//! an `OperationOutcome` ([`outcome_layer`]).

pub mod interactions;
pub mod map;
pub mod params;
pub mod write;

use axum::Extension;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use salve_core::audit::{Action, AuditEvent, Outcome};
use salve_core::permissions::Principal;
use salve_core::validation;
use salve_core::{AppointmentId, MessageId, PatientId, PracticeId, UserId};
use salve_store::audit_reports::AuditFilter;
use salve_store::{AppointmentFilter, FhirMessage, Lookup, MessageWindow, Patient, StoreError};
use serde_json::{Value, json};

use crate::AppState;
use crate::api::practice_of;
use crate::context::ClientInfo;
use crate::error::{ApiError, PROBLEM_JSON};
use params::{Params, date_window, reference_id, token_value};

pub const PREFIX: &str = "/fhir/r4";
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

type Query2 = Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>;

/// A FHIR resource as the response body.
pub struct Fhir(pub Value);

impl IntoResponse for Fhir {
    fn into_response(self) -> Response {
        let mut r = axum::Json(self.0).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
        r
    }
}

fn bad(detail: impl Into<String>) -> ApiError {
    ApiError::bad_request(detail)
}

fn params(q: Query2) -> Result<Params, ApiError> {
    q.map(|Query(v)| Params(v))
        .map_err(|_| bad("the query string is not valid form encoding"))
}

/// Where links point: the configured public URL, else this request's host.
fn base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config.public_url {
        return format!("{}{PREFIX}", url.trim_end_matches('/'));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-' | '[' | ']'))
        })
        .unwrap_or("localhost");
    format!("http://{host}{PREFIX}")
}

fn entry(base: &str, resource: Value, mode: &str) -> Value {
    let url = format!(
        "{base}/{}/{}",
        resource["resourceType"].as_str().unwrap_or(""),
        resource["id"].as_str().unwrap_or("")
    );
    json!({ "fullUrl": url, "resource": resource, "search": { "mode": mode } })
}

/// A `searchset` page. `total`: when the whole match set is known.
fn searchset(
    base: &str,
    kind: &str,
    p: &Params,
    resources: Vec<Value>,
    total: Option<usize>,
    next: Option<(&str, String)>,
) -> Value {
    let self_query = p.next_query(&[]);
    let mut links = vec![json!({
        "relation": "self",
        "url": if self_query.is_empty() { format!("{base}/{kind}") } else { format!("{base}/{kind}?{self_query}") },
    })];
    if let Some((name, value)) = next {
        links.push(json!({
            "relation": "next",
            "url": format!("{base}/{kind}?{}", p.next_query(&[(name, value)])),
        }));
    }
    let mut bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": resources.into_iter().map(|r| entry(base, r, "match")).collect::<Vec<_>>(),
    });
    if let Some(t) = total {
        bundle["total"] = json!(t);
    }
    bundle
}

/// One page of a fully known match set, by `_offset`.
fn paged(base: &str, kind: &str, p: &Params, all: Vec<Value>) -> Result<Value, ApiError> {
    let count = p.count().map_err(bad)?;
    let offset = p.offset().map_err(bad)?;
    let total = all.len();
    let page: Vec<Value> = all.into_iter().skip(offset).take(count).collect();
    let next = (offset + count < total).then(|| ("_offset", (offset + count).to_string()));
    Ok(searchset(base, kind, p, page, Some(total), next))
}

fn not_found(kind: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        format!("no {kind} with this id in your practice"),
    )
}

/// A store error for a FHIR read: an unknown or hidden record is a plain 404.
fn store_error(kind: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound | StoreError::Hidden => not_found(kind),
        other => ApiError::from(other),
    }
}

// ---- metadata ------------------------------------------------------------------------------

pub async fn metadata(State(state): State<AppState>, headers: HeaderMap) -> Fhir {
    let base = base(&state, &headers);
    let search = |params: &[(&str, &str)]| -> Vec<Value> {
        params
            .iter()
            .map(|(name, kind)| json!({ "name": name, "type": kind }))
            .collect()
    };
    let paging = [("_count", "number")];
    let with_paging = |params: &[(&'static str, &'static str)]| {
        let mut all = params.to_vec();
        all.extend_from_slice(&paging);
        search(&all)
    };
    Fhir(json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": map::instant(state.clock.now()),
        "publisher": "Salve",
        "kind": "instance",
        "software": { "name": "Salve", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "Salve patient messaging: FHIR R4 API", "url": base },
        "fhirVersion": map::FHIR_VERSION,
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "documentation": "Authorization: `Bearer` API tokens of one practice (or SMART backend-services tokens), with scopes: patients:read (Patient, Consent, Provenance; SMART system/Patient.rs), patients:write (Patient create and update; system/Patient.cu), messages:read (Communication, Binary: message attachments; system/Communication.rs), appointments:read (Appointment, AppointmentResponse; system/Appointment.rs, system/AppointmentResponse.rs), appointments:write (Appointment create and update; system/Appointment.cu), appointments:answer (AppointmentResponse create: the patient's answer, which cannot reschedule; system/AppointmentResponse.c), audit:read (AuditEvent; system/AuditEvent.rs); a signed-in staff member's role works the same way. Consent and Provenance searches need `patient` (or Provenance `target`). Unknown search parameters are refused. Writes: Patient keeps the official name, birth date, one MRN (an identifier typed MR), phone and email telecoms, guardian and caregiver contacts and the preferred language; other identifiers, telecoms and contacts are not kept. Appointment names its type, location and provider by Salve id (identifier systems urn:salve:appointment-type, urn:salve:location, urn:salve:provider) or by name; its time is told to the patient in the practice's time zone; `booked` leaves a visit the patient confirmed as it is. AppointmentResponse is the patient's answer (accepted confirms, declined cancels, as their reply to a reminder), derived from the appointment: its id is the appointment's. Communication threads: `inResponseTo` is the latest earlier message from the other side of the conversation; the conversation itself is not served as a resource, so it is an identifier (urn:salve:conversation) and `partOf` is not used.",
            "security": { "cors": false, "description": "API tokens as `Authorization: Bearer`; scopes enforced per resource and, in a transaction, per entry" },
            "interaction": [{ "code": "transaction", "documentation": "Patient and Appointment entries (POST, PUT; ifNoneExist with identifier=MRN; ifMatch), all or nothing in one database transaction; urn:uuid: fullUrls may be referenced by later entries; at most 1000 entries and 8 MiB. Batch is not supported." }],
            "resource": [
                {
                    "type": "Patient",
                    "versioning": "versioned-update",
                    "readHistory": false,
                    "updateCreate": false,
                    "conditionalCreate": true,
                    "conditionalUpdate": false,
                    "conditionalDelete": "not-supported",
                    "interaction": [{ "code": "read" }, { "code": "vread", "documentation": "the current version only: earlier versions are not kept" }, { "code": "search-type" }, { "code": "create" }, { "code": "update" }],
                    "searchParam": with_paging(&[("identifier", "token"), ("telecom", "token"), ("phone", "token"), ("email", "token"), ("name", "string"), ("birthdate", "date")]),
                    "operation": [{ "name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything" }],
                },
                {
                    "type": "Communication",
                    "interaction": [{ "code": "read" }, { "code": "search-type" }],
                    "searchParam": with_paging(&[("patient", "reference"), ("subject", "reference"), ("sent", "date"), ("_lastUpdated", "date")]),
                },
                {
                    "type": "Binary",
                    "interaction": [{ "code": "read" }],
                },
                {
                    "type": "Consent",
                    "versioning": "versioned",
                    "readHistory": true,
                    "interaction": [{ "code": "read" }, { "code": "vread" }, { "code": "history-instance" }, { "code": "search-type" }],
                    "searchParam": with_paging(&[("patient", "reference")]),
                },
                {
                    "type": "Provenance",
                    "interaction": [{ "code": "read" }, { "code": "search-type" }],
                    "searchParam": with_paging(&[("patient", "reference"), ("target", "reference")]),
                },
                {
                    "type": "AuditEvent",
                    "interaction": [{ "code": "read" }, { "code": "search-type" }],
                    "searchParam": with_paging(&[("patient", "reference"), ("agent", "reference"), ("date", "date")]),
                },
                {
                    "type": "Appointment",
                    "versioning": "versioned-update",
                    "readHistory": false,
                    "updateCreate": false,
                    "conditionalCreate": false,
                    "interaction": [{ "code": "read" }, { "code": "vread", "documentation": "the current version only: earlier versions are not kept" }, { "code": "search-type" }, { "code": "create" }, { "code": "update" }],
                    "searchParam": with_paging(&[("patient", "reference"), ("date", "date"), ("status", "token")]),
                },
                {
                    "type": "AppointmentResponse",
                    "interaction": [{ "code": "read" }, { "code": "search-type" }, { "code": "create" }],
                    "searchParam": with_paging(&[("appointment", "reference"), ("patient", "reference"), ("actor", "reference")]),
                },
            ],
        }],
    }))
}

/// Any resource type Salve does not serve.
pub async fn unsupported() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-supported",
        "Not supported",
        "this server does not serve that resource type or interaction; see /fhir/r4/metadata",
    )
}

/// Any method a FHIR path does not take (see the CapabilityStatement for those it does).
pub async fn method_not_allowed() -> Response {
    let body = map::operation_outcome(
        "not-supported",
        "this interaction is not supported; see /fhir/r4/metadata",
    );
    (StatusCode::METHOD_NOT_ALLOWED, Fhir(body)).into_response()
}

// ---- Patient -------------------------------------------------------------------------------

fn patient_id(raw: &str) -> Result<PatientId, ApiError> {
    raw.parse().map_err(|_| not_found("Patient"))
}

pub async fn patient_read(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = patient_id(&id)?;
    let practice = practice_of(&principal)?;
    let p = state
        .store
        .read_patient(practice, &principal, &client.audit_context(), id)
        .await
        .map_err(|e| store_error("Patient", e))?;
    Ok(versioned(map::patient(&p), p.version))
}

/// `_history/{n}` of the current version (what a create's or update's `Location` names).
/// Earlier versions are not kept: asking for one is a 404 saying so.
fn current_version(
    kind: &str,
    resource: Value,
    version: i64,
    vid: &str,
) -> Result<Response, ApiError> {
    if vid.parse::<i64>().ok() == Some(version) {
        return Ok(versioned(resource, version));
    }
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        format!("no such version of this {kind}: Salve keeps only the current one"),
    ))
}

pub async fn patient_vread(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path((id, vid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = patient_id(&id)?;
    let practice = practice_of(&principal)?;
    let p = state
        .store
        .read_patient(practice, &principal, &client.audit_context(), id)
        .await
        .map_err(|e| store_error("Patient", e))?;
    current_version("Patient", map::patient(&p), p.version, &vid)
}

fn birth_day_micros(p: &Patient) -> i64 {
    salve_core::clock::to_micros(
        p.record
            .birth_date
            .with_time(time::Time::MIDNIGHT)
            .assume_utc(),
    )
}

pub async fn patient_search(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    q: Query2,
) -> Result<Fhir, ApiError> {
    let p = params(q)?;
    p.check_known(&[
        "identifier",
        "telecom",
        "phone",
        "email",
        "name",
        "birthdate",
    ])
    .map_err(bad)?;
    let base = base(&state, &headers);
    let practice = practice_of(&principal)?;
    let ctx = client.audit_context();
    let region = state.store.practice(practice).await?.phone_region;
    let births = date_window(&p, "birthdate").map_err(bad)?;
    let mut found: Option<Vec<Patient>> = None;
    let mut narrow = |list: Vec<Patient>| {
        found = Some(match found.take() {
            None => list,
            Some(prev) => prev
                .into_iter()
                .filter(|a| list.iter().any(|b| b.id == a.id))
                .collect(),
        });
    };
    let invalid = |e: validation::FieldError| bad(e.to_string());
    if let Some(raw) = p.one("identifier").map_err(bad)? {
        let mrn = validation::mrn("identifier", token_value(raw)).map_err(invalid)?;
        narrow(
            state
                .store
                .lookup_patients(practice, &principal, &ctx, &Lookup::Mrn(mrn))
                .await?,
        );
    }
    for name in ["telecom", "phone", "email"] {
        if let Some(raw) = p.one(name).map_err(bad)? {
            let value = token_value(raw);
            let lookup = if value.contains('@') && name != "phone" {
                Lookup::Email(validation::email(name, value).map_err(invalid)?)
            } else if name != "email" {
                Lookup::Phone(validation::phone(name, value, &region).map_err(invalid)?)
            } else {
                return Err(bad("`email`: an email address"));
            };
            narrow(
                state
                    .store
                    .lookup_patients(practice, &principal, &ctx, &lookup)
                    .await?,
            );
        }
    }
    if let Some(raw) = p.one("name").map_err(bad)? {
        let q = raw.trim();
        if q.chars().count() < 2 || q.chars().count() > 200 {
            return Err(bad("`name`: 2 to 200 characters of a name"));
        }
        narrow(
            state
                .store
                .search_patients(practice, &principal, &ctx, q, salve_store::MAX_PAGE)
                .await?,
        );
    }
    let (list, cursor_paging) = match found {
        Some(list) => (list, false),
        None if births != params::Window::default() => {
            // Birth dates are sealed: every visible patient is opened (and audited as listed).
            let mut all = Vec::new();
            let mut after = None;
            loop {
                let page = state
                    .store
                    .list_patients(practice, &principal, &ctx, after, salve_store::MAX_PAGE)
                    .await?;
                all.extend(page.patients);
                match page.next_after {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            (all, false)
        }
        None => (Vec::new(), true),
    };
    if cursor_paging {
        let count = p.count().map_err(bad)?;
        let after = match p.one("_cursor").map_err(bad)? {
            Some(raw) => Some(
                raw.parse()
                    .map_err(|_| bad("`_cursor`: from a next link"))?,
            ),
            None => None,
        };
        let page = state
            .store
            .list_patients(practice, &principal, &ctx, after, count)
            .await?;
        let resources = page.patients.iter().map(map::patient).collect();
        let next = page
            .next_after
            .map(|id: PatientId| ("_cursor", id.to_string()));
        return Ok(Fhir(searchset(&base, "Patient", &p, resources, None, next)));
    }
    let resources = list
        .iter()
        .filter(|x| births.contains(birth_day_micros(x)))
        .map(map::patient)
        .collect();
    Ok(Fhir(paged(&base, "Patient", &p, resources)?))
}

// ---- Communication -------------------------------------------------------------------------

fn communications(messages: &[FhirMessage], practice: PracticeId, base: &str) -> Vec<Value> {
    let replies = map::replies(messages);
    messages
        .iter()
        .zip(replies)
        .map(|(m, r)| map::communication(m, practice, r, base))
        .collect()
}

/// An attachment of a message, gated and audited like the JSON API's attachment download.
pub async fn binary_read(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<Fhir, ApiError> {
    let id: salve_core::AttachmentId = id.parse().map_err(|_| not_found("Binary"))?;
    let (meta, bytes) = state
        .store
        .read_attachment(
            practice_of(&principal)?,
            salve_store::AttachmentReader::Staff(&principal),
            &client.audit_context(),
            id,
        )
        .await
        .map_err(|e| store_error("Binary", e))?;
    Ok(Fhir(map::binary(id, &meta.media_type, &bytes)))
}

pub async fn communication_read(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Fhir, ApiError> {
    let id: MessageId = id.parse().map_err(|_| not_found("Communication"))?;
    let practice = practice_of(&principal)?;
    let thread = state
        .store
        .fhir_message(practice, &principal, &client.audit_context(), id)
        .await
        .map_err(|e| store_error("Communication", e))?;
    communications(&thread, practice, &base(&state, &headers))
        .into_iter()
        .find(|c| c["id"] == json!(id.to_string()))
        .map(Fhir)
        .ok_or_else(|| not_found("Communication"))
}

/// The patient a search names (`patient` or its alias), or `None`. An id that cannot exist is
/// `Err(())`: the search matches nothing.
fn patient_param(p: &Params, names: &[&str]) -> Result<Option<Result<PatientId, ()>>, ApiError> {
    let mut out = None;
    for name in names {
        if let Some(raw) = p.one(name).map_err(bad)? {
            if out.is_some() {
                return Err(bad("give the patient once"));
            }
            out = Some(
                reference_id(raw, "Patient")
                    .and_then(|id| id.parse().ok())
                    .ok_or(()),
            );
        }
    }
    Ok(out)
}

pub async fn communication_search(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    q: Query2,
) -> Result<Fhir, ApiError> {
    let p = params(q)?;
    p.check_known(&["patient", "subject", "sent", "_lastUpdated"])
        .map_err(bad)?;
    let base = base(&state, &headers);
    let practice = practice_of(&principal)?;
    let sent = date_window(&p, "sent").map_err(bad)?;
    let updated = date_window(&p, "_lastUpdated").map_err(bad)?;
    let patient = match patient_param(&p, &["patient", "subject"])? {
        Some(Err(())) => return Ok(Fhir(paged(&base, "Communication", &p, Vec::new())?)),
        Some(Ok(id)) => Some(id),
        None => None,
    };
    let window = MessageWindow {
        patient,
        sent_from: sent.from,
        sent_to: sent.to,
        updated_from: updated.from,
        updated_to: updated.to,
    };
    let messages = match state
        .store
        .fhir_messages(practice, &principal, &client.audit_context(), &window)
        .await
    {
        Ok(m) => m,
        Err(StoreError::NotFound | StoreError::Hidden) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    Ok(Fhir(paged(
        &base,
        "Communication",
        &p,
        communications(&messages, practice, &base),
    )?))
}

// ---- Consent and Provenance ----------------------------------------------------------------

struct Ledger {
    patient: PatientId,
    events: Vec<salve_core::consent::ConsentEvent>,
    sources: Vec<salve_store::ConsentProvenance>,
}

async fn ledger(
    state: &AppState,
    principal: &Principal,
    client: &ClientInfo,
    patient: PatientId,
) -> Result<Ledger, ApiError> {
    let practice = practice_of(principal)?;
    let (events, sources) = state
        .store
        .fhir_consent(practice, principal, &client.audit_context(), patient)
        .await
        .map_err(|e| store_error("Patient", e))?;
    Ok(Ledger {
        patient,
        events,
        sources,
    })
}

impl Ledger {
    /// The latest version of each consent.
    fn current(&self) -> Vec<Value> {
        map::consent_versions(self.patient, &self.events)
            .into_iter()
            .filter_map(|(_, versions)| {
                versions
                    .last()
                    .map(|(v, e)| map::consent(self.patient, *v, e))
            })
            .collect()
    }

    fn versions(&self, id: &str) -> Vec<(i64, &salve_core::consent::ConsentEvent)> {
        map::consent_versions(self.patient, &self.events)
            .into_iter()
            .find(|(i, _)| i == id)
            .map(|(_, v)| v)
            .unwrap_or_default()
    }

    fn provenances(&self, practice: PracticeId, only: Option<&str>) -> Vec<Value> {
        map::consent_versions(self.patient, &self.events)
            .into_iter()
            .filter(|(id, _)| only.is_none_or(|o| o == id))
            .flat_map(|(_, versions)| {
                versions
                    .into_iter()
                    .map(|(v, e)| {
                        let source = self.sources.iter().find(|s| s.event == e.id);
                        map::provenance(self.patient, practice, v, e, source)
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

fn consent_id(raw: &str) -> Result<(PatientId, String), ApiError> {
    map::parse_consent_id(raw)
        .map(|(p, _, _)| (p, raw.to_owned()))
        .ok_or_else(|| not_found("Consent"))
}

pub async fn consent_read(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (patient, id) = consent_id(&id)?;
    let l = ledger(&state, &principal, &client, patient).await?;
    let (v, e) = *l.versions(&id).last().ok_or_else(|| not_found("Consent"))?;
    Ok(versioned(map::consent(patient, v, e), v))
}

fn versioned(resource: Value, version: i64) -> Response {
    let mut r = Fhir(resource).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{version}\"")) {
        r.headers_mut().insert(header::ETAG, etag);
    }
    r
}

pub async fn consent_vread(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path((id, vid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let (patient, id) = consent_id(&id)?;
    let l = ledger(&state, &principal, &client, patient).await?;
    let version: i64 = vid.parse().map_err(|_| not_found("Consent version"))?;
    let (v, e) = *l
        .versions(&id)
        .iter()
        .find(|(v, _)| *v == version)
        .ok_or_else(|| not_found("Consent version"))?;
    Ok(versioned(map::consent(patient, v, e), v))
}

pub async fn consent_history(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Fhir, ApiError> {
    let (patient, id) = consent_id(&id)?;
    let l = ledger(&state, &principal, &client, patient).await?;
    let versions = l.versions(&id);
    if versions.is_empty() {
        return Err(not_found("Consent"));
    }
    let base = base(&state, &headers);
    // Newest first, as `_history` is ordered.
    let entries: Vec<Value> = versions
        .iter()
        .rev()
        .map(|(v, e)| {
            json!({
                "fullUrl": format!("{base}/Consent/{id}"),
                "resource": map::consent(patient, *v, e),
                "request": { "method": if *v == 1 { "POST" } else { "PUT" }, "url": if *v == 1 { "Consent".to_owned() } else { format!("Consent/{id}") } },
                "response": { "status": if *v == 1 { "201" } else { "200" }, "etag": format!("W/\"{v}\""), "lastModified": map::instant(e.at) },
            })
        })
        .collect();
    Ok(Fhir(json!({
        "resourceType": "Bundle",
        "type": "history",
        "total": entries.len(),
        "link": [{ "relation": "self", "url": format!("{base}/Consent/{id}/_history") }],
        "entry": entries,
    })))
}

pub async fn consent_search(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    q: Query2,
) -> Result<Fhir, ApiError> {
    let p = params(q)?;
    p.check_known(&["patient"]).map_err(bad)?;
    let base = base(&state, &headers);
    let patient = match patient_param(&p, &["patient"])? {
        None => return Err(bad("`patient` is required for a Consent search")),
        Some(Err(())) => return Ok(Fhir(paged(&base, "Consent", &p, Vec::new())?)),
        Some(Ok(id)) => id,
    };
    let resources = match ledger(&state, &principal, &client, patient).await {
        Ok(l) => l.current(),
        Err(e) if e.status == StatusCode::NOT_FOUND => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok(Fhir(paged(&base, "Consent", &p, resources)?))
}

pub async fn provenance_search(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    q: Query2,
) -> Result<Fhir, ApiError> {
    let p = params(q)?;
    p.check_known(&["patient", "target"]).map_err(bad)?;
    let base = base(&state, &headers);
    let practice = practice_of(&principal)?;
    let target = match p.one("target").map_err(bad)? {
        Some(raw) => {
            // `Consent/{id}` or `Consent/{id}/_history/{n}`: the consent's id either way.
            let raw = raw.split("/_history/").next().unwrap_or(raw);
            match reference_id(raw, "Consent").and_then(map::parse_consent_id) {
                Some((patient, _, _)) => {
                    Some((patient, raw.rsplit('/').next().unwrap_or(raw).to_owned()))
                }
                None => return Ok(Fhir(paged(&base, "Provenance", &p, Vec::new())?)),
            }
        }
        None => None,
    };
    let patient = match (patient_param(&p, &["patient"])?, &target) {
        (Some(Err(())), _) => return Ok(Fhir(paged(&base, "Provenance", &p, Vec::new())?)),
        (Some(Ok(a)), Some((b, _))) if a != *b => {
            return Ok(Fhir(paged(&base, "Provenance", &p, Vec::new())?));
        }
        (Some(Ok(a)), _) => a,
        (None, Some((b, _))) => *b,
        (None, None) => {
            return Err(bad(
                "`patient` or `target` is required for a Provenance search",
            ));
        }
    };
    let resources = match ledger(&state, &principal, &client, patient).await {
        Ok(l) => l.provenances(practice, target.as_ref().map(|(_, id)| id.as_str())),
        Err(e) if e.status == StatusCode::NOT_FOUND => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok(Fhir(paged(&base, "Provenance", &p, resources)?))
}

// ---- AuditEvent ----------------------------------------------------------------------------

pub async fn audit_event_search(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    q: Query2,
) -> Result<Fhir, ApiError> {
    let p = params(q)?;
    p.check_known(&["patient", "agent", "date"]).map_err(bad)?;
    let base = base(&state, &headers);
    let practice = practice_of(&principal)?;
    let count = p.count().map_err(bad)?;
    let dates = date_window(&p, "date").map_err(bad)?;
    let empty = || {
        Ok(Fhir(searchset(
            &base,
            "AuditEvent",
            &p,
            Vec::new(),
            None,
            None,
        )))
    };
    let patient = match patient_param(&p, &["patient"])? {
        Some(Err(())) => return empty(),
        Some(Ok(id)) => Some(id),
        None => None,
    };
    let user = match p.one("agent").map_err(bad)? {
        Some(raw) => {
            match reference_id(raw, "Practitioner").and_then(|id| id.parse::<UserId>().ok()) {
                Some(u) => Some(u),
                None => return empty(),
            }
        }
        None => None,
    };
    let before = match p.one("_cursor").map_err(bad)? {
        Some(raw) => Some(
            raw.parse::<i64>()
                .map_err(|_| bad("`_cursor`: from a next link"))?,
        ),
        None => None,
    };
    let filter = AuditFilter {
        patient,
        user,
        action: None,
        from: dates.from,
        to: dates.to,
    };
    // Reading the log is itself recorded, before the rows leave.
    state
        .store
        .record_audit(AuditEvent::in_practice(
            practice,
            principal.actor(),
            &client.audit_context(),
            Action::AuditExport,
            patient.map(|p| vec![p.to_string()]).unwrap_or_default(),
            Outcome::Success,
        ))
        .await?;
    let page = state
        .store
        .audit_search(practice, &filter, before, count)
        .await?;
    let resources = page
        .entries
        .iter()
        .map(|e| map::audit_event(e, practice))
        .collect();
    let next = page.next_before.map(|b| ("_cursor", b.to_string()));
    Ok(Fhir(searchset(
        &base,
        "AuditEvent",
        &p,
        resources,
        None,
        next,
    )))
}

/// One row of the practice's audit log by its chain position; reading it is logged too.
pub async fn audit_event_read(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<Fhir, ApiError> {
    let seq: i64 = id
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| not_found("AuditEvent"))?;
    let practice = practice_of(&principal)?;
    state
        .store
        .record_audit(AuditEvent::in_practice(
            practice,
            principal.actor(),
            &client.audit_context(),
            Action::AuditExport,
            Vec::new(),
            Outcome::Success,
        ))
        .await?;
    let page = state
        .store
        .audit_search(practice, &AuditFilter::default(), seq.checked_add(1), 1)
        .await?;
    page.entries
        .iter()
        .find(|e| e.seq == seq)
        .map(|e| Fhir(map::audit_event(e, practice)))
        .ok_or_else(|| not_found("AuditEvent"))
}

/// One version's provenance, by the id of the consent event it describes.
pub async fn provenance_read(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<Fhir, ApiError> {
    let event: salve_core::ConsentEventId = id.parse().map_err(|_| not_found("Provenance"))?;
    let practice = practice_of(&principal)?;
    let patient = state
        .store
        .consent_event_patient(practice, event)
        .await?
        .ok_or_else(|| not_found("Provenance"))?;
    let l = match ledger(&state, &principal, &client, patient).await {
        Ok(l) => l,
        Err(e) if e.status == StatusCode::NOT_FOUND => return Err(not_found("Provenance")),
        Err(e) => return Err(e),
    };
    l.provenances(practice, None)
        .into_iter()
        .find(|p| p["id"] == json!(id))
        .map(Fhir)
        .ok_or_else(|| not_found("Provenance"))
}

// ---- Appointment ---------------------------------------------------------------------------

pub async fn appointment_read(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: AppointmentId = id.parse().map_err(|_| not_found("Appointment"))?;
    let practice = practice_of(&principal)?;
    let a = state
        .store
        .read_appointment(practice, &principal, &client.audit_context(), id)
        .await
        .map_err(|e| store_error("Appointment", e))?;
    let names = catalog_names(&state, practice).await?;
    Ok(versioned(map::appointment(&a, &names), a.version))
}

pub async fn appointment_vread(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    Path((id, vid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id: AppointmentId = id.parse().map_err(|_| not_found("Appointment"))?;
    let practice = practice_of(&principal)?;
    let a = state
        .store
        .read_appointment(practice, &principal, &client.audit_context(), id)
        .await
        .map_err(|e| store_error("Appointment", e))?;
    let names = catalog_names(&state, practice).await?;
    current_version("Appointment", map::appointment(&a, &names), a.version, &vid)
}

/// The practice's catalog names (appointment type, location, provider), for appointments.
async fn catalog_names(
    state: &AppState,
    practice: PracticeId,
) -> Result<std::collections::HashMap<salve_core::CatalogItemId, String>, ApiError> {
    Ok(state
        .store
        .catalog(practice)
        .await?
        .into_iter()
        .map(|i| (i.id, i.name))
        .collect())
}

pub async fn appointment_search(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    q: Query2,
) -> Result<Fhir, ApiError> {
    let p = params(q)?;
    p.check_known(&["patient", "date", "status"]).map_err(bad)?;
    let base = base(&state, &headers);
    let practice = practice_of(&principal)?;
    let dates = date_window(&p, "date").map_err(bad)?;
    let statuses: Vec<&str> = p
        .all("status")
        .flat_map(|s| s.split(','))
        .map(token_value)
        .collect();
    const KNOWN: &[&str] = &["booked", "cancelled", "fulfilled", "noshow"];
    if statuses.iter().any(|s| {
        !KNOWN.contains(s)
            && !matches!(
                *s,
                "proposed" | "pending" | "arrived" | "entered-in-error" | "checked-in" | "waitlist"
            )
    }) {
        return Err(bad("`status`: an R4 appointment status"));
    }
    let patient = match patient_param(&p, &["patient"])? {
        Some(Err(())) => return Ok(Fhir(paged(&base, "Appointment", &p, Vec::new())?)),
        Some(Ok(id)) => Some(id),
        None => None,
    };
    let filter = AppointmentFilter {
        patient,
        from: dates.from.map(salve_core::clock::from_micros),
        to: dates.to.map(salve_core::clock::from_micros),
    };
    let list = match state
        .store
        .list_appointments(practice, &principal, &client.audit_context(), &filter)
        .await
    {
        Ok(l) => l,
        Err(StoreError::NotFound | StoreError::Hidden) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let names = catalog_names(&state, practice).await?;
    let resources = list
        .iter()
        .filter(|a| statuses.is_empty() || statuses.contains(&map::appointment_status(a.status)))
        .map(|a| map::appointment(a, &names))
        .collect();
    Ok(Fhir(paged(&base, "Appointment", &p, resources)?))
}

// ---- $everything ---------------------------------------------------------------------------

/// Everything Salve holds about one patient: the record, messages, consents with their
/// provenance, appointments and the accesses to their data. Each part is read (and audited)
/// by the same store call as its own resource; nothing of another patient is included.
pub async fn patient_everything(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(client): Extension<ClientInfo>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Fhir, ApiError> {
    let id = patient_id(&id)?;
    let practice = practice_of(&principal)?;
    let ctx = client.audit_context();
    let base = base(&state, &headers);
    let patient = state
        .store
        .read_patient(practice, &principal, &ctx, id)
        .await
        .map_err(|e| store_error("Patient", e))?;
    let messages = state
        .store
        .fhir_messages(
            practice,
            &principal,
            &ctx,
            &MessageWindow {
                patient: Some(id),
                ..MessageWindow::default()
            },
        )
        .await?;
    let l = ledger(&state, &principal, &client, id).await?;
    let appointments = state
        .store
        .list_appointments(
            practice,
            &principal,
            &ctx,
            &AppointmentFilter {
                patient: Some(id),
                ..AppointmentFilter::default()
            },
        )
        .await?;
    let accesses = state.store.access_report(practice, id).await?;
    let mut resources = vec![map::patient(&patient)];
    resources.extend(communications(&messages, practice, &base));
    resources.extend(l.current());
    resources.extend(l.provenances(practice, None));
    let names = catalog_names(&state, practice).await?;
    resources.extend(appointments.iter().map(|a| map::appointment(a, &names)));
    resources.extend(appointments.iter().filter_map(map::appointment_response));
    resources.extend(
        accesses
            .iter()
            .enumerate()
            .map(|(n, a)| map::access_event(n + 1, a, id)),
    );
    let total = resources.len();
    Ok(Fhir(json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": [{ "relation": "self", "url": format!("{base}/Patient/{id}/$everything") }],
        "entry": resources.into_iter().enumerate().map(|(i, r)| entry(&base, r, if i == 0 { "match" } else { "include" })).collect::<Vec<_>>(),
    })))
}

// ---- errors as OperationOutcome ------------------------------------------------------------

#[derive(serde::Deserialize)]
struct ProblemBody {
    #[serde(default)]
    detail: String,
}

/// Wraps every `/fhir/r4` route: problem documents (from the handler or the route's gate) and
/// bare 405s become `OperationOutcome`s with the same status and headers.
pub async fn outcome_layer(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !is_problem && status != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let detail = if is_problem {
        match to_bytes(body, 64 * 1024).await {
            Ok(bytes) => serde_json::from_slice::<ProblemBody>(&bytes)
                .map(|p| p.detail)
                .unwrap_or_default(),
            Err(_) => String::new(),
        }
    } else {
        "this interaction is not supported; see /fhir/r4/metadata".to_owned()
    };
    let code = map::issue_code(status.as_u16());
    let body = serde_json::to_vec(&map::operation_outcome(code, &detail)).unwrap_or_default();
    parts
        .headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}
