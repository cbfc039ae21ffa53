//! Tests of the token endpoint and bearer checks end to end through
//! [`TokenIssuer`], with keys generated (ES384) or fixed (RS384) in
//! `test_support`; one test per rule.

use serde_json::json;

use super::test_support::{
    claims, client, es384_key, issuer, request, rs384_key, sign, unsigned_jwt, NOW_MS, TOKEN_URL,
};
use super::*;

const ALL: &str = "system/*.read system/*.write";

fn oauth_error(result: Result<TokenResponse, AuthError>) -> &'static str {
    result.err().map(|e| e.oauth_error()).unwrap_or("ok")
}

#[test]
fn valid_es384_assertion_gets_a_token_that_authorizes() {
    let key = es384_key("ec-1");
    let issuer = issuer(vec![client("hospital", &[&key], ALL)]);
    let answer = issuer
        .token(
            &request(&sign(&key, &claims("hospital")), "system/Observation.read"),
            NOW_MS,
        )
        .unwrap();
    assert_eq!(answer.token_type, "bearer");
    assert_eq!(answer.expires_in, 300);
    assert_eq!(answer.scope, "system/Observation.read");
    let grant = issuer
        .authorize(
            Some(&format!("Bearer {}", answer.access_token)),
            NOW_MS + 1000,
        )
        .unwrap();
    assert_eq!(grant.client_id, "hospital");
    assert_eq!(grant.scopes.to_string(), "system/Observation.read");
}

#[test]
fn valid_rs384_assertion_gets_a_token_that_authorizes() {
    let key = rs384_key("rsa-1");
    let issuer = issuer(vec![client("gp", &[&key], ALL)]);
    let answer = issuer
        .token(
            &request(&sign(&key, &claims("gp")), "system/Patient.rs"),
            NOW_MS,
        )
        .unwrap();
    let grant = issuer
        .authorize(Some(&format!("Bearer {}", answer.access_token)), NOW_MS)
        .unwrap();
    assert_eq!(grant.client_id, "gp");
    assert!(grant.scopes.allows("Patient", Access::Read));
}

#[test]
fn access_token_is_32_random_bytes_base64url() {
    let key = es384_key("k");
    let issuer = issuer(vec![client("hospital", &[&key], ALL)]);
    let first = issuer
        .token(&request(&sign(&key, &claims("hospital")), ALL), NOW_MS)
        .unwrap();
    let second = issuer
        .token(&request(&sign(&key, &claims("hospital")), ALL), NOW_MS)
        .unwrap();
    assert_eq!(first.access_token.len(), 43);
    assert_ne!(first.access_token, second.access_token);
}

#[test]
fn replayed_jti_is_refused() {
    let key = es384_key("k");
    let issuer = issuer(vec![client("hospital", &[&key], ALL)]);
    let assertion = sign(&key, &claims("hospital"));
    issuer.token(&request(&assertion, ALL), NOW_MS).unwrap();
    let err = issuer
        .token(&request(&assertion, ALL), NOW_MS + 1000)
        .unwrap_err();
    assert!(matches!(err, AuthError::ReplayedAssertion), "{err}");
    assert_eq!(err.oauth_error(), "invalid_client");
}

#[test]
fn wrong_aud_is_refused() {
    let key = es384_key("k");
    let issuer = issuer(vec![client("hospital", &[&key], ALL)]);
    let mut c = claims("hospital");
    c["aud"] = json!("https://other.example/token");
    let err = issuer
        .token(&request(&sign(&key, &c), ALL), NOW_MS)
        .unwrap_err();
    assert!(matches!(err, AuthError::WrongAudience { .. }), "{err}");
    assert!(err.to_string().contains(TOKEN_URL));
}

#[test]
fn expired_assertion_is_refused() {
    let key = es384_key("k");
    let issuer = issuer(vec![client("hospital", &[&key], ALL)]);
    let mut c = claims("hospital");
    c["exp"] = json!(NOW_MS / 1000 - 1);
    let err = issuer
        .token(&request(&sign(&key, &c), ALL), NOW_MS)
        .unwrap_err();
    assert!(matches!(err, AuthError::AssertionExpired), "{err}");
}

#[test]
fn assertion_without_exp_is_refused() {
    let key = es384_key("k");
    let issuer = issuer(vec![client("hospital", &[&key], ALL)]);
    let mut c = claims("hospital");
    c.as_object_mut().unwrap().remove("exp");
    let err = issuer
        .token(&request(&sign(&key, &c), ALL), NOW_MS)
        .unwrap_err();
    assert!(matches!(err, AuthError::InvalidClaims(_)), "{err}");
}

#[test]
fn exp_more_than_five_minutes_ahead_is_refused() {
    let key = es384_key("k");
    let issuer = issuer(vec![client("hospital", &[&key], ALL)]);
    let mut c = claims("hospital");
    c["exp"] = json!(NOW_MS / 1000 + 600);
    let err = issuer
        .token(&request(&sign(&key, &c), ALL), NOW_MS)
        .unwrap_err();
    assert!(matches!(err, AuthError::AssertionLifetimeTooLong), "{err}");
}

#[test]
fn exp_five_minutes_ahead_is_accepted() {
    let key = es384_key("k");
    let issuer = issuer(vec![client("hospital", &[&key], ALL)]);
    let mut c = claims("hospital");
    c["exp"] = json!(NOW_MS / 1000 + 300);
    issuer
        .token(&request(&sign(&key, &c), ALL), NOW_MS)
        .unwrap();
}

#[test]
fn nbf_beyond_clock_skew_is_refused() {
    let key = es384_key("k");
    let issuer = issuer(vec![client("hospital", &[&key], ALL)]);
    let mut c = claims("hospital");
    c["nbf"] = json!(NOW_MS / 1000 + 120);
    let err = issuer
        .token(&request(&sign(&key, &c), ALL), NOW_MS)
        .unwrap_err();
    assert!(matches!(err, AuthError::AssertionNotYetValid), "{err}");
}

#[test]
fn iat_beyond_clock_skew_is_refused() {
    let key = es384_key("k");
    let issuer = issuer(vec![client("hospital", &[&key], ALL)]);
    let mut c = claims("hospital");
    c["iat"] = json!(NOW_MS / 1000 + 120);
    let err = issuer
        .token(&request(&sign(&key, &c), ALL), NOW_MS)
        .unwrap_err();
    assert!(matches!(err, AuthError::AssertionNotYetValid), "{err}");
}

#[test]
fn nbf_and_iat_within_clock_skew_are_accepted() {
    let key = es384_key("k");
    let issuer = issuer(vec![client("hospital", &[&key], ALL)]);
    let mut c = claims("hospital");
    c["nbf"] = json!(NOW_MS / 1000 + 30);
    c["iat"] = json!(NOW_MS / 1000 + 30);
    issuer
        .token(&request(&sign(&key, &c), ALL), NOW_MS)
        .unwrap();
}

#[test]
fn assertion_without_jti_is_refused() {
    let key = es384_key("k");
    let issuer = issuer(vec![client("hospital", &[&key], ALL)]);
    let mut c = claims("hospital");
    c.as_object_mut().unwrap().remove("jti");
    let err = issuer
        .token(&request(&sign(&key, &c), ALL), NOW_MS)
        .unwrap_err();
    assert!(matches!(err, AuthError::InvalidClaims(_)), "{err}");
}

#[test]
fn unknown_kid_is_refused() {
    let registered = es384_key("registered");
    let unknown = es384_key("unknown");
    let issuer = issuer(vec![client("hospital", &[&registered], ALL)]);
    let err = issuer
        .token(&request(&sign(&unknown, &claims("hospital")), ALL), NOW_MS)
        .unwrap_err();
    assert!(matches!(err, AuthError::UnknownKey { .. }), "{err}");
}

#[test]
fn signature_by_another_key_under_a_registered_kid_is_refused() {
    let registered = es384_key("k");
    let impostor = es384_key("k");
    let issuer = issuer(vec![client("hospital", &[&registered], ALL)]);
    let err = issuer
        .token(&request(&sign(&impostor, &claims("hospital")), ALL), NOW_MS)
        .unwrap_err();
    assert!(matches!(err, AuthError::BadSignature { .. }), "{err}");
}

#[test]
fn unknown_client_is_refused() {
    let key = es384_key("k");
    let issuer = issuer(vec![client("hospital", &[&key], ALL)]);
    let err = issuer
        .token(&request(&sign(&key, &claims("stranger")), ALL), NOW_MS)
        .unwrap_err();
    assert!(matches!(err, AuthError::UnknownClient(_)), "{err}");
    assert_eq!(err.status(), 401);
}

#[test]
fn iss_different_from_sub_is_refused() {
    let key = es384_key("k");
    let issuer = issuer(vec![client("hospital", &[&key], ALL)]);
    let mut c = claims("hospital");
    c["sub"] = json!("someone-else");
    let err = issuer
        .token(&request(&sign(&key, &c), ALL), NOW_MS)
        .unwrap_err();
    assert!(matches!(err, AuthError::IssuerSubjectMismatch), "{err}");
}

#[test]
fn hs256_assertion_is_refused() {
    // The classic confusion attack: HMAC "keyed" with the public key.
    let key = es384_key("k");
    let issuer = issuer(vec![client("hospital", &[&key], ALL)]);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k".into());
    let forged = jsonwebtoken::encode(
        &header,
        &claims("hospital"),
        &jsonwebtoken::EncodingKey::from_secret(key.jwk.to_string().as_bytes()),
    )
    .unwrap();
    let err = issuer.token(&request(&forged, ALL), NOW_MS).unwrap_err();
    assert!(matches!(err, AuthError::UnsupportedAlgorithm(_)), "{err}");
}

#[test]
fn alg_none_assertion_is_refused() {
    let key = es384_key("k");
    let issuer = issuer(vec![client("hospital", &[&key], ALL)]);
    let forged = unsigned_jwt(
        &json!({ "alg": "none", "kid": "k" }),
        &claims("hospital"),
        b"",
    );
    let err = issuer.token(&request(&forged, ALL), NOW_MS).unwrap_err();
    assert!(matches!(err, AuthError::UnsupportedAlgorithm(_)), "{err}");
}

#[test]
fn alg_not_matching_the_key_is_refused() {
    let key = es384_key("k");
    let issuer = issuer(vec![client("hospital", &[&key], ALL)]);
    let forged = unsigned_jwt(
        &json!({ "alg": "RS384", "kid": "k" }),
        &claims("hospital"),
        b"x",
    );
    let err = issuer.token(&request(&forged, ALL), NOW_MS).unwrap_err();
    assert!(
        matches!(err, AuthError::KeyAlgorithmMismatch { .. }),
        "{err}"
    );
}

#[test]
fn key_of_another_client_under_the_same_kid_is_refused() {
    let ours = es384_key("shared-kid");
    let theirs = es384_key("shared-kid");
    let issuer = issuer(vec![
        client("hospital", &[&ours], ALL),
        client("lab", &[&theirs], ALL),
    ]);
    // The lab signs with its own key but claims to be the hospital.
    let err = issuer
        .token(&request(&sign(&theirs, &claims("hospital")), ALL), NOW_MS)
        .unwrap_err();
    assert!(matches!(err, AuthError::BadSignature { .. }), "{err}");
}

#[test]
fn kid_registered_only_for_another_client_is_refused() {
    let ours = es384_key("hospital-key");
    let theirs = es384_key("lab-key");
    let issuer = issuer(vec![
        client("hospital", &[&ours], ALL),
        client("lab", &[&theirs], ALL),
    ]);
    let err = issuer
        .token(&request(&sign(&theirs, &claims("hospital")), ALL), NOW_MS)
        .unwrap_err();
    assert!(matches!(err, AuthError::UnknownKey { .. }), "{err}");
}

#[test]
fn requested_scope_is_intersected_with_registered_scopes() {
    let key = es384_key("k");
    let issuer = issuer(vec![client(
        "gp",
        &[&key],
        "system/*.read system/Observation.write",
    )]);
    let answer = issuer
        .token(
            &request(
                &sign(&key, &claims("gp")),
                "system/Patient.cruds system/Observation.write system/Encounter.read",
            ),
            NOW_MS,
        )
        .unwrap();
    assert_eq!(
        answer.scope,
        "system/Encounter.read system/Observation.write system/Patient.read"
    );
}

#[test]
fn scope_outside_registration_is_invalid_scope() {
    let key = es384_key("k");
    let issuer = issuer(vec![client("gp", &[&key], "system/Patient.read")]);
    let result = issuer.token(
        &request(&sign(&key, &claims("gp")), "system/Observation.write"),
        NOW_MS,
    );
    assert_eq!(oauth_error(result), "invalid_scope");
}

#[test]
fn wrong_grant_type_is_unsupported_grant_type() {
    let key = es384_key("k");
    let issuer = issuer(vec![client("gp", &[&key], ALL)]);
    let mut form = request(&sign(&key, &claims("gp")), ALL);
    form.grant_type = Some("authorization_code".into());
    assert_eq!(
        oauth_error(issuer.token(&form, NOW_MS)),
        "unsupported_grant_type"
    );
}

#[test]
fn wrong_client_assertion_type_is_invalid_request() {
    let key = es384_key("k");
    let issuer = issuer(vec![client("gp", &[&key], ALL)]);
    let mut form = request(&sign(&key, &claims("gp")), ALL);
    form.client_assertion_type =
        Some("urn:ietf:params:oauth:client-assertion-type:saml2-bearer".into());
    assert_eq!(oauth_error(issuer.token(&form, NOW_MS)), "invalid_request");
}

#[test]
fn token_expires_after_five_minutes() {
    let key = es384_key("k");
    let issuer = issuer(vec![client("gp", &[&key], ALL)]);
    let answer = issuer
        .token(&request(&sign(&key, &claims("gp")), ALL), NOW_MS)
        .unwrap();
    let header = format!("Bearer {}", answer.access_token);
    issuer.authorize(Some(&header), NOW_MS + 299_999).unwrap();
    let err = issuer
        .authorize(Some(&header), NOW_MS + 300_000)
        .unwrap_err();
    assert!(matches!(err, AuthError::InvalidToken), "{err}");
    assert_eq!(err.status(), 401);
}

#[test]
fn missing_or_malformed_authorization_is_invalid_token() {
    let issuer = issuer(vec![]);
    for header in [
        None,
        Some("Basic abc"),
        Some("Bearer"),
        Some("Bearer a b"),
        Some("token"),
    ] {
        let err = issuer.authorize(header, NOW_MS).unwrap_err();
        assert_eq!(
            (err.status(), err.oauth_error()),
            (401, "invalid_token"),
            "{header:?}"
        );
    }
}

#[test]
fn unknown_token_is_invalid_token() {
    let issuer = issuer(vec![]);
    let err = issuer
        .authorize(
            Some("Bearer AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            NOW_MS,
        )
        .unwrap_err();
    assert!(matches!(err, AuthError::InvalidToken), "{err}");
}

#[test]
fn read_only_grant_requiring_write_is_insufficient_scope() {
    let grant = Grant {
        client_id: "gp".into(),
        scopes: Scopes::parse("system/*.read").unwrap(),
    };
    grant.require("Observation", Access::Read).unwrap();
    let err = grant.require("Observation", Access::Write).unwrap_err();
    assert_eq!(
        (err.status(), err.oauth_error()),
        (403, "insufficient_scope")
    );
    assert!(
        err.to_string().contains("system/Observation.write"),
        "{err}"
    );
}

#[test]
fn errors_and_debug_never_show_the_assertion_or_token() {
    let key = es384_key("k");
    let issuer = issuer(vec![client("gp", &[&key], ALL)]);
    let assertion = sign(&key, &claims("gp"));
    let form = request(&assertion, ALL);
    let answer = issuer.token(&form, NOW_MS).unwrap();
    let replay = issuer.token(&form, NOW_MS).unwrap_err();
    let bad = issuer
        .authorize(Some(&format!("Bearer {}x", answer.access_token)), NOW_MS)
        .unwrap_err();
    for text in [
        replay.to_string(),
        format!("{replay:?}"),
        bad.to_string(),
        format!("{bad:?}"),
        format!("{form:?}"),
        format!("{answer:?}"),
        bad.www_authenticate().unwrap(),
    ] {
        assert!(!text.contains(&assertion), "{text}");
        assert!(!text.contains(&answer.access_token), "{text}");
    }
}

mod http {
    use axum::body::{to_bytes, Body};
    use axum::http::{Request, StatusCode};
    use serde_json::Value;
    use std::sync::Arc;
    use tower::ServiceExt;

    use super::super::test_support::{claims, client, es384_key, issuer, sign, TOKEN_URL};
    use super::super::{routes, ASSERTION_TYPE};

    async fn call(router: axum::Router, request: Request<Body>) -> (StatusCode, String, Value) {
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let cache = response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, cache, serde_json::from_slice(&body).unwrap())
    }

    fn form_post(body: String) -> Request<Body> {
        Request::post("/auth/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap()
    }

    #[tokio::test]
    async fn smart_configuration_advertises_backend_services() {
        let router = routes(Arc::new(issuer(vec![])));
        let request = Request::get("/.well-known/smart-configuration")
            .body(Body::empty())
            .unwrap();
        let (status, _, json) = call(router, request).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(json["token_endpoint"], TOKEN_URL);
        assert_eq!(
            json["token_endpoint_auth_methods_supported"][0],
            "private_key_jwt"
        );
        assert_eq!(
            json["token_endpoint_auth_signing_alg_values_supported"],
            serde_json::json!(["RS384", "ES384"])
        );
        assert_eq!(json["capabilities"][0], "client-confidential-asymmetric");
    }

    #[tokio::test]
    async fn token_endpoint_answers_a_form_post_with_no_store() {
        let key = es384_key("k");
        let router = routes(Arc::new(issuer(vec![client(
            "gp",
            &[&key],
            "system/*.read",
        )])));
        // The test issuer's clock is NOW_MS; the route reads the real clock,
        // so sign for now.
        let mut c = claims("gp");
        let now = super::super::now_ms() / 1000;
        c["iat"] = now.into();
        c["exp"] = (now + 240).into();
        let body = format!(
            "grant_type=client_credentials&scope=system%2FPatient.read&client_assertion_type={}&client_assertion={}",
            ASSERTION_TYPE.replace(':', "%3A"),
            sign(&key, &c)
        );
        let (status, cache, json) = call(router, form_post(body)).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(cache, "no-store");
        assert_eq!(json["token_type"], "bearer");
        assert_eq!(json["expires_in"], 300);
        assert_eq!(json["scope"], "system/Patient.read");
    }

    #[tokio::test]
    async fn token_endpoint_errors_are_oauth_json() {
        let router = routes(Arc::new(issuer(vec![])));
        let (status, cache, json) =
            call(router.clone(), form_post("grant_type=password".into())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(cache, "no-store");
        assert_eq!(json["error"], "unsupported_grant_type");
        assert!(json["error_description"]
            .as_str()
            .unwrap()
            .contains("client_credentials"));

        let not_a_form = Request::post("/auth/token")
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let (status, _, json) = call(router, not_a_form).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(json["error"], "invalid_request");
    }
}
