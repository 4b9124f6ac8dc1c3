//! `GET /openapi.json` as a user meets it: public, complete against the
//! operation table, and valid OpenAPI 3.1 by an independent validator
//! (PyPI's openapi-spec-validator, which `make test` installs and names in
//! `SYNOD_TEST_OPENAPI_VALIDATOR`); and `/docs`, which renders it with
//! nothing from a CDN.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::util::*;

fn validator() -> String {
    let v = std::env::var("SYNOD_TEST_OPENAPI_VALIDATOR")
        .unwrap_or_else(|_| panic!("SYNOD_TEST_OPENAPI_VALIDATOR is not set: run `make test` (or `make test-deps`)"));
    assert!(Path::new(&v).is_file(), "{v} is missing: run `make test-deps`");
    v
}

/// The validator's verdict on `doc`: Ok, or what it said.
fn validate(doc: &Value, dir: &Path, name: &str) -> Result<(), String> {
    let file = dir.join(name);
    std::fs::write(&file, serde_json::to_vec_pretty(doc).expect("json")).expect("write");
    let out = Command::new(validator()).arg("--schema").arg("3.1").arg(&file).output().expect("run the validator");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() { Ok(()) } else { Err(said) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_public_complete_and_valid() {
    let t = must_single(&[]).await;
    // Without credentials, as a code generator fetches it.
    let resp = t.fresh_http().get(format!("{}/openapi.json", t.nodes[0].url())).send().await.expect("GET");
    assert_eq!(resp.status(), 200);
    let doc: Value = resp.json().await.expect("JSON");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "not 3.1: {}", doc["openapi"]);

    // Every route of the table, with its rule; and no operation that is not served.
    let paths = doc["paths"].as_object().expect("paths");
    for (method, path, access) in synod_api::ops::rest_routes() {
        let op = &paths.get(path).unwrap_or_else(|| panic!("{path} missing"))[method.to_lowercase()];
        assert!(op.is_object(), "{method} {path} missing");
        let rule = format!("{access:?}").to_lowercase();
        assert_eq!(op["x-synod-access"], rule.as_str(), "{method} {path}");
        if access == synod_api::ops::Access::Public {
            assert_eq!(op["security"], serde_json::json!([]), "{method} {path} is public");
        } else {
            assert!(op["responses"]["401"].is_object(), "{method} {path} lists no 401");
        }
    }
    // Errors and examples: the submit route as a sample.
    let submit = &doc["paths"]["/tasks/submit"]["post"];
    assert!(submit["responses"]["504"]["content"]["application/json"]["schema"]["$ref"].is_string());
    assert_eq!(submit["requestBody"]["content"]["application/json"]["example"]["type"], "vectorize");

    let dir = tempfile::tempdir().expect("dir");
    validate(&doc, dir.path(), "openapi.json").unwrap_or_else(|said| panic!("the validator refused it: {said}"));

    // Control: the validator notices a broken document (a response without
    // its required description, a reference to nothing).
    let mut broken = doc.clone();
    broken["paths"]["/tasks/submit"]["post"]["responses"]["200"] = serde_json::json!({"content": {}});
    assert!(validate(&broken, dir.path(), "broken.json").is_err(), "a response without a description passed");
    let mut dangling = doc.clone();
    dangling["paths"]["/health"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] =
        serde_json::json!({"$ref": "#/components/schemas/Nope"});
    assert!(validate(&dangling, dir.path(), "dangling.json").is_err(), "a dangling reference passed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_render_the_document_from_this_origin_only() {
    let t = must_single(&[]).await;
    let http = t.fresh_http();
    let base = t.nodes[0].url();
    let page = http.get(format!("{base}/docs")).send().await.expect("GET /docs");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().expect("ascii").to_string();
    assert!(csp.contains("script-src 'self'") && !csp.contains("http"), "{csp}");
    let html = page.text().await.expect("text");
    assert!(html.contains("/dashboard/docs.js"), "{html}");
    // Everything the page loads is served here: no CDN.
    for src in html.split(['"', '\'']).filter(|s| s.starts_with('/') || s.starts_with("http")) {
        assert!(!src.starts_with("http"), "the page loads {src} from elsewhere");
        let r = http.get(format!("{base}{src}")).send().await.expect("GET");
        assert_eq!(r.status(), 200, "{src}");
    }
    let js = http.get(format!("{base}/dashboard/docs.js")).send().await.expect("GET").text().await.expect("text");
    assert!(js.contains("/openapi.json") && !js.contains("innerHTML"), "docs.js renders the document as text");
}
