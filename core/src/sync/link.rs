//! Adding another device of the same patient.
//!
//! The existing device creates a link on the relay and shows a one-time
//! code (`satchel-link:...`) carrying the relay address, the record id and a
//! random 256-bit secret `K`. The new device posts its identity card with an
//! HMAC under a key derived from `K`, proving it saw the code. The existing
//! device checks that HMAC, publishes a signed `add-device` statement, and
//! answers with the record's keys wrapped to the new device (HPKE) and
//! MACed with `K`. The relay sees neither `K` nor any key.

use std::time::{Duration, Instant};

use base64::Engine;
use ring::hmac;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::engine::Failure;
use super::transport::{RelayClient, TransportError};
use super::wire::{
    self, b64, ChallengeRequest, CreateLinkRequest, LinkPath, LinkPayload, LinkState, RecordPath,
    TokenRequest,
};
use crate::crypto::kdf::hkdf_sha256;
use crate::crypto::Signer;
use crate::crypto::{unwrap_key, wrap_key, Identity, IdentityCard, WrappedKey};
use crate::ids::{LinkId, RecordId};
use crate::profile::{DeviceBundle, Profile, ProfileError};
use crate::sharing::SignedStatement;
use crate::store::Store;

const CODE_PREFIX: &str = "satchel-link:";
const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Why linking failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("this is not a Satchel device-link code")]
    BadCode,
    #[error("the other device's answer failed its integrity check (wrong code?)")]
    BadProof,
    #[error("the link expired before the other device answered")]
    TimedOut,
    #[error("a message for the other device could not be encoded")]
    Encode,
    #[error(
        "the relay did not show a valid relay identity card (is the address a Satchel relay?)"
    )]
    BadRelayIdentity,
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

/// JSON bytes of a message for the other device; a failure is an error,
/// never an empty message (some of these bytes are MACed).
pub(crate) fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, LinkError> {
    serde_json::to_vec(value).map_err(|_| LinkError::Encode)
}

impl From<Failure> for LinkError {
    fn from(f: Failure) -> Self {
        LinkError::Transport(TransportError::Sync(f.into()))
    }
}

/// The one-time code shown by the existing device.
#[derive(Serialize, Deserialize)]
pub struct LinkCode {
    pub relay: String,
    pub record_id: RecordId,
    #[serde(with = "b64")]
    secret: Vec<u8>,
}

impl Drop for LinkCode {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

impl std::fmt::Debug for LinkCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkCode")
            .field("relay", &self.relay)
            .field("record_id", &self.record_id)
            .finish_non_exhaustive()
    }
}

impl LinkCode {
    pub(crate) fn new(relay: &str, record_id: RecordId) -> Result<Self, LinkError> {
        let key =
            crate::crypto::SymmetricKey::generate().map_err(|e| LinkError::Profile(e.into()))?;
        Ok(Self {
            relay: relay.to_string(),
            record_id,
            secret: key.expose().to_vec(),
        })
    }

    fn derive(&self, info: &[u8], len: usize) -> Result<Zeroizing<Vec<u8>>, LinkError> {
        let mut out = Zeroizing::new(vec![0u8; len]);
        hkdf_sha256(b"satchel/v1/link", &self.secret, &[info], &mut out)
            .map_err(|_| LinkError::BadCode)?;
        Ok(out)
    }

    /// The link's id on the relay (reveals nothing about the secret).
    pub fn link(&self) -> Result<LinkId, LinkError> {
        let derived = self.derive(b"satchel/v1/link-id", LinkId::LEN)?;
        let mut id = [0u8; LinkId::LEN];
        id.copy_from_slice(&derived[..LinkId::LEN]);
        Ok(LinkId(id))
    }

    /// [`LinkCode::link`] in hex.
    pub fn link_id(&self) -> Result<String, LinkError> {
        Ok(self.link()?.to_hex())
    }

    pub(crate) fn mac_key(&self) -> Result<hmac::Key, LinkError> {
        Ok(hmac::Key::new(
            hmac::HMAC_SHA256,
            &self.derive(b"satchel/v1/link-mac", 32)?,
        ))
    }

    /// The printable code.
    pub fn encode(&self) -> Result<String, LinkError> {
        self.encode_as(CODE_PREFIX)
    }

    pub(crate) fn encode_as(&self, prefix: &str) -> Result<String, LinkError> {
        let json = Zeroizing::new(to_json(self)?);
        Ok(format!("{prefix}{}", B64URL.encode(&json[..])))
    }

    /// Read a printed code.
    pub fn parse(code: &str) -> Result<Self, LinkError> {
        Self::parse_as(code, CODE_PREFIX)
    }

    pub(crate) fn parse_as(code: &str, prefix: &str) -> Result<Self, LinkError> {
        let body = code.trim().strip_prefix(prefix).ok_or(LinkError::BadCode)?;
        let json = Zeroizing::new(B64URL.decode(body).map_err(|_| LinkError::BadCode)?);
        let code: LinkCode = serde_json::from_slice(&json).map_err(|_| LinkError::BadCode)?;
        if code.secret.len() != 32 {
            return Err(LinkError::BadCode);
        }
        Ok(code)
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct JoinMessage {
    pub(crate) card: IdentityCard,
    #[serde(with = "b64")]
    pub(crate) mac: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct AcceptMessage {
    pub(crate) wrapped: WrappedKey,
    #[serde(with = "b64")]
    pub(crate) mac: Vec<u8>,
}

impl RelayClient {
    /// Authenticate as `identity` (challenge, signature, token).
    pub async fn authenticate(&mut self, signer: &impl Signer) -> Result<(), LinkError> {
        let challenge = self
            .request::<wire::Challenge>(
                &(),
                &(),
                Some(&ChallengeRequest {
                    identity: signer.signer_id(),
                }),
            )
            .await?;
        let signed = TokenRequest::sign(signer, &challenge.challenge);
        let token = self.request::<wire::Token>(&(), &(), Some(&signed)).await?;
        self.set_token(Some(token.token));
        Ok(())
    }
}

/// Existing device, step 1: create the link on the relay and return the
/// code to show. (Syncs first, so the relay knows the record.)
pub async fn offer<S: Store>(
    client: &mut RelayClient,
    profile: &mut Profile<S>,
) -> Result<LinkCode, LinkError> {
    open_mailbox(client, profile, 600).await
}

/// Sync (so the relay knows the record), then open a new mailbox for the
/// record on the relay, open for `expires_in` seconds, and return its code
/// (device links and invites alike).
pub(crate) async fn open_mailbox<S: Store>(
    client: &mut RelayClient,
    profile: &mut Profile<S>,
    expires_in: u64,
) -> Result<LinkCode, LinkError> {
    client.sync(profile).await?;
    let code = LinkCode::new(client.base(), profile.record_id())?;
    client
        .request::<wire::CreateLink>(
            &LinkPath(code.link()?),
            &(),
            Some(&CreateLinkRequest {
                record_id: profile.record_id(),
                expires_in: Some(expires_in),
            }),
        )
        .await?;
    Ok(code)
}

/// Authenticate as `identity` and answer the link (or invite) `code` with
/// its card, MACed with the code's secret.
pub(crate) async fn post_join(
    client: &mut RelayClient,
    identity: &Identity,
    code: &LinkCode,
) -> Result<(), LinkError> {
    client.authenticate(identity).await?;
    let card = identity.card().clone();
    let mac = hmac::sign(&code.mac_key()?, &card.to_bytes());
    let join = JoinMessage {
        card,
        mac: mac.as_ref().to_vec(),
    };
    let payload = to_json(&join)?;
    client
        .request::<wire::JoinLink>(&LinkPath(code.link()?), &(), Some(&LinkPayload { payload }))
        .await?;
    Ok(())
}

pub(crate) async fn poll_link(
    client: &RelayClient,
    code: &LinkCode,
    timeout: Duration,
    pick: fn(LinkState) -> Option<Vec<u8>>,
) -> Result<Vec<u8>, LinkError> {
    let deadline = Instant::now() + timeout;
    loop {
        let state: LinkState = client
            .request::<wire::GetLink>(&LinkPath(code.link()?), &(), None)
            .await?;
        if let Some(payload) = pick(state) {
            return Ok(payload);
        }
        if Instant::now() >= deadline {
            return Err(LinkError::TimedOut);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Existing device, step 2: wait for the new device, check its proof, add
/// it to the record and send it the keys. Returns the new device's card.
/// ([`await_device`] then [`admit_device`]; apps that must not hold the
/// profile while waiting call the two themselves.)
pub async fn complete<S: Store>(
    client: &mut RelayClient,
    profile: &mut Profile<S>,
    code: &LinkCode,
    timeout: Duration,
) -> Result<IdentityCard, LinkError> {
    let card = await_device(client, code, timeout).await?;
    admit_device(client, profile, code, &card).await?;
    Ok(card)
}

/// Wait up to `timeout` for the new device to answer `code`; its card,
/// once its proof of the code's secret and its self-signature check out.
/// Touches no profile.
pub async fn await_device(
    client: &RelayClient,
    code: &LinkCode,
    timeout: Duration,
) -> Result<IdentityCard, LinkError> {
    let payload = poll_link(client, code, timeout, |s| s.join).await?;
    let join: JoinMessage = serde_json::from_slice(&payload).map_err(|_| LinkError::BadProof)?;
    let card_bytes = join.card.to_bytes();
    hmac::verify(&code.mac_key()?, &card_bytes, &join.mac).map_err(|_| LinkError::BadProof)?;
    join.card.verify().map_err(|_| LinkError::BadProof)?;
    Ok(join.card)
}

/// Add the device `card` (from [`await_device`]) to the record: its
/// add-device statement to the access log, then the record's keys wrapped
/// to it through the link.
pub async fn admit_device<S: Store>(
    client: &mut RelayClient,
    profile: &mut Profile<S>,
    code: &LinkCode,
    card: &IdentityCard,
) -> Result<(), LinkError> {
    let statement: SignedStatement = profile.add_device_statement(card)?;
    client
        .request::<wire::AppendStatement>(&RecordPath(profile.record_id()), &(), Some(&statement))
        .await?;
    let bundle = profile.device_bundle();
    let aad = format!("satchel/v1/device-bundle|{}", code.link_id()?);
    let bundle_bytes = bundle.to_bytes().map_err(LinkError::Profile)?;
    let wrapped =
        wrap_key(card, &bundle_bytes, aad.as_bytes()).map_err(|e| LinkError::Profile(e.into()))?;
    let wrapped_json = to_json(&wrapped)?;
    let mac = hmac::sign(&code.mac_key()?, &wrapped_json);
    let accept = AcceptMessage {
        wrapped,
        mac: mac.as_ref().to_vec(),
    };
    let payload = to_json(&accept)?;
    client
        .request::<wire::AcceptLink>(&LinkPath(code.link()?), &(), Some(&LinkPayload { payload }))
        .await?;
    // Pull the new statement into our own verified access log.
    client.sync(profile).await?;
    Ok(())
}

/// New device: prove knowledge of the code, wait for the keys, and return
/// the bundle to create the local profile from (then sync to fetch the record).
pub async fn join(
    client: &mut RelayClient,
    identity: &Identity,
    code: &LinkCode,
    timeout: Duration,
) -> Result<DeviceBundle, LinkError> {
    post_join(client, identity, code).await?;
    let payload = poll_link(client, code, timeout, |s| s.accept).await?;
    let accept: AcceptMessage =
        serde_json::from_slice(&payload).map_err(|_| LinkError::BadProof)?;
    let wrapped_json = to_json(&accept.wrapped)?;
    hmac::verify(&code.mac_key()?, &wrapped_json, &accept.mac).map_err(|_| LinkError::BadProof)?;
    let aad = format!("satchel/v1/device-bundle|{}", code.link_id()?);
    let bytes =
        unwrap_key(identity, &accept.wrapped, aad.as_bytes()).map_err(|_| LinkError::BadProof)?;
    let bundle = DeviceBundle::from_bytes(&bytes)?;
    if bundle.record_id != code.record_id {
        return Err(LinkError::BadProof);
    }
    Ok(bundle)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn code_round_trip_and_ids() {
        let code = LinkCode::new("http://127.0.0.1:1", RecordId::random()).unwrap();
        let text = code.encode().unwrap();
        assert!(text.starts_with(CODE_PREFIX));
        let parsed = LinkCode::parse(&text).unwrap();
        assert_eq!(parsed.link_id().unwrap(), code.link_id().unwrap());
        assert_eq!(parsed.record_id, code.record_id);
        assert_eq!(code.link_id().unwrap().len(), 32);
        assert!(LinkCode::parse("satchel-link:!!").is_err());
        assert!(LinkCode::parse("hello").is_err());
        // Debug shows no secret.
        assert!(!format!("{code:?}").contains(&B64URL.encode(&code.secret)));
    }
}
