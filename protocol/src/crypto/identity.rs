//! Identities: every principal (patient device, carer, provider system,
//! manager, wearable bridge) holds an Ed25519 signing key and an X25519
//! key-agreement key. Its public [`IdentityCard`] (keys, display name, role,
//! organisation, self-signature) is what invites carry and what the owner
//! approves before any key is wrapped to it.
//!
//! # Card encoding (`IdentityCard::to_bytes`, version 1)
//!
//! ```text
//! version        u8      = 1
//! signing_key    [32]    Ed25519 public key (= IdentityId)
//! agreement_key  [32]    X25519 public key (HPKE recipient key)
//! role           u8      1 patient-device, 2 carer, 3 provider, 4 manager, 5 wearable-bridge
//! name_len       u16 BE  then name_len bytes of UTF-8 display name (1..=256)
//! has_org        u8      0 or 1; if 1: org_len u16 BE then UTF-8 organisation (1..=256)
//! self_signature [64]    Ed25519 over b"satchel/v1/identity-card" || all bytes above
//! ```
//!
//! The fingerprint is SHA-256(b"satchel/v1/fingerprint" || signing_key ||
//! agreement_key), shown as five groups of five decimal digits; each group is
//! the big-endian integer of 5 consecutive digest bytes mod 100000.

use std::fmt;

use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, Serializable};
use ring::digest::{digest, SHA256};
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::encoding::{b64_array, hex_array, Reader};
use super::error::{CryptoError, Result};
use super::random;
use crate::ids::IdentityId;

/// Domain-separation prefix of the card self-signature.
pub const CARD_SIGNATURE_DOMAIN: &[u8] = b"satchel/v1/identity-card";
/// Domain-separation prefix of the fingerprint hash.
pub const FINGERPRINT_DOMAIN: &[u8] = b"satchel/v1/fingerprint";
/// Current identity card format version.
pub const CARD_VERSION: u8 = 1;
/// Current identity secret serialization version.
pub const IDENTITY_SECRET_VERSION: u8 = 1;
/// Longest display name or organisation accepted on a card, in bytes.
pub const MAX_CARD_TEXT_LEN: usize = 256;

/// The HPKE KEM whose key pair is the identity's agreement key.
pub(crate) type AgreementKem = X25519HkdfSha256;

/// What kind of principal an identity is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// One of the patient's own devices.
    PatientDevice,
    /// A family member or other carer.
    Carer,
    /// A provider system (hospital, GP, service integration engine).
    Provider,
    /// Delegated full control, e.g. a parent or guardian.
    Manager,
    /// A bridge that adds wearable measurements.
    WearableBridge,
    /// A relay named by a record's access log as a replica: it holds and
    /// forwards ciphertext, never a key.
    Relay,
}

impl Role {
    /// Stable one-byte code used in the card encoding.
    pub fn code(self) -> u8 {
        match self {
            Role::PatientDevice => 1,
            Role::Carer => 2,
            Role::Provider => 3,
            Role::Manager => 4,
            Role::WearableBridge => 5,
            Role::Relay => 6,
        }
    }

    /// Inverse of [`Role::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Role::PatientDevice,
            2 => Role::Carer,
            3 => Role::Provider,
            4 => Role::Manager,
            5 => Role::WearableBridge,
            6 => Role::Relay,
            _ => return None,
        })
    }

    /// The kebab-case name (same as the serde form).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::PatientDevice => "patient-device",
            Role::Carer => "carer",
            Role::Provider => "provider",
            Role::Manager => "manager",
            Role::WearableBridge => "wearable-bridge",
            Role::Relay => "relay",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The public, self-signed description of an identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityCard {
    /// Card format version ([`CARD_VERSION`]).
    pub version: u8,
    /// Ed25519 public key; also the identity's id.
    pub signing_key: IdentityId,
    /// X25519 public key that keys are wrapped to (hex).
    #[serde(with = "hex_array")]
    pub agreement_key: [u8; 32],
    /// Human-readable name shown when approving and in audit views.
    pub display_name: String,
    /// What kind of principal this is.
    pub role: Role,
    /// Organisation (for providers), if any.
    pub organisation: Option<String>,
    /// Ed25519 signature by `signing_key` over the canonical encoding
    /// (base64url).
    #[serde(with = "b64_array")]
    pub self_signature: [u8; 64],
}

fn check_text(text: &str, what: &'static str) -> Result<()> {
    if text.is_empty() || text.len() > MAX_CARD_TEXT_LEN || text.chars().any(char::is_control) {
        return Err(CryptoError::Malformed(what));
    }
    Ok(())
}

impl IdentityCard {
    /// The identity id (the Ed25519 public key).
    pub fn id(&self) -> IdentityId {
        self.signing_key
    }

    fn check_fields(&self) -> Result<()> {
        if self.version != CARD_VERSION {
            return Err(CryptoError::UnsupportedVersion(self.version));
        }
        check_text(&self.display_name, "display name")?;
        if let Some(org) = &self.organisation {
            check_text(org, "organisation")?;
        }
        Ok(())
    }

    /// Encoding of every field except the signature (see module docs).
    fn unsigned_bytes(&self) -> Vec<u8> {
        let org_len = self.organisation.as_ref().map_or(0, |o| 2 + o.len());
        let mut out =
            Vec::with_capacity(1 + 32 + 32 + 1 + 2 + self.display_name.len() + 1 + org_len + 64);
        out.push(self.version);
        out.extend_from_slice(self.signing_key.as_bytes());
        out.extend_from_slice(&self.agreement_key);
        out.push(self.role.code());
        // Lengths were bounded by `check_fields`; saturate defensively so an
        // unchecked card still encodes (and then fails verification).
        let name_len = u16::try_from(self.display_name.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&name_len.to_be_bytes());
        out.extend_from_slice(self.display_name.as_bytes());
        match &self.organisation {
            None => out.push(0),
            Some(org) => {
                out.push(1);
                let len = u16::try_from(org.len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(org.as_bytes());
            }
        }
        out
    }

    /// The exact bytes the self-signature covers.
    fn signing_message(&self) -> Vec<u8> {
        let body = self.unsigned_bytes();
        let mut msg = Vec::with_capacity(CARD_SIGNATURE_DOMAIN.len() + body.len());
        msg.extend_from_slice(CARD_SIGNATURE_DOMAIN);
        msg.extend_from_slice(&body);
        msg
    }

    /// Check the format version, field bounds and the self-signature.
    /// Any change to any field (name, role, organisation, either key) fails.
    pub fn verify(&self) -> Result<()> {
        self.check_fields()?;
        verify_signature(
            &self.signing_key,
            &self.signing_message(),
            &self.self_signature,
        )
    }

    /// Short, eye-comparable fingerprint of the card's keys, e.g.
    /// `"04821 09377 11645 52003 19384"`. Compare it out of band (read it
    /// aloud, scan a QR code) before approving an identity.
    pub fn fingerprint(&self) -> String {
        let mut input = Vec::with_capacity(FINGERPRINT_DOMAIN.len() + 64);
        input.extend_from_slice(FINGERPRINT_DOMAIN);
        input.extend_from_slice(self.signing_key.as_bytes());
        input.extend_from_slice(&self.agreement_key);
        let hash = digest(&SHA256, &input);
        let groups: Vec<String> = hash.as_ref()[..25]
            .chunks_exact(5)
            .map(|chunk| {
                let n = chunk.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
                format!("{:05}", n % 100_000)
            })
            .collect();
        groups.join(" ")
    }

    /// Binary form (see module docs). Round-trips with
    /// [`IdentityCard::from_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.unsigned_bytes();
        out.extend_from_slice(&self.self_signature);
        out
    }

    /// Parse the binary form. Checks shape and field bounds, not the
    /// signature: call [`IdentityCard::verify`] before trusting the card.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "identity card";
        let mut r = Reader::new(bytes, WHAT);
        let version = r.u8()?;
        if version != CARD_VERSION {
            return Err(CryptoError::UnsupportedVersion(version));
        }
        let signing_key = IdentityId(r.array()?);
        let agreement_key = r.array()?;
        let role = Role::from_code(r.u8()?).ok_or(CryptoError::Malformed("role"))?;
        let name_len = usize::from(r.u16()?);
        let display_name = std::str::from_utf8(r.take(name_len)?)
            .map_err(|_| CryptoError::Malformed("display name"))?
            .to_owned();
        let organisation = match r.u8()? {
            0 => None,
            1 => {
                let len = usize::from(r.u16()?);
                let org = std::str::from_utf8(r.take(len)?)
                    .map_err(|_| CryptoError::Malformed("organisation"))?;
                Some(org.to_owned())
            }
            _ => return Err(CryptoError::Malformed(WHAT)),
        };
        let self_signature = r.array()?;
        r.finish()?;
        let card = Self {
            version,
            signing_key,
            agreement_key,
            display_name,
            role,
            organisation,
            self_signature,
        };
        card.check_fields()?;
        Ok(card)
    }
}

/// Verify an Ed25519 signature by `author` (its public key) over `msg`.
pub fn verify_signature(author: &IdentityId, msg: &[u8], sig: &[u8]) -> Result<()> {
    UnparsedPublicKey::new(&ED25519, author.as_bytes())
        .verify(msg, sig)
        .map_err(|_| CryptoError::BadSignature)
}

/// A principal's private keys plus its card. Secrets are zeroized on drop;
/// `Debug` shows only the id and role.
pub struct Identity {
    seed: Zeroizing<[u8; 32]>,
    agreement_secret: Zeroizing<[u8; 32]>,
    // ring's key pair keeps its own expanded copy of the private key, which
    // ring does not wipe on drop (see ADR 0001).
    signing: Ed25519KeyPair,
    card: IdentityCard,
}

/// Whoever can sign as an identity without handing its secret out: an
/// [`Identity`] itself, or a device profile that holds one. Operations that
/// only sign (logging in, signing a statement) take a `Signer`.
pub trait Signer {
    /// The identity signed as.
    fn signer_id(&self) -> IdentityId;
    /// Its public card.
    fn signer_card(&self) -> &IdentityCard;
    /// An Ed25519 signature of `message`.
    fn sign_message(&self, message: &[u8]) -> [u8; 64];
}

impl Signer for Identity {
    fn signer_id(&self) -> IdentityId {
        self.id()
    }

    fn signer_card(&self) -> &IdentityCard {
        self.card()
    }

    fn sign_message(&self, message: &[u8]) -> [u8; 64] {
        self.sign(message)
    }
}

impl Identity {
    /// Generate fresh keys and a self-signed card. `display_name` must be
    /// 1..=256 bytes without control characters; so must `organisation`.
    pub fn generate(display_name: &str, role: Role, organisation: Option<&str>) -> Result<Self> {
        check_text(display_name, "display name")?;
        if let Some(org) = organisation {
            check_text(org, "organisation")?;
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        random::fill(seed.as_mut())?;
        let mut agreement_ikm = Zeroizing::new([0u8; 32]);
        random::fill(agreement_ikm.as_mut())?;
        Self::from_seeds(seed, agreement_ikm, display_name, role, organisation)
    }

    /// An identity derived from secret seed material (a recovery key's:
    /// the same material always gives the same identity). Generate fresh
    /// identities with [`Identity::generate`].
    pub fn from_seeds(
        seed: Zeroizing<[u8; 32]>,
        agreement_ikm: Zeroizing<[u8; 32]>,
        display_name: &str,
        role: Role,
        organisation: Option<&str>,
    ) -> Result<Self> {
        check_text(display_name, "display name")?;
        if let Some(org) = organisation {
            check_text(org, "organisation")?;
        }
        // Clamp through the HPKE private-key type so what we store is exactly
        // RFC 9180's SerializePrivateKey form.
        let sk = <AgreementKem as Kem>::PrivateKey::from_bytes(agreement_ikm.as_ref())
            .map_err(|_| CryptoError::Malformed("agreement key"))?;
        let mut agreement_secret = Zeroizing::new([0u8; 32]);
        agreement_secret.copy_from_slice(&sk.to_bytes());
        let agreement_key = agreement_public(&sk);

        let signing = Ed25519KeyPair::from_seed_unchecked(seed.as_ref())
            .map_err(|_| CryptoError::Malformed("signing key"))?;
        let mut card = IdentityCard {
            version: CARD_VERSION,
            signing_key: public_id(&signing)?,
            agreement_key,
            display_name: display_name.to_owned(),
            role,
            organisation: organisation.map(str::to_owned),
            self_signature: [0u8; 64],
        };
        card.self_signature = sign_with(&signing, &card.signing_message());
        Ok(Self {
            seed,
            agreement_secret,
            signing,
            card,
        })
    }

    /// The identity id (Ed25519 public key).
    pub fn id(&self) -> IdentityId {
        self.card.signing_key
    }

    /// The public, self-signed card.
    pub fn card(&self) -> &IdentityCard {
        &self.card
    }

    /// Ed25519 signature over `msg`. Callers should prefix `msg` with their
    /// own domain-separation string.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        sign_with(&self.signing, msg)
    }

    /// The HPKE private key (for unwrapping).
    pub(crate) fn agreement_private_key(&self) -> Result<<AgreementKem as Kem>::PrivateKey> {
        <AgreementKem as Kem>::PrivateKey::from_bytes(self.agreement_secret.as_ref())
            .map_err(|_| CryptoError::Malformed("agreement key"))
    }

    /// Versioned serialization of the private keys and the card, for a
    /// profile to persist wrapped under its master key:
    /// `version u8 (= 1) || ed25519 seed [32] || x25519 secret [32] ||
    /// card (IdentityCard::to_bytes)`.
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        let card = self.card.to_bytes();
        let mut out = Zeroizing::new(Vec::with_capacity(1 + 32 + 32 + card.len()));
        out.push(IDENTITY_SECRET_VERSION);
        out.extend_from_slice(self.seed.as_ref());
        out.extend_from_slice(self.agreement_secret.as_ref());
        out.extend_from_slice(&card);
        out
    }

    /// Inverse of [`Identity::to_secret_bytes`]. Checks that the card's
    /// self-signature verifies and that both public keys on it match the
    /// secrets.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "identity secret";
        let mut r = Reader::new(bytes, WHAT);
        let version = r.u8()?;
        if version != IDENTITY_SECRET_VERSION {
            return Err(CryptoError::UnsupportedVersion(version));
        }
        let seed = Zeroizing::new(r.array::<32>()?);
        let agreement_secret = Zeroizing::new(r.array::<32>()?);
        let card = IdentityCard::from_bytes(r.remaining())?;
        card.verify()?;

        let signing = Ed25519KeyPair::from_seed_unchecked(seed.as_ref())
            .map_err(|_| CryptoError::Malformed(WHAT))?;
        let sk = <AgreementKem as Kem>::PrivateKey::from_bytes(agreement_secret.as_ref())
            .map_err(|_| CryptoError::Malformed(WHAT))?;
        if public_id(&signing)? != card.signing_key || agreement_public(&sk) != card.agreement_key {
            return Err(CryptoError::Malformed(WHAT));
        }
        Ok(Self {
            seed,
            agreement_secret,
            signing,
            card,
        })
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.card.signing_key)
            .field("role", &self.card.role)
            .field("secrets", &"<redacted>")
            .finish()
    }
}

fn sign_with(pair: &Ed25519KeyPair, msg: &[u8]) -> [u8; 64] {
    let sig = pair.sign(msg);
    let mut out = [0u8; 64];
    out.copy_from_slice(sig.as_ref());
    out
}

fn public_id(pair: &Ed25519KeyPair) -> Result<IdentityId> {
    IdentityId::from_slice(pair.public_key().as_ref())
        .map_err(|_| CryptoError::Malformed("signing key"))
}

fn agreement_public(sk: &<AgreementKem as Kem>::PrivateKey) -> [u8; 32] {
    let pk = <AgreementKem as Kem>::sk_to_pk(sk);
    let mut out = [0u8; 32];
    out.copy_from_slice(&pk.to_bytes());
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn provider() -> Identity {
        Identity::generate("Dr Ada Example", Role::Provider, Some("St Elsewhere GP")).unwrap()
    }

    #[test]
    fn generated_card_verifies() {
        let id = provider();
        let card = id.card();
        card.verify().unwrap();
        assert_eq!(card.id(), id.id());
        assert_eq!(card.version, CARD_VERSION);
        assert_eq!(card.role, Role::Provider);
        assert_eq!(card.organisation.as_deref(), Some("St Elsewhere GP"));
        let carer = Identity::generate("Sam", Role::Carer, None).unwrap();
        carer.card().verify().unwrap();
    }

    #[test]
    fn sign_and_verify() {
        let id = provider();
        let sig = id.sign(b"hello");
        verify_signature(&id.id(), b"hello", &sig).unwrap();
        assert_eq!(
            verify_signature(&id.id(), b"hellO", &sig),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            verify_signature(&id.id(), b"hello", &sig[..63]),
            Err(CryptoError::BadSignature)
        );
        let other = provider();
        assert_eq!(
            verify_signature(&other.id(), b"hello", &sig),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn card_tampering_fails_verify() {
        let id = provider();
        let other = provider();
        let good = id.card().clone();

        let mut c = good.clone();
        c.display_name = "Dr Eve Example".into();
        assert_eq!(c.verify(), Err(CryptoError::BadSignature));

        let mut c = good.clone();
        c.agreement_key = other.card().agreement_key;
        assert_eq!(c.verify(), Err(CryptoError::BadSignature));

        let mut c = good.clone();
        c.signing_key = other.id();
        assert_eq!(c.verify(), Err(CryptoError::BadSignature));

        let mut c = good.clone();
        c.role = Role::Manager;
        assert_eq!(c.verify(), Err(CryptoError::BadSignature));

        let mut c = good.clone();
        c.organisation = None;
        assert_eq!(c.verify(), Err(CryptoError::BadSignature));

        let mut c = good.clone();
        c.self_signature[10] ^= 1;
        assert_eq!(c.verify(), Err(CryptoError::BadSignature));

        let mut c = good.clone();
        c.version = 2;
        assert_eq!(c.verify(), Err(CryptoError::UnsupportedVersion(2)));

        // Moving bytes between name and organisation must not keep the
        // signature valid (length prefixes).
        let a = Identity::generate("ab", Role::Carer, Some("c")).unwrap();
        let mut c = a.card().clone();
        c.display_name = "a".into();
        c.organisation = Some("bc".into());
        assert_eq!(c.verify(), Err(CryptoError::BadSignature));
    }

    #[test]
    fn card_binary_and_json_round_trip() {
        for id in [
            provider(),
            Identity::generate("Pat's phone", Role::PatientDevice, None).unwrap(),
        ] {
            let card = id.card();
            let parsed = IdentityCard::from_bytes(&card.to_bytes()).unwrap();
            assert_eq!(&parsed, card);
            parsed.verify().unwrap();
            let json = serde_json::to_string(card).unwrap();
            assert!(json.contains("\"role\":\"") && json.contains(card.role.as_str()));
            assert!(json.contains(&hex::encode(card.agreement_key)));
            let back: IdentityCard = serde_json::from_str(&json).unwrap();
            assert_eq!(&back, card);
            back.verify().unwrap();
        }
        let bytes = provider().card().to_bytes();
        for cut in 0..bytes.len() {
            assert!(IdentityCard::from_bytes(&bytes[..cut]).is_err());
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(IdentityCard::from_bytes(&long).is_err());
    }

    #[test]
    fn role_serde_is_kebab_case() {
        for (role, name) in [
            (Role::PatientDevice, "\"patient-device\""),
            (Role::Carer, "\"carer\""),
            (Role::Provider, "\"provider\""),
            (Role::Manager, "\"manager\""),
            (Role::WearableBridge, "\"wearable-bridge\""),
        ] {
            assert_eq!(serde_json::to_string(&role).unwrap(), name);
            assert_eq!(serde_json::from_str::<Role>(name).unwrap(), role);
            assert_eq!(Role::from_code(role.code()), Some(role));
        }
        assert_eq!(Role::from_code(0), None);
    }

    #[test]
    fn identity_secret_round_trip() {
        let id = provider();
        let secret = id.to_secret_bytes();
        let back = Identity::from_secret_bytes(&secret).unwrap();
        assert_eq!(back.id(), id.id());
        assert_eq!(back.card(), id.card());
        // Same keys: signatures verify under the same id and are deterministic.
        assert_eq!(back.sign(b"m"), id.sign(b"m"));
        assert_eq!(back.to_secret_bytes().as_slice(), secret.as_slice());
    }

    #[test]
    fn identity_secret_rejects_mismatch_and_garbage() {
        let a = provider();
        let b = provider();
        // a's secrets with b's card.
        let mut mixed = a.to_secret_bytes().to_vec();
        mixed.truncate(65);
        mixed.extend_from_slice(&b.card().to_bytes());
        assert!(matches!(
            Identity::from_secret_bytes(&mixed),
            Err(CryptoError::Malformed(_))
        ));
        // Wrong agreement secret.
        let mut bad = a.to_secret_bytes().to_vec();
        bad[40] ^= 0x40;
        assert!(Identity::from_secret_bytes(&bad).is_err());
        // Version and truncation.
        let mut v = a.to_secret_bytes().to_vec();
        v[0] = 9;
        assert_eq!(
            Identity::from_secret_bytes(&v).unwrap_err(),
            CryptoError::UnsupportedVersion(9)
        );
        assert!(Identity::from_secret_bytes(&[]).is_err());
        assert!(Identity::from_secret_bytes(&a.to_secret_bytes()[..70]).is_err());
    }

    #[test]
    fn generate_rejects_bad_text() {
        assert!(Identity::generate("", Role::Carer, None).is_err());
        assert!(Identity::generate("line\nbreak", Role::Carer, None).is_err());
        assert!(Identity::generate(&"x".repeat(257), Role::Carer, None).is_err());
        assert!(Identity::generate("ok", Role::Carer, Some("")).is_err());
        Identity::generate(&"x".repeat(256), Role::Carer, Some("Ørsted Clinic")).unwrap();
    }

    #[test]
    fn fingerprint_format_is_stable() {
        let id = provider();
        let fp = id.card().fingerprint();
        assert_eq!(fp.len(), 29);
        let groups: Vec<&str> = fp.split(' ').collect();
        assert_eq!(groups.len(), 5);
        assert!(groups
            .iter()
            .all(|g| g.len() == 5 && g.bytes().all(|b| b.is_ascii_digit())));
        assert_eq!(fp, id.card().clone().fingerprint());
        assert_ne!(fp, provider().card().fingerprint());
        // Name changes don't change the fingerprint; keys do.
        let mut renamed = id.card().clone();
        renamed.display_name = "Other".into();
        assert_eq!(renamed.fingerprint(), fp);

        // Pinned vector: fixed keys give a fixed fingerprint.
        let card = IdentityCard {
            version: 1,
            signing_key: IdentityId([1u8; 32]),
            agreement_key: [2u8; 32],
            display_name: "x".into(),
            role: Role::Carer,
            organisation: None,
            self_signature: [0u8; 64],
        };
        let mut input = FINGERPRINT_DOMAIN.to_vec();
        input.extend_from_slice(&[1u8; 32]);
        input.extend_from_slice(&[2u8; 32]);
        let h = digest(&SHA256, &input);
        let h = h.as_ref();
        let first = (u64::from(h[0]) << 32
            | u64::from(h[1]) << 24
            | u64::from(h[2]) << 16
            | u64::from(h[3]) << 8
            | u64::from(h[4]))
            % 100_000;
        assert!(card.fingerprint().starts_with(&format!("{first:05} ")));
        assert_eq!(card.fingerprint(), FIXED_FINGERPRINT);
    }

    /// Fingerprint of signing key [1; 32], agreement key [2; 32], computed
    /// independently (Python hashlib) from the documented definition.
    const FIXED_FINGERPRINT: &str = "08818 00529 71878 48252 15446";

    #[test]
    fn debug_is_redacted() {
        let id = provider();
        let dbg = format!("{id:?}");
        assert!(dbg.contains("redacted"));
        assert!(!dbg.contains(&hex::encode(&id.to_secret_bytes()[1..33])));
        assert!(!dbg.contains("Ada"));
    }
}
