//! A client's JWK Set checked for registration: public RSA (2048 bits or
//! more, for RS384) or EC P-384 (for ES384) keys, each with a unique `kid`,
//! no private key material. Gives the [`ClientKey`]s the token endpoint
//! verifies assertions with.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// JWK members that only private (or symmetric) keys carry.
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

/// Smallest RSA modulus accepted, in bits.
const MIN_RSA_BITS: usize = 2048;

/// Bytes of each P-384 coordinate.
const P384_COORDINATE_LEN: usize = 48;

/// Most keys one client may register.
const MAX_KEYS: usize = 16;

/// One verified public key of a client.
#[derive(Clone)]
pub(crate) struct ClientKey {
    /// The key's `kid`.
    pub kid: String,
    /// The one algorithm it verifies: RS384 or ES384.
    pub alg: Algorithm,
    /// The key, ready for `jsonwebtoken::decode`.
    pub key: DecodingKey,
}

/// Checks a JWK Set; on success, its keys. The error is what to fix
/// (never the key material).
pub(crate) fn check_jwks(jwks: &Value) -> Result<Vec<ClientKey>, String> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("expected a JWK Set, {\"keys\":[...]}")?;
    if keys.is_empty() {
        return Err("the JWK Set has no keys".to_owned());
    }
    if keys.len() > MAX_KEYS {
        return Err(format!("at most {MAX_KEYS} keys per client"));
    }
    let mut out: Vec<ClientKey> = Vec::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        let checked = check_key(key).map_err(|e| format!("key {i}: {e}"))?;
        if out.iter().any(|k| k.kid == checked.kid) {
            return Err(format!("key {i}: kid {:?} is used twice", checked.kid));
        }
        out.push(checked);
    }
    Ok(out)
}

/// Checks one JWK.
fn check_key(value: &Value) -> Result<ClientKey, String> {
    let object = value.as_object().ok_or("not a JSON object")?;
    if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| object.contains_key(**m)) {
        return Err(format!(
            "it has private key material (\"{member}\"): register the public key only, and treat this private key as exposed"
        ));
    }
    let kid = object
        .get("kid")
        .and_then(Value::as_str)
        .filter(|kid| !kid.is_empty())
        .ok_or(
            "it has no kid: give every key a kid, which the client puts in its assertion header",
        )?
        .to_owned();
    let jwk: Jwk = serde_json::from_value(value.clone()).map_err(|_| {
        "not a JWK this gateway can read (kty RSA with n, e; or kty EC with crv, x, y)"
    })?;
    let alg = match object.get("kty").and_then(Value::as_str) {
        Some("RSA") => {
            check_rsa(object)?;
            Algorithm::RS384
        }
        Some("EC") => {
            check_p384(object)?;
            Algorithm::ES384
        }
        _ => return Err("kty must be RSA or EC (P-384)".to_owned()),
    };
    check_usage(&jwk, alg)?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| "the key parameters do not decode")?;
    Ok(ClientKey { kid, alg, key })
}

/// An RSA key: `n` of at least [`MIN_RSA_BITS`] bits, `e` present.
fn check_rsa(object: &serde_json::Map<String, Value>) -> Result<(), String> {
    let n = decode_member(object, "n")?;
    decode_member(object, "e")?;
    let significant = n.iter().skip_while(|b| **b == 0).count();
    let bits = match n.iter().find(|b| **b != 0) {
        Some(top) => significant * 8 - top.leading_zeros() as usize,
        None => 0,
    };
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "the RSA modulus has {bits} bits; at least {MIN_RSA_BITS} are required"
        ));
    }
    Ok(())
}

/// An EC key on P-384 with 48-byte coordinates.
fn check_p384(object: &serde_json::Map<String, Value>) -> Result<(), String> {
    if object.get("crv").and_then(Value::as_str) != Some("P-384") {
        return Err("EC keys must be on crv P-384 (for ES384)".to_owned());
    }
    for member in ["x", "y"] {
        if decode_member(object, member)?.len() != P384_COORDINATE_LEN {
            return Err(format!(
                "\"{member}\" must be {P384_COORDINATE_LEN} bytes for P-384"
            ));
        }
    }
    Ok(())
}

/// A base64url member, decoded.
fn decode_member(object: &serde_json::Map<String, Value>, member: &str) -> Result<Vec<u8>, String> {
    let text = object
        .get(member)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("\"{member}\" is missing"))?;
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| format!("\"{member}\" is not unpadded base64url"))
}

/// `alg`, `use` and `key_ops`, where present, must allow verifying `alg`.
fn check_usage(jwk: &Jwk, alg: Algorithm) -> Result<(), String> {
    let expected = match alg {
        Algorithm::ES384 => KeyAlgorithm::ES384,
        _ => KeyAlgorithm::RS384,
    };
    if jwk.common.key_algorithm.is_some_and(|a| a != expected) {
        return Err(format!(
            "\"alg\" must be {expected:?} for this key (or absent)"
        ));
    }
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return Err("\"use\" must be \"sig\" (or absent)".to_owned());
    }
    if jwk
        .common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return Err("\"key_ops\" must include \"verify\" (or be absent)".to_owned());
    }
    Ok(())
}
