//! Test keys and assertion builders for the auth tests: a fresh ES384 key
//! pair per call (ring), one fixed RSA 2048 test key (never used outside
//! tests), JWKs for both, and signed client assertions.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
use serde_json::{json, Value};

use super::{ClientRegistry, RegisteredClient, Scopes, TokenIssuer, TokenRequest};

/// The token URL the test issuer expects as `aud`.
pub const TOKEN_URL: &str = "https://gateway.example/auth/token";

/// A fixed "now" for the tests, in milliseconds (2026-01-01T00:00:00Z).
pub const NOW_MS: i64 = 1_767_225_600_000;

/// A test-only RSA 2048 private key (PKCS#1), generated once with
/// `openssl genrsa 2048`.
const RSA_PRIVATE_PEM: &str = "\
-----BEGIN RSA PRIVATE KEY-----
MIIEowIBAAKCAQEAo1xbTou8uSOU+TicV8n2Kc9XFYh9GEVhVQ6zAYCkJ4cEXbi1
Cp1UqLi6tzWMk89bPyi8e/NViufuGWrf0WKZBUpWWgVeVj0xyWWMLEbMN0PpU6W7
9AUMsvLQng46zN4B61BwRSvqQsaBNTzg54UlqjTv+/9EpPvDyrG8ORgZprKlfZLr
OOYABOVsusKjg7pC/P3bCn2beT2cp7Xi++ydzsChbKqj3sd9rh/Re2isIfnlnbWm
kr2KMD18muZGhfK6dts8q/+ZRxPF92jmglUt8vmLwany2GzZWHwzv4056dkZoiex
emhrEDJU6772ggxCrCe3mU5niXdArf/tHNnbcQIDAQABAoIBAA49/rvh/5RzNLQR
qm0WRNQvqRujKFIrDP75vBjVGqVTkR7hUUSuo3MzlRu58G/xM7cARIaDQsxMciax
zveV+ASiZCrkWELT16OuVcKFHZ1yhJoaqJXwBsO8habx/fsJyUhhspgP6b7j8t8t
rTyiEBQ/Ge5yD+MDtssqJGB56GqZpEYTmUj7hRuLKdp9MSULJA9e9wSbab1yy/y5
0YMLLlvta5V6zPz3afqLiQVWbDoUPdYU7v/j2tOqabYd8e9V3xx/hjiLaDC9kle1
ku9+PsOE3BWfKMj6jkulhhygN5H92ROuL/4/c1ZpeeZX1caSDD7H8L+Iz7Tjc/zJ
eYkZU60CgYEA0iQilSwyg9MISC7nnleFLLhyTTr7I9/NpDx79Fd37FIeujmSrZwv
GTj0RhAvTwzt2CJdZssEs0RJtlS505nxwAMIj5wGdcehZjPg5eFiHlB+GOJBkjIM
Sm2PRHgJONnkGxsNTSBO/V2Y+KwH1Eo1N7aa1bzu4wcBlx4ekYIaSRMCgYEAxwLD
FuS+cX+eNDqIXyUs1peRQbD+P1h55cWETC+p0FZsfN4BwzkQTr5+HAooKcIXoYwg
gh07LLMdL+pHgjuKhi6lSU8LlIx+4saJc76K3QQKDOuJ9oQWELz2viqhs3NzKWHf
k+4dXCuQyeT7g/bSNk7eMb3WAC84UKxipnKb/esCgYEAp0SIGoFRvEiQgRSE3S8B
HHW81eiq2wVcJOzYJcgx9vPu7YDCVlrJyqPhHJvpbFz4PWAtRJM5LJCgs/eA6wPQ
wGwptlYVdk7vE/EbhR///+1GUfxXAU3BJsVKks+RV6VowoKn9cpP1bFZACe/G6Xt
8mjxmkyHQkLjayxYXK5Yye0CgYBatn6Yw+GvOJ2zbu7Ud8yNcH8ss3HhDAJcYwEf
/SXpqks/S67//tXZHum6/EI8bpV49Leot4xOnsJyIddAnMVSzpZW6Sn9J2F7G0Zy
NOt1PS8bno2/iYvJS2kpW6Njef+HYG6aLpLBfbY84RxolaxSRvbvM3oFkYCY/Urm
Vh2WywKBgG/BFxgMgxjV4X2Ftu99XFG7LnG9EUZOfp8UHLnbqogJqNWc2C9jsvlt
SWpHjN59vEKwYv1cmhw2CFvZoDbd4mofRDLwJgJjQ9v3RH1uNJUHZk3SViAG2oKQ
yq5EOoL/TwVj39p4icElXqrJ5P/aFs3Jodu1pDViFuL3UIizxiHi
-----END RSA PRIVATE KEY-----
";

/// The modulus of [`RSA_PRIVATE_PEM`], base64url.
const RSA_N: &str = "o1xbTou8uSOU-TicV8n2Kc9XFYh9GEVhVQ6zAYCkJ4cEXbi1Cp1UqLi6tzWMk89bPyi8e_NViufuGWrf0WKZBUpWWgVeVj0xyWWMLEbMN0PpU6W79AUMsvLQng46zN4B61BwRSvqQsaBNTzg54UlqjTv-_9EpPvDyrG8ORgZprKlfZLrOOYABOVsusKjg7pC_P3bCn2beT2cp7Xi--ydzsChbKqj3sd9rh_Re2isIfnlnbWmkr2KMD18muZGhfK6dts8q_-ZRxPF92jmglUt8vmLwany2GzZWHwzv4056dkZoiexemhrEDJU6772ggxCrCe3mU5niXdArf_tHNnbcQ";

/// A signing key and the public JWK that verifies it.
pub struct TestKey {
    pub alg: Algorithm,
    pub kid: String,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

/// A fresh ES384 (P-384) key with this `kid`.
pub fn es384_key(kid: &str) -> TestKey {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    // The public key is the uncompressed point: 0x04 || x || y.
    let point = pair.public_key().as_ref();
    assert_eq!(point.len(), 97);
    TestKey {
        alg: Algorithm::ES384,
        kid: kid.to_owned(),
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({
            "kty": "EC",
            "crv": "P-384",
            "kid": kid,
            "use": "sig",
            "alg": "ES384",
            "x": URL_SAFE_NO_PAD.encode(&point[1..49]),
            "y": URL_SAFE_NO_PAD.encode(&point[49..97]),
        }),
    }
}

/// The fixed RS384 test key with this `kid`.
pub fn rs384_key(kid: &str) -> TestKey {
    TestKey {
        alg: Algorithm::RS384,
        kid: kid.to_owned(),
        encoding: EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap(),
        jwk: json!({ "kty": "RSA", "kid": kid, "alg": "RS384", "n": RSA_N, "e": "AQAB" }),
    }
}

/// A JWK Set of these keys.
pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
}

/// A registered client with these keys and scopes.
pub fn client(client_id: &str, keys: &[&TestKey], scope: &str) -> RegisteredClient {
    RegisteredClient {
        client_id: client_id.to_owned(),
        jwks: jwks(keys),
        scopes: Scopes::parse(scope).unwrap(),
    }
}

/// An issuer at [`TOKEN_URL`] with these clients.
pub fn issuer(clients: Vec<RegisteredClient>) -> TokenIssuer {
    let mut registry = ClientRegistry::default();
    for c in clients {
        registry.add(c).unwrap();
    }
    TokenIssuer::new(registry, TOKEN_URL.to_owned())
}

/// The claims of a valid assertion by `client_id` at [`NOW_MS`], with a
/// fresh jti.
pub fn claims(client_id: &str) -> Value {
    let now = NOW_MS / 1000;
    let mut jti = [0u8; 16];
    ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut jti).unwrap();
    json!({
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "exp": now + 240,
        "iat": now,
        "jti": URL_SAFE_NO_PAD.encode(jti),
    })
}

/// Signs `claims` with `key` (its alg and kid in the header).
pub fn sign(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

/// A token request carrying `assertion` and asking for `scope`.
pub fn request(assertion: &str, scope: &str) -> TokenRequest {
    TokenRequest {
        grant_type: Some("client_credentials".to_owned()),
        scope: Some(scope.to_owned()),
        client_assertion_type: Some(
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned(),
        ),
        client_assertion: Some(assertion.to_owned()),
    }
}

/// A compact JWT with this header and claims and a junk signature, for
/// `alg` values jsonwebtoken will not sign with (`none`, or HS256 forged
/// against a public key).
pub fn unsigned_jwt(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}
