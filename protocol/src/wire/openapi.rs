//! The relay's OpenAPI 3.1 document, generated from the wire types (utoipa,
//! feature `openapi`): every [`Endpoint`] contributes its method, path,
//! summary, description, tag, path and query parameters, request body,
//! responses and whether it takes a bearer token; the body schemas come
//! from the types' `ToSchema` derives (their doc comments are the
//! descriptions). The relay serves it at `GET /v1/openapi.json` and a test
//! checks it against the relay's route table.

use std::borrow::Cow;

use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, Parameter, ParameterBuilder, ParameterIn,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Paths, Ref, RefOr,
    Required, ResponseBuilder, Schema,
};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::*;
use crate::ids::{IdentityId, LinkId, RecordId};

/// The document.
pub fn document() -> OpenApi {
    let mut doc = Doc::default();
    doc.json::<ErrorBody>();
    doc.add::<Challenge>(
        doc_body::<ChallengeRequest>(),
        json::<ChallengeResponse>(),
        vec![],
    );
    doc.add::<Token>(doc_body::<TokenRequest>(), json::<TokenResponse>(), vec![]);
    doc.add::<RevokeSessions>(
        doc_body::<RevokeSessionsRequest>(),
        json::<RevokeSessionsResponse>(),
        vec![],
    );
    doc.add::<Register>(
        doc_body::<RegisterRequest>(),
        json::<RegisterResponse>(),
        vec![],
    );
    doc.add::<AppendStatement>(
        doc_body::<SignedStatementSchema>(),
        json::<SeqResponse>(),
        vec![],
    );
    doc.add::<Statements>(None, json::<AccessResponse>(), query::<AfterQuery>());
    doc.add::<Members>(None, json::<MembersResponse>(), vec![]);
    doc.add::<Upload>(
        doc_body::<UploadRequest>(),
        json::<UploadResponse>(),
        vec![],
    );
    doc.add::<Pull>(None, json::<PullResponse>(), query::<PageQuery>());
    doc.add::<Snapshot>(
        doc_body::<SnapshotRequest>(),
        json::<SnapshotResponse>(),
        vec![],
    );
    doc.add::<Feed>(None, json::<FeedResponse>(), query::<AfterQuery>());
    doc.add::<Audit>(None, json::<AuditResponse>(), query::<PageQuery>());
    doc.add::<ReportViews>(
        doc_body::<ReportViewsRequest>(),
        json::<ReportViewsResponse>(),
        vec![],
    );
    doc.add::<Subscribe>(None, Success::Nothing, query::<TokenQuery>());
    doc.add::<CreateLink>(
        doc_body::<CreateLinkRequest>(),
        json::<LinkCreated>(),
        vec![],
    );
    doc.add::<GetLink>(None, json::<LinkState>(), vec![]);
    doc.add::<JoinLink>(doc_body::<LinkPayload>(), json::<LinkAck>(), vec![]);
    doc.add::<AcceptLink>(doc_body::<LinkPayload>(), json::<LinkAck>(), vec![]);
    doc.add::<Health>(None, json::<HealthResponse>(), vec![]);
    doc.add::<RelayIdentity>(None, json::<RelayIdentityResponse>(), vec![]);
    doc.add::<ReplicaRecords>(
        None,
        json::<ReplicaRecordsResponse>(),
        query::<RecordsPageQuery>(),
    );
    doc.add::<ReplicaHeads>(None, json::<ReplicaHeadsResponse>(), query::<HeadsQuery>());
    doc.add::<ReplicaPull>(doc_body::<ReplicaPullRequest>(), Success::Nothing, vec![]);
    doc.add::<ForwardAudit>(
        doc_body::<ForwardAuditRequest>(),
        json::<ForwardAuditResponse>(),
        vec![],
    );
    doc.add::<share_links::ListShareLinks>(None, json::<share_links::ShareLinksResponse>(), vec![]);
    doc.add::<share_links::CreateShareLink>(
        doc_body::<share_links::CreateShareLinkRequest>(),
        json::<share_links::ShareLinkCreated>(),
        vec![],
    );
    doc.add::<share_links::ReplaceShareLinkFiles>(
        doc_body::<share_links::ReplaceShareLinkFilesRequest>(),
        json::<share_links::ShareLinkChanged>(),
        vec![],
    );
    doc.add::<share_links::RevokeShareLink>(None, json::<share_links::ShareLinkChanged>(), vec![]);
    doc.add::<share_links::Manifest>(
        doc_body::<share_links::ManifestRequest>(),
        json::<share_links::ManifestResponse>(),
        vec![],
    );
    // application/jose and HTML/script/style answers: not JSON, not described.
    doc.add::<share_links::DirectFile>(
        None,
        Success::Nothing,
        query::<share_links::RecipientQuery>(),
    );
    doc.add::<share_links::FileAtLocation>(None, Success::Nothing, vec![]);
    doc.add::<share_links::ViewerPage>(None, Success::Nothing, vec![]);
    doc.add::<share_links::ViewerScript>(None, Success::Nothing, vec![]);
    doc.add::<share_links::ViewerStyle>(None, Success::Nothing, vec![]);
    doc.add::<Ready>(None, json::<ReadyResponse>(), vec![]);
    doc.add::<OpenApiDocument>(None, Success::Nothing, vec![]);
    doc.add::<Metrics>(None, Success::Nothing, vec![]);
    doc.build()
}

/// What a success carries.
enum Success {
    /// A JSON body of this schema (a component).
    Json(Registered),
    /// Nothing described (an upgrade, text, this document).
    Nothing,
}

/// A component schema: its name, schema and the schemas it refers to.
struct Registered {
    name: Cow<'static, str>,
    schemas: Vec<(String, RefOr<Schema>)>,
}

impl Registered {
    fn of<T: ToSchema>() -> Self {
        let mut schemas = vec![(T::name().into_owned(), T::schema())];
        T::schemas(&mut schemas);
        Self {
            name: T::name(),
            schemas,
        }
    }

    fn reference(&self) -> RefOr<Schema> {
        RefOr::Ref(Ref::from_schema_name(self.name.clone()))
    }
}

fn json<T: ToSchema>() -> Success {
    Success::Json(Registered::of::<T>())
}

fn doc_body<T: ToSchema>() -> Option<Registered> {
    Some(Registered::of::<T>())
}

fn query<Q: IntoParams>() -> Vec<Parameter> {
    Q::into_params(|| Some(ParameterIn::Query))
}

#[derive(Default)]
struct Doc {
    paths: Paths,
    schemas: Vec<(String, RefOr<Schema>)>,
}

impl Doc {
    fn json<T: ToSchema>(&mut self) -> RefOr<Schema> {
        let r = Registered::of::<T>();
        let reference = r.reference();
        self.schemas.extend(r.schemas);
        reference
    }

    fn add<E: Endpoint>(
        &mut self,
        request: Option<Registered>,
        success: Success,
        query: Vec<Parameter>,
    ) {
        let error = self.json::<ErrorBody>();
        let mut op = OperationBuilder::new()
            .summary(Some(E::SUMMARY))
            .description((!E::DESCRIPTION.is_empty()).then_some(E::DESCRIPTION))
            .tag(E::TAG);
        for name in <E::Path<'_> as PathArgs>::NAMES {
            op = op.parameter(path_parameter(name));
        }
        for q in query {
            op = op.parameter(q);
        }
        if let Some(body) = request {
            let schema = body.reference();
            self.schemas.extend(body.schemas);
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .required(Some(Required::True))
                    .content(
                        "application/json",
                        ContentBuilder::new().schema(Some(schema)).build(),
                    )
                    .build(),
            ));
        }
        if E::AUTHENTICATED {
            op = op.security(SecurityRequirement::new("bearer", Vec::<String>::new()));
        }
        let success = match success {
            Success::Json(r) => {
                let schema = r.reference();
                self.schemas.extend(r.schemas);
                Some(schema)
            }
            Success::Nothing => None,
        };
        let mut statuses: Vec<(u16, &str)> = E::RESPONSES.to_vec();
        if E::AUTHENTICATED {
            for common in [
                (401, "unauthenticated"),
                (429, "rate_limited (retry_after_ms)"),
                (503, "unavailable"),
                (400, "bad_request"),
            ] {
                if !statuses.iter().any(|(s, _)| *s == common.0) {
                    statuses.push(common);
                }
            }
        }
        for (status, description) in statuses {
            // The health and readiness checks answer 503 with their own body.
            let schema = if status < 400 || E::PATH == Health::PATH || E::PATH == Ready::PATH {
                success.clone()
            } else {
                Some(error.clone())
            };
            let mut response = ResponseBuilder::new().description(description);
            if let Some(schema) = schema {
                response = response.content(
                    "application/json",
                    ContentBuilder::new().schema(Some(schema)).build(),
                );
            }
            op = op.response(status.to_string(), response.build());
        }
        let method = match E::METHOD {
            Method::Get => HttpMethod::Get,
            Method::Post => HttpMethod::Post,
            Method::Put => HttpMethod::Put,
        };
        self.paths
            .add_path_operation(E::PATH, vec![method], op.build());
    }

    fn build(self) -> OpenApi {
        let components = ComponentsBuilder::new()
            .schemas_from_iter(self.schemas)
            .security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            )
            .build();
        OpenApiBuilder::new()
            .info(
                InfoBuilder::new()
                    .title("Satchel relay")
                    .version("1")
                    .description(Some(
                        "Blind relay for Satchel: stores signed, encrypted envelopes and decrypts nothing. See docs/protocol.md.",
                    ))
                    .build(),
            )
            .paths(self.paths)
            .components(Some(components))
            .build()
    }
}

fn path_parameter(name: &str) -> Parameter {
    let (schema, description) = match name {
        "rid" => (hex_string(32, None), "record id"),
        "link_id" => (hex_string(32, None), "link id"),
        "handle" => (
            hex_string(64, None),
            "share link handle (SHA-256 of the link's id)",
        ),
        "shl_id" => (
            base64url_string(43),
            "share link id (32 bytes, unpadded base64url)",
        ),
        "token" => (
            base64url_string(43),
            "location token (from a manifest answer)",
        ),
        _ => (
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(crate::crypto::envelope::MAX_SECTION_LEN))
                .build(),
            "section name",
        ),
    };
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

fn hex_string(chars: usize, description: Option<&str>) -> utoipa::openapi::schema::Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^[0-9a-f]{{{chars}}}$")))
        .description(description)
        .build()
}

fn base64url_string(chars: usize) -> utoipa::openapi::schema::Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^[A-Za-z0-9_-]{{{chars}}}$")))
        .build()
}

fn base64_string(description: &str) -> utoipa::openapi::schema::Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Byte)))
        .description(Some(description))
        .build()
}

impl PartialSchema for RecordId {
    fn schema() -> RefOr<Schema> {
        hex_string(
            2 * RecordId::LEN,
            Some("record id (128 bits, lower-case hex)"),
        )
        .into()
    }
}
impl ToSchema for RecordId {}

impl PartialSchema for IdentityId {
    fn schema() -> RefOr<Schema> {
        hex_string(
            2 * IdentityId::LEN,
            Some("identity id (Ed25519 public key, lower-case hex)"),
        )
        .into()
    }
}
impl ToSchema for IdentityId {}

impl PartialSchema for LinkId {
    fn schema() -> RefOr<Schema> {
        hex_string(2 * LinkId::LEN, Some("link id (128 bits, lower-case hex)")).into()
    }
}
impl ToSchema for LinkId {}

impl PartialSchema for Base64Text {
    fn schema() -> RefOr<Schema> {
        base64_string("standard base64 with padding").into()
    }
}
impl ToSchema for Base64Text {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Base64")
    }
}

/// `satchel_protocol::sharing::SignedStatement` (JSON form): one signed
/// access statement.
#[derive(ToSchema)]
#[schema(as = StatementRequest)]
#[allow(dead_code)]
pub struct SignedStatementSchema {
    /// The statement's canonical JSON bytes (standard base64).
    #[schema(value_type = String, format = Byte)]
    statement: Vec<u8>,
    /// Ed25519 signature of the statement bytes by its signer (`by`)
    /// (standard base64).
    #[schema(value_type = String, format = Byte)]
    signature: Vec<u8>,
}

/// The roles an identity card names.
#[derive(ToSchema)]
#[serde(rename_all = "kebab-case")]
#[allow(dead_code)]
enum CardRole {
    PatientDevice,
    Carer,
    Provider,
    Manager,
    WearableBridge,
}

/// `satchel_protocol::crypto::IdentityCard` (JSON form): an identity's
/// public keys and name, self-signed.
#[derive(ToSchema)]
#[schema(as = IdentityCard)]
#[allow(dead_code)]
pub struct IdentityCardSchema {
    /// Card format version.
    version: u8,
    /// Identity id (Ed25519 public key, hex).
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    signing_key: String,
    /// X25519 key-agreement public key (hex).
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    agreement_key: String,
    /// The name shown to people.
    display_name: String,
    /// What the identity is.
    role: CardRole,
    /// The organisation, for providers.
    organisation: Option<String>,
    /// Signature of the card by its own key (base64url).
    self_signature: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_resolves_and_every_route_is_there() {
        let text = document().to_pretty_json().unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        for piece in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
            let name = &piece[..piece.find('"').unwrap()];
            assert!(doc["components"]["schemas"][name].is_object(), "{name}");
        }
        let upload = &doc["paths"][Upload::PATH]["post"];
        assert_eq!(upload["security"][0]["bearer"], serde_json::json!([]));
        assert!(upload["responses"]["422"].is_object());
        assert!(upload["responses"]["401"].is_object());
    }
}
