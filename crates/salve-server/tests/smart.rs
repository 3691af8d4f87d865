//! SMART Backend Services: a client registered with its public keys signs a JWT assertion and
//! gets a short-lived token that works within its scopes; a wrong key, an expired or replayed
//! assertion, a foreign audience and an out-of-scope request are refused and audited. Also a
//! real client (PyJWT with `cryptography`) signing with RS384 and ES384.

mod common;

use axum::http::StatusCode;
use base64::Engine;
use common::{App, Req, patient_body};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use salve_core::permissions::Role;
use salve_testkit::TestDatabase;
use salve_testkit::peers::run_python;
use serde_json::{Value, json};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A P-384 key pair generated for the test: the private half signs, the public half is a JWK.
struct ClientKey {
    kid: String,
    pkcs8: Vec<u8>,
    jwk: Value,
}

fn p384_key(kid: &str) -> ClientKey {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
        .unwrap()
        .as_ref()
        .to_vec();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &pkcs8, &rng).unwrap();
    // An uncompressed point: 0x04 || x || y.
    let point = pair.public_key().as_ref();
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    ClientKey {
        kid: kid.to_owned(),
        jwk: json!({
            "kty": "EC", "crv": "P-384", "kid": kid, "alg": "ES384", "use": "sig",
            "x": b64(&point[1..49]), "y": b64(&point[49..97]),
        }),
        pkcs8,
    }
}

impl ClientKey {
    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES384);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_der(&self.pkcs8)).unwrap()
    }
}

struct Smart {
    app: App,
    admin: String,
    token_url: String,
}

impl Smart {
    async fn new(db: TestDatabase) -> Self {
        let app = App::new(db).await;
        let (_, admin) = app.signed_in_staff(Role::Admin).await;
        let config = app
            .send(Req::get("/fhir/r4/.well-known/smart-configuration"))
            .await;
        assert_eq!(config.status, StatusCode::OK);
        let config = config.json();
        assert_eq!(
            config["grant_types_supported"],
            json!(["client_credentials"])
        );
        assert_eq!(
            config["token_endpoint_auth_methods_supported"],
            json!(["private_key_jwt"])
        );
        let token_url = config["token_endpoint"].as_str().unwrap().to_owned();
        Self {
            app,
            admin,
            token_url,
        }
    }

    async fn register(&self, jwks: Value, scopes: &[&str]) -> String {
        let r = self
            .app
            .send(
                Req::post("/api/v1/smart-clients")
                    .cookie(&self.admin)
                    .same_origin()
                    .json(&json!({"name": "EHR sync", "jwks": jwks, "scopes": scopes})),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.json()["client_id"].as_str().unwrap().to_owned()
    }

    fn claims(&self, client_id: &str, jti: &str, exp_in: i64) -> Value {
        let now = self.app.now().unix_timestamp();
        json!({
            "iss": client_id, "sub": client_id, "aud": self.token_url,
            "exp": now + exp_in, "iat": now, "jti": jti,
        })
    }

    async fn request_token(&self, assertion: &str, scope: &str) -> common::Reply {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("scope", scope)
            .append_pair("client_assertion_type", ASSERTION_TYPE)
            .append_pair("client_assertion", assertion)
            .finish();
        self.app.send(Req::post("/oauth2/token").form(&body)).await
    }

    async fn refusals(&self) -> usize {
        self.app
            .practice_audit()
            .await
            .iter()
            .filter(|r| r.action == "smart.token_refuse" && r.outcome == "denied")
            .count()
    }
}

#[tokio::test]
async fn a_client_signing_with_its_registered_key_gets_a_token_that_works_within_its_scopes() {
    for db in TestDatabase::all().await {
        let s = Smart::new(db).await;
        let key = p384_key("ehr-2026");
        let client = s
            .register(json!({"keys": [key.jwk]}), &["system/Patient.rs"])
            .await;

        let r = s
            .request_token(
                &key.sign(&s.claims(&client, "a-1", 120)),
                "system/Patient.rs",
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.headers["cache-control"], "no-store");
        let body = r.json();
        assert_eq!(body["token_type"], "bearer");
        assert_eq!(body["expires_in"], 300);
        assert_eq!(body["scope"], "system/Patient.rs");
        let token = body["access_token"].as_str().unwrap().to_owned();

        // The token reads patients, and nothing more.
        let list = s
            .app
            .send(Req::get("/api/v1/patients").bearer(&token))
            .await;
        assert_eq!(list.status, StatusCode::OK, "{}", list.text);
        let write = s
            .app
            .send(
                Req::post("/api/v1/patients")
                    .bearer(&token)
                    .json(&patient_body("Ana", None, "+13125550101")),
            )
            .await;
        assert_eq!(write.status, StatusCode::FORBIDDEN, "{}", write.text);
        let messages = s
            .app
            .send(Req::get("/api/v1/conversations").bearer(&token))
            .await;
        assert_eq!(messages.status, StatusCode::FORBIDDEN, "{}", messages.text);

        // Short-lived: five minutes later it no longer works.
        s.app.advance(time::Duration::seconds(301));
        let late = s
            .app
            .send(Req::get("/api/v1/patients").bearer(&token))
            .await;
        assert_eq!(late.status, StatusCode::UNAUTHORIZED);

        // Issued tokens are not the practice's long-lived API tokens.
        let tokens = s
            .app
            .send(Req::get("/api/v1/tokens").cookie(&s.admin))
            .await
            .json();
        assert!(
            !tokens.to_string().contains("SMART"),
            "SMART access tokens are not listed as API tokens: {tokens}"
        );
        let audit = s.app.practice_audit().await;
        assert!(audit.iter().any(|r| r.action == "smart.client_register"));
        assert!(audit.iter().any(|r| r.action == "smart.token_issue"));
        assert!(
            !audit.iter().any(|r| format!("{r:?}").contains(&token)),
            "the access token is never in the audit log"
        );
        s.app.assert_audit_verifies().await;
    }
}

#[tokio::test]
async fn wrong_key_expired_replayed_foreign_and_out_of_scope_assertions_are_refused() {
    for db in TestDatabase::all().await {
        let s = Smart::new(db).await;
        let key = p384_key("ehr-1");
        let client = s
            .register(json!({"keys": [key.jwk]}), &["system/Patient.rs"])
            .await;
        let scope = "system/Patient.rs";
        let refused = |r: &common::Reply, error: &str| {
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
            let body = r.json();
            assert_eq!(body["error"], error, "{body}");
            assert_eq!(body["status"], 400, "also an RFC 9457 problem: {body}");
            assert!(body.get("access_token").is_none());
        };

        // Signed by a key the practice never registered (even one claiming the same kid).
        let impostor = p384_key("ehr-1");
        let r = s
            .request_token(&impostor.sign(&s.claims(&client, "w-1", 120)), scope)
            .await;
        refused(&r, "invalid_client");

        // Expired, and living longer than five minutes.
        let r = s
            .request_token(&key.sign(&s.claims(&client, "e-1", -1)), scope)
            .await;
        refused(&r, "invalid_client");
        let r = s
            .request_token(&key.sign(&s.claims(&client, "e-2", 3600)), scope)
            .await;
        refused(&r, "invalid_client");

        // Meant for another server's token endpoint.
        let mut foreign = s.claims(&client, "f-1", 120);
        foreign["aud"] = json!("https://other.example/token");
        refused(
            &s.request_token(&key.sign(&foreign), scope).await,
            "invalid_client",
        );

        // Replayed: the same jti works once.
        let assertion = key.sign(&s.claims(&client, "r-1", 120));
        assert_eq!(
            s.request_token(&assertion, scope).await.status,
            StatusCode::OK
        );
        refused(&s.request_token(&assertion, scope).await, "invalid_client");
        // Even a freshly signed assertion reusing the jti.
        let again = key.sign(&s.claims(&client, "r-1", 200));
        refused(&s.request_token(&again, scope).await, "invalid_client");

        // Out of scope: a scope the client was not registered for, or a malformed one.
        for asked in [
            "system/Communication.rs",
            "system/Patient.crus",
            "system/Patient.r",
            "",
        ] {
            let assertion = key.sign(&s.claims(&client, &format!("s-{asked}"), 120));
            refused(&s.request_token(&assertion, asked).await, "invalid_scope");
        }

        // Not a signature at all: "none", or HMAC keyed with something public.
        let claims = s.claims(&client, "n-1", 120);
        let b64 = |v: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        let unsigned = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&claims));
        refused(&s.request_token(&unsigned, scope).await, "invalid_client");
        let hmac = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &claims,
            &EncodingKey::from_secret(key.jwk.to_string().as_bytes()),
        )
        .unwrap();
        refused(&s.request_token(&hmac, scope).await, "invalid_client");

        // The request itself malformed.
        let r = s
            .app
            .send(Req::post("/oauth2/token").form("grant_type=password&username=x"))
            .await;
        refused(&r, "unsupported_grant_type");
        let r = s
            .app
            .send(Req::post("/oauth2/token").form("grant_type=client_credentials"))
            .await;
        refused(&r, "invalid_request");
        let unknown = s.claims(&uuid::Uuid::now_v7().to_string(), "u-1", 120);
        refused(
            &s.request_token(&key.sign(&unknown), scope).await,
            "invalid_client",
        );

        // Every refusal of a known client is on the audit record, with no assertion in it.
        assert!(s.refusals().await >= 12, "{}", s.refusals().await);
        let audit = s.app.practice_audit().await;
        assert!(
            !audit.iter().any(|r| format!("{r:?}").contains(&assertion)),
            "assertions are never audited"
        );

        // Disabling the client stops new tokens and the ones it holds.
        let live = s
            .request_token(&key.sign(&s.claims(&client, "d-1", 120)), scope)
            .await
            .json()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = s
            .app
            .send(
                Req::delete(format!("/api/v1/smart-clients/{client}"))
                    .cookie(&s.admin)
                    .same_origin(),
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        let r = s.app.send(Req::get("/api/v1/patients").bearer(&live)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        refused(
            &s.request_token(&key.sign(&s.claims(&client, "d-2", 120)), scope)
                .await,
            "invalid_client",
        );
        s.app.assert_audit_verifies().await;
    }
}

#[tokio::test]
async fn registration_takes_public_keys_and_known_scopes_only_and_is_for_admins() {
    let s = Smart::new(TestDatabase::sqlite()).await;
    let register = |body: Value| {
        Req::post("/api/v1/smart-clients")
            .cookie(&s.admin)
            .same_origin()
            .json(&body)
    };
    let key = p384_key("k1");
    let mut private = key.jwk.clone();
    private["d"] = json!("c2VjcmV0");
    let p256 = json!({"kty": "EC", "crv": "P-256", "kid": "p256",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
    let short_rsa = json!({"kty": "RSA", "kid": "small", "e": "AQAB",
        "n": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xC5u8; 128])});
    for (jwks, scopes, field) in [
        (
            json!({"keys": [private]}),
            vec!["system/Patient.rs"],
            "jwks",
        ),
        (json!({"keys": [p256]}), vec!["system/Patient.rs"], "jwks"),
        (
            json!({"keys": [short_rsa]}),
            vec!["system/Patient.rs"],
            "jwks",
        ),
        (json!({"keys": []}), vec!["system/Patient.rs"], "jwks"),
        (
            json!({"keys": [key.jwk]}),
            vec!["system/Observation.rs"],
            "scopes",
        ),
        (json!({"keys": [key.jwk]}), vec!["patients:read"], "scopes"),
        (json!({"keys": [key.jwk]}), vec![], "scopes"),
    ] {
        let r = s
            .app
            .send(register(
                json!({"name": "EHR", "jwks": jwks, "scopes": scopes}),
            ))
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(r.json()["errors"][0]["field"], field, "{}", r.text);
        assert!(
            !r.text.contains("c2VjcmV0"),
            "a submitted private key is never echoed"
        );
    }

    // Front desk staff cannot register clients; an admin of another practice cannot see them.
    let (_, staff) = s.app.signed_in_staff(Role::Staff).await;
    let r = s
        .app
        .send(
            Req::post("/api/v1/smart-clients")
                .cookie(&staff)
                .same_origin()
                .json(&json!({"name": "x", "jwks": {"keys": [key.jwk]}, "scopes": ["system/Patient.rs"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let client = s
        .register(
            json!({"keys": [key.jwk]}),
            &["system/Patient.rs", "system/Communication.crus"],
        )
        .await;
    let list = s
        .app
        .send(Req::get("/api/v1/smart-clients").cookie(&s.admin))
        .await
        .json();
    assert_eq!(list["clients"][0]["client_id"], client);
    assert_eq!(
        list["clients"][0]["scopes"],
        json!(["system/Communication.crus", "system/Patient.rs"])
    );
    assert_eq!(list["clients"][0]["key_ids"], json!(["k1"]));
    assert_eq!(list["clients"][0]["token_endpoint"], s.token_url);
    let r = s
        .app
        .send(Req::delete(format!("/api/v1/smart-clients/{client}")).bearer(&s.app.other_token))
        .await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "tokens do not manage tokens"
    );
}

/// A client written with PyJWT and `cryptography`, as an EHR vendor's integration would be:
/// its keys are generated there, registered here, and both RS384 and ES384 assertions work.
#[tokio::test]
async fn a_pyjwt_client_gets_tokens_with_rs384_and_es384_assertions() {
    let Some(generated) = run_python("smart_client.py", &json!({"op": "keys"})) else {
        return;
    };
    for db in TestDatabase::all().await {
        let s = Smart::new(db).await;
        let client = s
            .register(
                generated["jwks"].clone(),
                &["system/Patient.rs", "system/Appointment.crus"],
            )
            .await;
        let case = |kid: &str, alg: &str, jti: &str| {
            json!({"pem": generated["private"][kid], "kid": kid, "alg": alg,
                   "claims": s.claims(&client, jti, 240)})
        };
        let signed = run_python(
            "smart_client.py",
            &json!({"op": "sign", "cases": [
                case("rsa-1", "RS384", "py-rsa"),
                case("ec-1", "ES384", "py-ec"),
                // A key the client has but signed with the other algorithm's name.
                case("rsa-1", "RS256", "py-weak"),
            ]}),
        )
        .unwrap();
        for assertion in &signed.as_array().unwrap()[..2] {
            let r = s
                .request_token(
                    assertion.as_str().unwrap(),
                    "system/Appointment.rs system/Patient.rs",
                )
                .await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            assert_eq!(r.json()["scope"], "system/Appointment.rs system/Patient.rs");
            let token = r.json()["access_token"].as_str().unwrap().to_owned();
            s.app
                .create_patient(&s.app.token, &patient_body("Bea", None, "+13125550102"))
                .await;
            let list = s
                .app
                .send(Req::get("/api/v1/patients").bearer(&token))
                .await;
            assert_eq!(list.status, StatusCode::OK, "{}", list.text);
        }
        let weak = s
            .request_token(signed[2].as_str().unwrap(), "system/Patient.rs")
            .await;
        assert_eq!(weak.status, StatusCode::BAD_REQUEST, "{}", weak.text);
        assert_eq!(weak.json()["error"], "invalid_client");
    }
}

#[tokio::test]
async fn smart_write_scopes_create_through_fhir_and_refuse_what_they_do_not_grant() {
    for db in TestDatabase::all().await {
        let s = Smart::new(db).await;
        let key = p384_key("ehr-writes");
        let client = s
            .register(
                json!({"keys": [key.jwk]}),
                &["system/Patient.cu", "system/AppointmentResponse.c"],
            )
            .await;
        let r = s
            .request_token(
                &key.sign(&s.claims(&client, "w-1", 120)),
                "system/Patient.cu system/AppointmentResponse.c",
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let token = r.json()["access_token"].as_str().unwrap().to_owned();
        let patient = json!({
            "resourceType": "Patient",
            "name": [{"family": "Quintanilla", "given": ["Ana"]}],
            "birthDate": "1971-03-14",
            "telecom": [{"system": "phone", "value": "+13125550142"}],
        });
        let created = s
            .app
            .send(Req::post("/fhir/r4/Patient").bearer(&token).json(&patient))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let id = created.json()["id"].as_str().unwrap().to_owned();
        // Created and updated, never read: `cu` without `rs`.
        let read = s
            .app
            .send(Req::get(format!("/fhir/r4/Patient/{id}")).bearer(&token))
            .await;
        assert_eq!(read.status, StatusCode::FORBIDDEN, "{}", read.text);
        assert_eq!(read.json()["resourceType"], "OperationOutcome");
        let conditional = s
            .app
            .send(
                Req::post("/fhir/r4/Patient")
                    .bearer(&token)
                    .header("if-none-exist", "identifier=MRN-1")
                    .json(&patient),
            )
            .await;
        assert_eq!(conditional.status, StatusCode::FORBIDDEN, "finding reads");
        assert!(
            conditional.text.contains("patients:read"),
            "{}",
            conditional.text
        );
        let appointment = s
            .app
            .send(
                Req::post("/fhir/r4/Appointment")
                    .bearer(&token)
                    .json(&json!({"resourceType": "Appointment"})),
            )
            .await;
        assert_eq!(appointment.status, StatusCode::FORBIDDEN);
        assert_eq!(appointment.json()["issue"][0]["code"], "forbidden");
        // `AppointmentResponse.c` is create only: `cu` is not offered.
        let r = s
            .app
            .send(
                Req::post("/api/v1/smart-clients")
                    .cookie(&s.admin)
                    .same_origin()
                    .json(&json!({"name": "EHR", "jwks": {"keys": [key.jwk]}, "scopes": ["system/AppointmentResponse.cu"]})),
            )
            .await;
        assert!(r.status.is_client_error(), "{}", r.text);
    }
}
