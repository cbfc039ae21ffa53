//! `GET /metadata`: the CapabilityStatement, saying what the gateway
//! supports and nothing more.

use serde_json::{json, Value};

/// Resource types a record keeps (the sections' mapping, docs/sections.md).
pub const KEPT_TYPES: [&str; 16] = [
    "AllergyIntolerance",
    "Condition",
    "DiagnosticReport",
    "DocumentReference",
    "Encounter",
    "Immunization",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationRequest",
    "MedicationStatement",
    "Observation",
    "Patient",
    "Procedure",
    "CarePlan",
    "Goal",
    "RelatedPerson",
];

/// The CapabilityStatement of a gateway at `base` whose token endpoint is
/// `token_url`.
pub fn capability_statement(base: &str, token_url: &str, software_version: &str) -> Value {
    let resources: Vec<Value> = KEPT_TYPES
        .iter()
        .map(|t| {
            let mut interactions = vec![json!({"code": "read"}), json!({"code": "search-type"})];
            if *t != "Patient" {
                interactions.push(json!({"code": "create"}));
                interactions.push(json!({"code": "update"}));
            }
            let mut params = vec![
                json!({"name": "patient", "type": "reference", "documentation": "Patient/<id>; required"}),
                json!({"name": "date", "type": "date"}),
                json!({"name": "code", "type": "token"}),
                json!({"name": "category", "type": "token"}),
            ];
            let mut r = json!({
                "type": t,
                "interaction": interactions,
                "versioning": "versioned",
                "readHistory": false,
                "updateCreate": true,
                "conditionalCreate": false,
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
            });
            if *t == "Patient" {
                params = vec![json!({"name": "identifier", "type": "token", "documentation": "system|value; required"})];
                r["operation"] = json!([{
                    "name": "summary",
                    "definition": "http://hl7.org/fhir/uv/ips/OperationDefinition/summary"
                }]);
            }
            r["searchParam"] = Value::Array(params);
            r
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-07",
        "kind": "instance",
        "software": {"name": "Satchel provider gateway", "version": software_version},
        "implementation": {"description": "FHIR R4 endpoint in front of the records patients shared with this provider", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Writes are routed to the record of the patient they are about (by patient identifier) and committed before the answer; reads come from the provider's synced copy of records shared with it for reading.",
            "security": {
                "cors": false,
                "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}]}],
                "description": "SMART Backend Services: client credentials with a signed JWT assertion (RS384, ES384); scopes system/<type>.read and system/<type>.write",
                "extension": [{
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [{"url": "token", "valueUri": token_url}]
                }]
            },
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}],
        }]
    })
}
