//! SMART Health Links hosted blind (HL7 "SMART Health Cards and Links" IG,
//! STU1, links specification; docs/sharing-links.md).
//!
//! Two sides:
//! - the patient's devices (owner devices and live managers, with a bearer
//!   token) create a link under its [`ShareLinkHandle`], replace its files
//!   (live links), revoke it and list it with who opened it;
//! - anyone holding the link (no token: the link is the capability) asks
//!   for the manifest at `POST /shl/{shl_id}`, follows `location` URLs at
//!   `GET /shl/{shl_id}/files/{token}`, or, for a `U` link, fetches its one
//!   file with `GET /shl/{shl_id}?recipient=...`.
//!
//! The relay stores the files as the devices made them (JWE compact,
//! `alg: dir`, `enc: A256GCM`), the passcode only as an Argon2id hash, and
//! never the link's id or key: it knows a link by the SHA-256 of its id
//! ([`ShareLinkId::handle`]) and hashes the id of every manifest URL it is
//! asked for.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{Endpoint, Method, PathArgs, QueryArgs, RecordPath};
use crate::ids::{RecordId, ShareLinkHandle};

/// Domain separation of [`ShareLinkId::handle`].
const HANDLE_DOMAIN: &[u8] = b"satchel share link handle v1";

/// The most files one link may carry.
pub const MAX_SHARE_LINK_FILES: usize = 16;
/// The largest file (JWE compact text, bytes) a relay stores for a link.
pub const MAX_SHARE_LINK_FILE_BYTES: usize = 8 * 1024 * 1024;
/// The longest recipient name a relay accepts (characters).
pub const MAX_RECIPIENT_CHARS: usize = 200;
/// The longest passcode a relay accepts (characters).
pub const MAX_PASSCODE_CHARS: usize = 128;
/// Wrong passcodes a link survives when its creator names no budget.
pub const DEFAULT_PASSCODE_ATTEMPTS: u32 = 10;
/// The largest passcode budget a creator may ask for.
pub const MAX_PASSCODE_ATTEMPTS: u32 = 100;
/// How long a `location` URL of a manifest answer works (ms): the
/// specification asks for at most one hour.
pub const LOCATION_LIFETIME_MS: i64 = 15 * 60 * 1000;
/// The content type of a link's files (and of `location` answers).
pub const JOSE_CONTENT_TYPE: &str = "application/jose";

/// A link's secret id: 32 random bytes (256 bits of entropy), written as
/// 43 characters of unpadded base64url as the last segment of the manifest
/// URL. Whoever holds it can ask for the (encrypted) files, so it is
/// redacted in `Debug` and never stored by the relay.
#[derive(Clone, PartialEq, Eq)]
pub struct ShareLinkId([u8; 32]);

impl ShareLinkId {
    /// Length of the text form.
    pub const TEXT_LEN: usize = 43;

    /// A fresh random id.
    pub fn random() -> crate::crypto::Result<Self> {
        crate::crypto::random::array().map(Self)
    }

    /// Parse the text form: exactly 43 characters of unpadded base64url
    /// that encode 32 bytes canonically. `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != Self::TEXT_LEN {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        let id = <[u8; 32]>::try_from(bytes.as_slice()).ok().map(Self)?;
        // One spelling per id: the last character's unused bits must be zero.
        (id.to_text() == text).then_some(id)
    }

    /// The text form (43 characters, base64url, no padding).
    pub fn to_text(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The name the relay knows the link by: SHA-256 over a domain tag and
    /// the id. The one derivation, for devices and relays.
    pub fn handle(&self) -> ShareLinkHandle {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(HANDLE_DOMAIN);
        ctx.update(&self.0);
        let digest = ctx.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        ShareLinkHandle(out)
    }
}

impl fmt::Debug for ShareLinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShareLinkId(..)")
    }
}

/// A passcode as sent to the relay (which hashes it with Argon2id and
/// keeps only the hash). Redacted in `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Passcode(pub String);

impl fmt::Debug for Passcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passcode(..)")
    }
}

/// One file of a link, as the device made it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShareLinkFile {
    /// What the file decrypts to: `application/fhir+json`,
    /// `application/smart-health-card` or `application/smart-api-access`.
    pub content_type: String,
    /// The encrypted file: JWE compact serialization (`alg: dir`,
    /// `enc: A256GCM`); the relay checks its shape only.
    pub jwe: String,
}

impl fmt::Debug for ShareLinkFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ShareLinkFile({}, {} bytes)",
            self.content_type,
            self.jwe.len()
        )
    }
}

/// The content types a link's file may have (the specification's list).
pub const SHARE_LINK_CONTENT_TYPES: &[&str] = &[
    "application/fhir+json",
    "application/smart-health-card",
    "application/smart-api-access",
];

/// Create a link (owner devices and live managers of the record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateShareLinkRequest {
    /// Unix ms after which the link answers 404; absent: until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    /// The passcode (flag `P`), hashed by the relay; absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub passcode: Option<Passcode>,
    /// Wrong passcodes the link survives over its whole life (default
    /// [`DEFAULT_PASSCODE_ATTEMPTS`], at most [`MAX_PASSCODE_ATTEMPTS`]);
    /// only with a passcode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Successful opens after which the link dies (`--once`: 1); absent:
    /// no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_opens: Option<u32>,
    /// Flag `U`: one file, fetched directly with `GET`; never with a
    /// passcode.
    #[serde(default)]
    pub direct: bool,
    /// The files (1 to [`MAX_SHARE_LINK_FILES`]; exactly 1 when `direct`).
    pub files: Vec<ShareLinkFile>,
}

/// A link was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShareLinkCreated {
    /// The link's handle.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub handle: ShareLinkHandle,
    /// Unix ms, relay clock.
    pub created_at_ms: i64,
}

/// New files for a live link (flag `L`): they replace the old ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplaceShareLinkFilesRequest {
    /// The files (same rules as at creation).
    pub files: Vec<ShareLinkFile>,
}

/// When something about a link changed (relay clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShareLinkChanged {
    /// Unix ms.
    pub at_ms: i64,
}

/// How a recipient reached a link's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ShareLinkOpenKind {
    /// A manifest request that was answered with the files.
    Manifest,
    /// A `U` link's direct `GET`.
    Direct,
    /// A manifest request with a wrong passcode (nothing was served).
    WrongPasscode,
}

/// One request for a link's files, as its owner reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShareLinkOpen {
    /// Unix ms, relay clock.
    pub at_ms: i64,
    /// The name the recipient gave (the specification's `recipient`;
    /// self-declared, unverified).
    pub recipient: String,
    /// What happened.
    pub kind: ShareLinkOpenKind,
}

/// One link of a record, as its owners read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShareLinkStatus {
    /// The link's handle.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub handle: ShareLinkHandle,
    /// Unix ms.
    pub created_at_ms: i64,
    /// Unix ms of the last file replacement (creation if none).
    pub updated_at_ms: i64,
    /// Unix ms; absent: until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    /// Unix ms it was revoked, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<i64>,
    /// Whether it has a passcode.
    pub passcode: bool,
    /// Wrong passcodes it still survives (with a passcode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_attempts: Option<u32>,
    /// Successful opens left (with `max_opens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_opens: Option<u32>,
    /// Flag `U`.
    pub direct: bool,
    /// Every request for its files, oldest first.
    pub opens: Vec<ShareLinkOpen>,
}

/// A record's links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShareLinksResponse {
    /// Every link ever created for the record, oldest first (revoked and
    /// expired ones too, until the relay's retention removes them).
    pub links: Vec<ShareLinkStatus>,
}

/// A manifest request (the specification's body; its field names).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ManifestRequest {
    /// Who is asking (a person's or a system's name, shown to the patient).
    pub recipient: String,
    /// The passcode, when the link has flag `P`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub passcode: Option<Passcode>,
    /// Files up to this many bytes come `embedded`, larger ones by
    /// `location`; absent: the relay chooses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded_length_max: Option<u64>,
}

impl fmt::Debug for ManifestRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManifestRequest")
            .field("recipient", &"<redacted>")
            .field("passcode", &self.passcode.as_ref().map(|_| "<redacted>"))
            .field("embedded_length_max", &self.embedded_length_max)
            .finish()
    }
}

/// One file of a manifest answer: `embedded` or `location`, never both.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ManifestFile {
    /// What the file decrypts to.
    pub content_type: String,
    /// The JWE compact text itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded: Option<String>,
    /// A short-lived URL that answers the JWE (`application/jose`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl fmt::Debug for ManifestFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManifestFile")
            .field("content_type", &self.content_type)
            .field("embedded", &self.embedded.as_ref().map(String::len))
            .field("location", &self.location.is_some())
            .finish()
    }
}

/// The manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ManifestResponse {
    /// The link's files.
    pub files: Vec<ManifestFile>,
}

/// `?recipient=NAME`: a `U` link's direct fetch.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct RecipientQuery {
    /// Who is asking (shown to the patient).
    pub recipient: String,
}

impl fmt::Debug for RecipientQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecipientQuery(..)")
    }
}

impl QueryArgs for RecipientQuery {
    fn query_string(&self) -> Option<String> {
        let encoded: String =
            url::form_urlencoded::byte_serialize(self.recipient.as_bytes()).collect();
        Some(format!("recipient={encoded}"))
    }
}

/// `{rid}` and `{handle}`: one link of a record, as its owners name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareLinkPath {
    pub record: RecordId,
    pub handle: ShareLinkHandle,
}

impl PathArgs for ShareLinkPath {
    const NAMES: &'static [&'static str] = &["rid", "handle"];
    fn render(&self, template: &str) -> String {
        template
            .replace("{rid}", &self.record.to_hex())
            .replace("{handle}", &self.handle.to_hex())
    }
}

/// `{shl_id}`: a link as its holders name it (the secret id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShlPath<'a>(pub &'a ShareLinkId);

impl PathArgs for ShlPath<'_> {
    const NAMES: &'static [&'static str] = &["shl_id"];
    fn render(&self, template: &str) -> String {
        template.replace("{shl_id}", &self.0.to_text())
    }
}

/// `{shl_id}` and `{token}`: one file of a manifest answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShlFilePath<'a> {
    pub id: &'a ShareLinkId,
    /// The token the manifest answer named (opaque to clients).
    pub token: &'a str,
}

impl PathArgs for ShlFilePath<'_> {
    const NAMES: &'static [&'static str] = &["shl_id", "token"];
    fn render(&self, template: &str) -> String {
        template
            .replace("{shl_id}", &self.id.to_text())
            .replace("{token}", self.token)
    }
}

/// `PUT /v1/records/{rid}/share-links/{handle}`
pub struct CreateShareLink;

impl Endpoint for CreateShareLink {
    const METHOD: Method = Method::Put;
    const PATH: &'static str = "/v1/records/{rid}/share-links/{handle}";
    const SUMMARY: &'static str =
        "Host a SMART Health Link's encrypted files (owner devices and live managers)";
    const DESCRIPTION: &'static str = "The handle is the SHA-256 of the link's secret id \
        (docs/protocol.md \"Share links\"); the relay never learns the id or the key. A passcode \
        is stored as an Argon2id hash only.";
    const TAG: &'static str = "share-links";
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (201, "created"),
        (
            403,
            "the caller is not an owner device or a live manager of the record",
        ),
        (404, "no such record"),
        (409, "handle in use"),
        (413, "too many files, or a file too large"),
        (
            422,
            "not a valid link: no files, a file that is not JWE compact, an unknown content \
             type, a direct link with a passcode or more than one file, an expiry in the past",
        ),
    ];
    type Path<'a> = ShareLinkPath;
    type Query = ();
    type Request = CreateShareLinkRequest;
    type Response = ShareLinkCreated;
}

/// `PUT /v1/records/{rid}/share-links/{handle}/files`
pub struct ReplaceShareLinkFiles;

impl Endpoint for ReplaceShareLinkFiles {
    const METHOD: Method = Method::Put;
    const PATH: &'static str = "/v1/records/{rid}/share-links/{handle}/files";
    const SUMMARY: &'static str = "Replace a live link's files (owner devices and live managers)";
    const TAG: &'static str = "share-links";
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (200, "replaced"),
        (
            403,
            "the caller is not an owner device or a live manager of the record",
        ),
        (404, "no such link (or revoked, expired, used up)"),
        (413, "too many files, or a file too large"),
        (422, "not valid files (as at creation)"),
    ];
    type Path<'a> = ShareLinkPath;
    type Query = ();
    type Request = ReplaceShareLinkFilesRequest;
    type Response = ShareLinkChanged;
}

/// `POST /v1/records/{rid}/share-links/{handle}/revoke`
pub struct RevokeShareLink;

impl Endpoint for RevokeShareLink {
    const METHOD: Method = Method::Post;
    const PATH: &'static str = "/v1/records/{rid}/share-links/{handle}/revoke";
    const SUMMARY: &'static str =
        "Revoke a link: its files are deleted and it answers 404 from now on";
    const TAG: &'static str = "share-links";
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (200, "revoked (or it already was)"),
        (
            403,
            "the caller is not an owner device or a live manager of the record",
        ),
        (404, "no such link"),
    ];
    type Path<'a> = ShareLinkPath;
    type Query = ();
    type Request = ();
    type Response = ShareLinkChanged;
}

/// `GET /v1/records/{rid}/share-links`
pub struct ListShareLinks;

impl Endpoint for ListShareLinks {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = "/v1/records/{rid}/share-links";
    const SUMMARY: &'static str = "A record's links and every request for their files";
    const TAG: &'static str = "share-links";
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (200, "the links"),
        (
            403,
            "the caller is not an owner device or a live manager of the record",
        ),
        (404, "no such record"),
    ];
    type Path<'a> = RecordPath;
    type Query = ();
    type Request = ();
    type Response = ShareLinksResponse;
}

/// `POST /shl/{shl_id}`
pub struct Manifest;

impl Endpoint for Manifest {
    const METHOD: Method = Method::Post;
    const PATH: &'static str = "/shl/{shl_id}";
    const SUMMARY: &'static str = "A SMART Health Link's manifest (anyone holding the link)";
    const DESCRIPTION: &'static str = "Files up to embeddedLengthMax bytes come embedded, larger \
        ones as a location that works for 15 minutes. Every request is recorded for the \
        patient with the recipient's name. CORS: any origin.";
    const TAG: &'static str = "share-links";
    const AUTHENTICATED: bool = false;
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (200, "the manifest"),
        (
            400,
            "not a manifest request (recipient missing or too long)",
        ),
        (
            401,
            "wrong or missing passcode; the error body's remainingAttempts says how many \
             wrong passcodes the link still survives",
        ),
        (
            404,
            "no such link, or revoked, expired, used up or out of passcode attempts",
        ),
        (429, "too many requests"),
    ];
    type Path<'a> = ShlPath<'a>;
    type Query = ();
    type Request = ManifestRequest;
    type Response = ManifestResponse;
}

/// `GET /shl/{shl_id}?recipient=NAME`
pub struct DirectFile;

impl Endpoint for DirectFile {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = "/shl/{shl_id}";
    const SUMMARY: &'static str = "A U link's one file, directly (application/jose)";
    const TAG: &'static str = "share-links";
    const AUTHENTICATED: bool = false;
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (200, "the JWE (application/jose)"),
        (400, "recipient missing or too long"),
        (
            404,
            "no such link, not a U link, or revoked, expired or used up",
        ),
        (429, "too many requests"),
    ];
    type Path<'a> = ShlPath<'a>;
    type Query = RecipientQuery;
    type Request = ();
    type Response = ();
}

/// `GET /shl/{shl_id}/files/{token}`
pub struct FileAtLocation;

impl Endpoint for FileAtLocation {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = "/shl/{shl_id}/files/{token}";
    const SUMMARY: &'static str = "A file a manifest answer named by location (application/jose)";
    const TAG: &'static str = "share-links";
    const AUTHENTICATED: bool = false;
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (200, "the JWE (application/jose)"),
        (
            404,
            "no such file, the location expired, or the link was revoked",
        ),
        (429, "too many requests"),
    ];
    type Path<'a> = ShlFilePath<'a>;
    type Query = ();
    type Request = ();
    type Response = ();
}

/// `GET /view`: the share-link viewer page (static; the link stays in the
/// URL fragment, which browsers never send).
pub struct ViewerPage;

impl Endpoint for ViewerPage {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = "/view";
    const SUMMARY: &'static str = "The share-link viewer (HTML)";
    const TAG: &'static str = "share-links";
    const AUTHENTICATED: bool = false;
    const RESPONSES: &'static [(u16, &'static str)] = &[(200, "the page")];
    type Path<'a> = ();
    type Query = ();
    type Request = ();
    type Response = ();
}

/// `GET /view/viewer.js`
pub struct ViewerScript;

impl Endpoint for ViewerScript {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = "/view/viewer.js";
    const SUMMARY: &'static str = "The viewer's script";
    const TAG: &'static str = "share-links";
    const AUTHENTICATED: bool = false;
    const RESPONSES: &'static [(u16, &'static str)] = &[(200, "the script")];
    type Path<'a> = ();
    type Query = ();
    type Request = ();
    type Response = ();
}

/// `GET /view/viewer.css`
pub struct ViewerStyle;

impl Endpoint for ViewerStyle {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = "/view/viewer.css";
    const SUMMARY: &'static str = "The viewer's style sheet";
    const TAG: &'static str = "share-links";
    const AUTHENTICATED: bool = false;
    const RESPONSES: &'static [(u16, &'static str)] = &[(200, "the style sheet")];
    type Path<'a> = ();
    type Query = ();
    type Request = ();
    type Response = ();
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn share_link_ids_have_one_spelling() {
        let id = ShareLinkId::random().unwrap();
        let text = id.to_text();
        assert_eq!(text.len(), 43);
        assert_eq!(ShareLinkId::parse(&text), Some(id.clone()));
        assert!(ShareLinkId::parse(&text[..42]).is_none());
        assert!(ShareLinkId::parse(&format!("{text}=")).is_none());
        // 43 characters carry 258 bits: the last two must be zero.
        let zero = "A".repeat(43);
        assert!(ShareLinkId::parse(&zero).is_some());
        assert!(ShareLinkId::parse(&format!("{}B", &zero[..42])).is_none());
        // Standard base64's alphabet is not base64url's.
        assert!(ShareLinkId::parse(&format!("{}+", &zero[..42])).is_none());
        assert_eq!(format!("{id:?}"), "ShareLinkId(..)");
    }

    #[test]
    fn the_handle_is_a_domain_separated_hash_of_the_id() {
        let id = ShareLinkId([7; 32]);
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"satchel share link handle v1");
        ctx.update(&[7; 32]);
        assert_eq!(id.handle().0.as_slice(), ctx.finish().as_ref());
        assert_ne!(id.handle(), ShareLinkId([8; 32]).handle());
    }

    #[test]
    fn manifest_bodies_use_the_specification_names() {
        let req: ManifestRequest = serde_json::from_str(
            r#"{"recipient":"Dr A","passcode":"1234","embeddedLengthMax":100}"#,
        )
        .unwrap();
        assert_eq!(req.embedded_length_max, Some(100));
        assert_eq!(req.passcode, Some(Passcode("1234".into())));
        let bare: ManifestRequest = serde_json::from_str(r#"{"recipient":"Dr A"}"#).unwrap();
        assert_eq!(bare.embedded_length_max, None);
        let answer = ManifestResponse {
            files: vec![ManifestFile {
                content_type: "application/fhir+json".into(),
                embedded: None,
                location: Some("https://r/shl/x/files/t".into()),
            }],
        };
        assert_eq!(
            serde_json::to_string(&answer).unwrap(),
            r#"{"files":[{"contentType":"application/fhir+json","location":"https://r/shl/x/files/t"}]}"#
        );
        let wrong = super::super::ErrorBody {
            remaining_attempts: Some(3),
            ..super::super::ErrorBody::new("unauthenticated", "wrong passcode")
        };
        assert!(serde_json::to_string(&wrong)
            .unwrap()
            .ends_with(r#","remainingAttempts":3}"#));
        assert!(!format!("{req:?}").contains("1234"));
        assert!(!format!("{req:?}").contains("Dr A"));
    }

    #[test]
    fn paths_are_built_from_typed_ids() {
        let id = ShareLinkId([0; 32]);
        assert_eq!(
            Manifest::path(&ShlPath(&id)),
            "/shl/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        );
        assert_eq!(
            DirectFile::uri(
                &ShlPath(&id),
                &RecipientQuery {
                    recipient: "Dr A & co".into()
                }
            ),
            "/shl/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA?recipient=Dr+A+%26+co"
        );
        let rid: RecordId = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff".parse().unwrap();
        let path = RevokeShareLink::path(&ShareLinkPath {
            record: rid,
            handle: id.handle(),
        });
        assert!(path.starts_with("/v1/records/f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff/share-links/"));
        assert!(path.ends_with("/revoke"));
    }
}
