//! The provider gateway end to end (issue 17, docs/provider-gateway.md):
//! writes routed to the right patient or refused, SMART Backend Services
//! enforced, reads and the summary validated.
#![allow(clippy::unwrap_used)]

mod gateway_common;

use gateway_common::*;
use satchel_tests::world::*;
use satchel_tests::{run, satchel, validate_fhir};
use serde_json::{json, Value};

#[test]
fn gateway_refuses_wrong_patient_and_unshared_records() {
    let p = practice();
    let t = token(&p.gateway, &p.engine, "system/*.write system/*.read");
    let base = &p.gateway.base;
    let post = |b: &Value| call("POST", &format!("{base}/"), Some(&t), Some(b));

    // A Patient whose identifiers name two different shared records (a
    // merged or mistyped registration): matched to neither, nothing written.
    let mut two = patient("Other", "1980-05-05", "9000000009");
    two["identifier"]
        .as_array_mut()
        .unwrap()
        .push(json!({"system": NHS, "value": "9000000017"}));
    let (status, wrong) = post(&transaction(vec![
        post_entry("urn:uuid:a1", two),
        post_entry(
            "urn:uuid:a2",
            observation("w1", json!({"reference": "urn:uuid:a1"}), "2026-03-04", 7.7),
        ),
    ]));
    assert_eq!(status, 200, "{wrong}");
    assert_eq!(
        statuses(&wrong),
        ["422 Unprocessable Entity", "422 Unprocessable Entity"]
    );
    assert_eq!(
        wrong["entry"][1]["response"]["outcome"]["issue"][0]["code"],
        "multiple-matches"
    );
    // A Patient with a name and birth date but no identifier to match by.
    let (_, anonymous) = post(&transaction(vec![
        post_entry(
            "urn:uuid:n1",
            json!({"resourceType": "Patient", "name": [{"family": "Other"}], "birthDate": "1980-05-05"}),
        ),
        post_entry(
            "urn:uuid:n2",
            observation("w2", json!({"reference": "urn:uuid:n1"}), "2026-03-04", 7.7),
        ),
    ]));
    assert_eq!(
        statuses(&anonymous),
        ["422 Unprocessable Entity", "422 Unprocessable Entity"]
    );
    assert_eq!(
        anonymous["entry"][0]["response"]["outcome"]["issue"][0]["code"],
        "required"
    );
    // No record for this identifier; a record not shared with the practice.
    let (_, unknown) = post(&transaction(vec![post_entry(
        "urn:uuid:b1",
        observation(
            "u1",
            json!({"reference": format!("Patient?identifier={NHS}|9999999999")}),
            "2026-03-04",
            7.7,
        ),
    )]));
    assert_eq!(statuses(&unknown), ["422 Unprocessable Entity"]);
    assert_eq!(
        unknown["entry"][0]["response"]["outcome"]["issue"][0]["code"],
        "not-found"
    );
    let (_, unshared) = post(&transaction(vec![post_entry(
        "urn:uuid:c1",
        observation(
            "s1",
            json!({"identifier": {"system": NHS, "value": "9000000025"}}),
            "2026-03-04",
            7.7,
        ),
    )]));
    assert_eq!(statuses(&unshared), ["422 Unprocessable Entity"]);
    // A resource about nobody.
    let (_, nobody) = post(&transaction(vec![post_entry(
        "urn:uuid:d1",
        json!({"resourceType": "Observation", "status": "final", "code": {"text": CANARY}}),
    )]));
    assert_eq!(statuses(&nobody), ["422 Unprocessable Entity"]);
    // A section this provider may not write (immunizations).
    let (_, section) = post(&transaction(vec![post_entry(
        "urn:uuid:e1",
        json!({"resourceType": "Immunization", "status": "completed", "vaccineCode": {"text": CANARY},
               "patient": {"identifier": {"system": NHS, "value": "9000000009"}}, "occurrenceDateTime": "2026-01-01"}),
    )]));
    assert_eq!(statuses(&section), ["403 Forbidden"]);
    // Messages carry no clinical value, name or identifier.
    for answer in [&wrong, &anonymous, &unknown, &unshared, &nobody, &section] {
        let text = answer.to_string();
        for secret in [
            CANARY,
            "Other",
            "9999999999",
            "9000000025",
            "7.7",
            "1980-05-05",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }

    // The same Bundle shape, right patient: written, and only that.
    let (_, ok) = post(&transaction(vec![
        post_entry(
            "urn:uuid:f1",
            patient("Example", "1970-01-01", "9000000009"),
        ),
        post_entry(
            "urn:uuid:f2",
            observation("g1", json!({"reference": "urn:uuid:f1"}), "2026-03-04", 5.4),
        ),
    ]));
    assert_eq!(statuses(&ok), ["200 OK", "201 Created"], "{ok}");
    let pat = p.w.home("pat");
    // The gateway uploads in the background; the patient's device sees
    // exactly one glucose result, contributed by the practice.
    let mut labs = Vec::new();
    for _ in 0..100 {
        assert!(sync(&pat, &p.w.relay).status.success());
        labs = list(&pat)
            .into_iter()
            .filter(|e| e["section"] == "labs")
            .collect();
        if !labs.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(labs.len(), 1, "{labs:?}");
    // Nothing reached the other patients.
    for home in ["ann", "other"] {
        let h = p.w.home(home);
        assert!(sync(&h, &p.w.relay).status.success());
        assert!(list(&h).iter().all(|e| e["section"] != "labs"), "{home}");
    }
    let _ = &p.gp;
}

#[test]
fn gateway_auth_is_enforced() {
    let p = practice();
    let g = &p.gateway;
    let search = format!("{}/Observation?patient=Patient/0000", g.base);
    // No token; a made-up token.
    assert_eq!(call("GET", &search, None, None).0, 401);
    assert_eq!(call("GET", &search, Some("not-a-token"), None).0, 401);
    // A replayed jti is refused at the token endpoint.
    let a = p.engine.assertion(&g.token_url(), "jti-once", 120);
    assert_eq!(token_call(g, &a, "system/*.read").0, 200);
    let (status, body) = token_call(g, &a, "system/*.read");
    assert!(status == 400 || status == 401, "{status} {body}");
    assert_eq!(body["error"], "invalid_client", "{body}");
    // An expired assertion; one for another audience.
    let (status, _) = token_call(
        g,
        &p.engine.assertion(&g.token_url(), "jti-old", -30),
        "system/*.read",
    );
    assert!(status == 400 || status == 401);
    let (status, _) = token_call(
        g,
        &p.engine
            .assertion("https://elsewhere/token", "jti-aud", 120),
        "system/*.read",
    );
    assert!(status == 400 || status == 401);
    // A key the gateway never registered, claiming the registered client.
    let impostor = Engine {
        id: p.engine.id.clone(),
        ..Engine::new("impostor")
    };
    let impostor = Engine {
        kid: p.engine.kid.clone(),
        ..impostor
    };
    let (status, body) = token_call(
        g,
        &impostor.assertion(&g.token_url(), "jti-imp", 120),
        "system/*.read",
    );
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client");
    // An access token past its lifetime (a gateway whose tokens live 1 s).
    let short = Gateway::start(&p.gp, &p.w.relay.url(), &["--token-lifetime-secs", "1"]);
    let t = token(&short, &p.engine, "system/*.read");
    let patients = format!("{}/Patient?identifier={NHS}|9000000009", short.base);
    assert_eq!(call("GET", &patients, Some(&t), None).0, 200);
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    let (status, body) = call("GET", &patients, Some(&t), None);
    assert_eq!(status, 401, "{body}");
    drop(short);
    // A read scope used for a write.
    let read_only = token(g, &p.engine, "system/*.read");
    let (status, body) = call(
        "POST",
        &format!("{}/", g.base),
        Some(&read_only),
        Some(&transaction(vec![post_entry(
            "urn:uuid:x",
            observation(
                "r1",
                json!({"identifier": {"system": NHS, "value": "9000000009"}}),
                "2026-03-04",
                5.0,
            ),
        )])),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome");
    // The metadata is open, and says how to get a token.
    let (status, cap) = call("GET", &format!("{}/metadata", g.base), None, None);
    assert_eq!(status, 200);
    assert_eq!(cap["resourceType"], "CapabilityStatement");
    assert_eq!(
        cap["rest"][0]["security"]["extension"][0]["extension"][0]["valueUri"],
        g.token_url()
    );
}

#[test]
fn gateway_exports_validate() {
    let p = practice();
    let g = &p.gateway;
    let t = token(g, &p.engine, "system/*.read system/*.write");
    let (_, written) = post_transaction(
        g,
        &t,
        vec![
            post_entry("urn:uuid:p", patient("Example", "1970-01-01", "9000000009")),
            post_entry(
                "urn:uuid:o1",
                observation("v1", json!({"reference": "urn:uuid:p"}), "2026-03-04", 5.4),
            ),
            post_entry(
                "urn:uuid:o2",
                observation("v2", json!({"reference": "urn:uuid:p"}), "2025-01-10", 6.2),
            ),
        ],
    );
    assert_eq!(
        statuses(&written),
        ["200 OK", "201 Created", "201 Created"],
        "{written}"
    );
    // Re-sending is an update of the same entries, never a duplicate.
    let (_, again) = post_transaction(
        g,
        &t,
        vec![
            post_entry("urn:uuid:p", patient("Example", "1970-01-01", "9000000009")),
            post_entry(
                "urn:uuid:o1",
                observation("v1", json!({"reference": "urn:uuid:p"}), "2026-03-04", 5.5),
            ),
        ],
    );
    assert_eq!(statuses(&again), ["200 OK", "200 OK"], "{again}");
    assert!(again["entry"][1]["response"]["location"]
        .as_str()
        .unwrap()
        .ends_with("/_history/2"));

    // Find the patient by identifier, then search and summarise.
    let (status, found) = call(
        "GET",
        &format!("{}/Patient?identifier={NHS}|9000000009", g.base),
        Some(&t),
        None,
    );
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["total"], 1);
    let pid = found["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, page) = call(
        "GET",
        &format!(
            "{}/Observation?patient=Patient/{pid}&code=http://loinc.org|2339-0&date=ge2026-01-01",
            g.base
        ),
        Some(&t),
        None,
    );
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["type"], "searchset");
    assert_eq!(page["total"], 1, "the date bound keeps 2026 only");
    let obs = &page["entry"][0]["resource"];
    assert_eq!(
        obs["valueQuantity"]["value"].as_f64(),
        Some(5.5),
        "the current version"
    );
    assert_eq!(obs["subject"]["reference"], format!("Patient/{pid}"));
    let id = obs["id"].as_str().unwrap();
    let (status, one) = call(
        "GET",
        &format!("{}/Observation/{id}", g.base),
        Some(&t),
        None,
    );
    assert_eq!((status, &one["id"]), (200, &obs["id"]));
    // Paging: one per page, a next link.
    let (_, first) = call(
        "GET",
        &format!("{}/Observation?patient={pid}&_count=1", g.base),
        Some(&t),
        None,
    );
    assert_eq!(first["total"], 2);
    let next = first["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap();
    let (_, second) = call("GET", next["url"].as_str().unwrap(), Some(&t), None);
    assert_eq!(second["entry"].as_array().unwrap().len(), 1);
    assert_ne!(
        second["entry"][0]["resource"]["id"],
        first["entry"][0]["resource"]["id"]
    );
    let (status, ips) = call(
        "GET",
        &format!("{}/Patient/{pid}/$summary", g.base),
        Some(&t),
        None,
    );
    assert_eq!(status, 200, "{ips}");
    assert_eq!(ips["type"], "document");
    assert!(ips.to_string().contains("Penicillin"));
    // Unknown ids and parameters are refused clearly.
    assert_eq!(
        call(
            "GET",
            &format!("{}/Observation/{}", g.base, "0".repeat(64)),
            Some(&t),
            None
        )
        .0,
        404
    );
    assert_eq!(
        call(
            "GET",
            &format!("{}/Observation?patient={pid}&name=x", g.base),
            Some(&t),
            None
        )
        .0,
        400
    );

    validate_fhir(&[ips, page, first, found]);
}

/// The patient's audit trail as `satchel audit --json` prints it.
fn audit_events(p: &Practice, home: &str) -> Vec<Value> {
    let out = run(
        satchel(&p.w.home(home), PASS).args(["audit", "--server", &p.w.relay.url(), "--json"]),
        true,
    );
    let audit: Value = serde_json::from_slice(&out.stdout).unwrap();
    audit["events"].as_array().unwrap().clone()
}

/// Views by the practice, by section: (section, entries shown).
fn practice_views(events: &[Value]) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    for e in events.iter().filter(|e| e["action"] == "view") {
        assert_eq!(e["name"], "Dr Okafor (GP)", "{e}");
        let section = e["section"].as_str().unwrap().to_owned();
        let count = e["count"].as_u64().unwrap();
        match out.iter_mut().find(|(s, _)| *s == section) {
            Some((_, n)) => *n += count,
            None => out.push((section, count)),
        }
    }
    out.sort();
    out
}

#[test]
fn gateway_reads_show_in_the_patients_audit() {
    let p = practice();
    let g = &p.gateway;
    let t = token(g, &p.engine, "system/*.read system/*.write");
    let (_, written) = post_transaction(
        g,
        &t,
        vec![
            post_entry("urn:uuid:p", patient("Example", "1970-01-01", "9000000009")),
            post_entry(
                "urn:uuid:o1",
                observation("v1", json!({"reference": "urn:uuid:p"}), "2026-03-04", 5.4),
            ),
        ],
    );
    assert_eq!(statuses(&written), ["200 OK", "201 Created"], "{written}");
    // Writing is a contribution, not a view.
    assert_eq!(practice_views(&audit_events(&p, "pat")), []);

    let (_, found) = call(
        "GET",
        &format!("{}/Patient?identifier={NHS}|9000000009", g.base),
        Some(&t),
        None,
    );
    let pid = found["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, page) = call(
        "GET",
        &format!("{}/Observation?patient={pid}", g.base),
        Some(&t),
        None,
    );
    assert_eq!((status, &page["total"]), (200, &json!(1)), "{page}");
    let (status, _) = call(
        "GET",
        &format!("{}/Patient/{pid}/$summary", g.base),
        Some(&t),
        None,
    );
    assert_eq!(status, 200);

    // The gateway reports what it showed; the patient's audit lists it
    // as views by the practice: the Patient twice (lookup and summary),
    // the result twice (search and summary), the allergy once (summary).
    let want = vec![
        ("allergies".to_owned(), 1),
        ("demographics".to_owned(), 2),
        ("labs".to_owned(), 2),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let views = loop {
        let views = practice_views(&audit_events(&p, "pat"));
        if views == want || std::time::Instant::now() > deadline {
            break views;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert_eq!(views, want);
    // Nothing of the other patient's record was shown.
    assert_eq!(practice_views(&audit_events(&p, "ann")), []);
    // The table says where: the practice's own copy.
    let table = run(
        satchel(&p.w.home("pat"), PASS).args(["audit", "--server", &p.w.relay.url()]),
        true,
    );
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("their own copy"), "{table}");
}
