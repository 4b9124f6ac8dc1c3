//! The dashboard in a real browser: headless Chromium from Debian, driven
//! through chromedriver's W3C WebDriver API (JSON over HTTP, spoken here
//! with reqwest), against a real three-node cluster. Screenshots of every
//! page go to `$CARGO_TARGET_DIR/dashboard-screenshots/` for a human.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::*;

/// The key WebDriver names an element by.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
    shots: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    async fn start() -> Browser {
        let port = synod_testkit::free_port().unwrap();
        let driver = Command::new(std::env::var("SYNOD_TEST_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into()))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (make test installs chromium-driver)");
        let http = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = async { http.get(format!("{url}/status")).send().await.ok()?.json::<Value>().await.ok() };
            if ready.await.is_some_and(|v| v["value"]["ready"] == true) {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not come up on {port}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": std::env::var("SYNOD_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"]
        }}}});
        let v: Value = http.post(format!("{url}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let session = v["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")).to_owned();
        let dir = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| std::env::temp_dir());
        let shots = dir.join("dashboard-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Browser { driver, base: format!("{url}/session/{session}"), http, shots }
    }

    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let mut rb = self.http.request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let v: Value = rb.send().await.unwrap().json().await.unwrap();
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url }))).await;
    }

    /// The first element `css` selects, waited for (10 s).
    async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let v = self.cmd("POST", "/element", Some(json!({"using": "css selector", "value": css}))).await;
            if let Some(id) = v[ELEMENT].as_str() {
                return id.to_owned();
            }
            assert!(Instant::now() < deadline, "no element {css}: {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn count(&self, css: &str) -> usize {
        let v = self.cmd("POST", "/elements", Some(json!({"using": "css selector", "value": css}))).await;
        v.as_array().map_or(0, Vec::len)
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.cmd("POST", &format!("/element/{id}/clear"), Some(json!({}))).await;
        self.cmd("POST", &format!("/element/{id}/value"), Some(json!({ "text": text }))).await;
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({}))).await;
    }

    async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.cmd("GET", &format!("/element/{id}/text"), None).await.as_str().unwrap_or("").to_owned()
    }

    /// Runs `script` in the page (its `return` value back).
    async fn run(&self, script: &str) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({"script": script, "args": []}))).await
    }

    /// Polls until `css`'s text satisfies `ok` (20 s).
    async fn wait_text(&self, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let t = self.text(css).await;
            if ok(&t) {
                return t;
            }
            assert!(Instant::now() < deadline, "{css} never showed {what}: {t:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Polls until nothing matches `css` (20 s).
    async fn wait_gone(&self, css: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.count(css).await != 0 {
            assert!(Instant::now() < deadline, "still listed: {what}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn screenshot(&self, name: &str) {
        use base64::Engine;
        let v = self.cmd("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or("")).unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    async fn accept_confirm(&self) {
        // window.confirm answered yes for the next question.
        self.run("window.confirm = () => true; return true;").await;
    }

    async fn quit(&self) {
        self.cmd("DELETE", "", None).await;
    }
}

async fn login(b: &Browser, url: &str, user: &str, password: &str) {
    b.goto(&format!("{url}/dashboard/")).await;
    b.type_into("#login input[name=username]", user).await;
    b.type_into("#login input[name=password]", password).await;
    b.click("#login button[type=submit]").await;
    b.find("#nav:not([hidden])").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_in_a_real_browser() {
    let t = must_three(&["--set".to_string(), "observability.history_interval=500ms".to_string()]).await;
    let url = t.nodes[1].url();
    // Security headers on every dashboard file.
    let r = reqwest::get(format!("{url}/dashboard/")).await.unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline") && csp.contains("frame-ancestors 'none'")
    );
    assert_eq!(r.headers()["x-frame-options"], "DENY");

    let b = Browser::start().await;
    // A wrong password is refused on the page.
    b.goto(&format!("{url}/dashboard/")).await;
    b.type_into("#login input[name=username]", "admin").await;
    b.type_into("#login input[name=password]", "not-the-password").await;
    b.click("#login button[type=submit]").await;
    b.wait_text("#login-error", "an error", |s| s.contains("wrong user name or password")).await;

    login(&b, &url, "admin", &t.admin_password).await;
    // Overview: three nodes and a leader.
    b.wait_text("#leader", "a leader", |s| s.parse::<u64>().is_ok()).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.count("#cluster tr[data-node]").await != 3 {
        assert!(Instant::now() < deadline, "the overview never showed 3 nodes");
        b.run("location.hash = '#/nodes'; location.hash = '#/overview'; return 1;").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    b.screenshot("overview").await;

    // A task submitted from the form reaches succeeded; its payload, with
    // markup in it, is shown as text.
    let xss = r#"<script>window.pwned=1</script>"><img src=x onerror="window.pwned=2">"#;
    b.goto(&format!("{url}/dashboard/#/tasks")).await;
    b.find("#submit select[name=type] option[value=echo]").await;
    b.run("document.querySelector('#submit select[name=type]').value = 'echo'; return 1;").await;
    b.type_into("#submit textarea[name=payload]", &json!({ "note": xss }).to_string()).await;
    b.click("#submit button[type=submit]").await;
    b.wait_text("#task-state", "succeeded", |s| s == "succeeded").await;
    let payload = b.text("#task-payload").await;
    // As text (JSON-quoted), not as elements.
    assert!(
        payload.contains("<script>window.pwned=1</script>") && payload.contains("<img src=x onerror="),
        "the payload shows as text: {payload}"
    );
    assert_eq!(
        b.run("return window.pwned === undefined && document.querySelectorAll('#task img').length === 0;").await,
        true
    );
    // Its attempt drawn on the timeline, ended well.
    b.find("#attempts-timeline rect.ok").await;
    b.screenshot("task").await;

    // A bad payload is refused before anything is sent.
    b.goto(&format!("{url}/dashboard/#/tasks")).await;
    b.type_into("#submit textarea[name=payload]", "{not json").await;
    b.click("#submit button[type=submit]").await;
    b.wait_text("#submit-error", "a JSON error", |s| s.contains("not JSON")).await;

    // A long task is cancelled.
    let (code, v) = call(
        &t,
        0,
        "POST",
        "/tasks/submit",
        &Auth::Bearer(&t.admin_token),
        Some(json!({"type": "sleep", "payload": {"ms": 60000}})),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    b.goto(&format!("{url}/dashboard/#/task/{id}")).await;
    b.accept_confirm().await;
    b.click("#cancel").await;
    b.wait_text("#task-state", "cancelled", |s| s == "cancelled").await;

    // Drain a node and see it marked.
    b.goto(&format!("{url}/dashboard/#/nodes")).await;
    b.accept_confirm().await;
    b.click("tr[data-node='3'] button[data-action=drain]").await;
    b.wait_text("tr[data-node='3'] .draining", "draining", |s| s == "draining").await;
    b.screenshot("nodes").await;

    // Plugins: load the example WASM plugin from a file, then unload it.
    let wat = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples/wasm/greet.wat");
    b.goto(&format!("{url}/dashboard/#/plugins")).await;
    b.find("#load-plugin").await;
    let shown = "return [document.getElementById('plugin-module').offsetParent !== null, \
                 document.getElementById('plugin-command').offsetParent !== null];";
    assert_eq!(b.run(shown).await, json!([true, false]), "a WASM load asks for a file, not a command");
    b.type_into("#load-plugin input[name=name]", "greet").await;
    b.type_into("#load-plugin input[name=version]", "1.0.0").await;
    let file = b.find("#load-plugin input[name=module]").await;
    b.cmd("POST", &format!("/element/{file}/value"), Some(json!({ "text": wat.canonicalize().unwrap() }))).await;
    b.click("#load-plugin button[type=submit]").await;
    b.find("tr[data-plugin=greet] button[data-action=unload]").await;
    let (code, v) = call(&t, 0, "GET", "/plugins/greet", &Auth::Bearer(&t.admin_token), None).await;
    assert_eq!((code, v["version"].as_str()), (200, Some("1.0.0")), "{v}");
    b.screenshot("plugins").await;
    b.accept_confirm().await;
    b.click("tr[data-plugin=greet] button[data-action=unload]").await;
    b.wait_gone("tr[data-plugin=greet]", "greet after its unload").await;

    // Collections: points and the index's segments and tombstones.
    let admin = Auth::Bearer(&t.admin_token);
    let (code, v) = call(&t, 0, "POST", "/collections", &admin, Some(json!({"name": "docs", "dimension": 2}))).await;
    assert_eq!(code, 200, "{v}");
    let points: Vec<Value> = (0..10).map(|i| json!({"id": i, "vector": [1.0, i as f32]})).collect();
    let (code, v) = call(&t, 0, "POST", "/collections/docs/points", &admin, Some(json!({ "points": points }))).await;
    assert_eq!(code, 200, "{v}");
    b.goto(&format!("{url}/dashboard/#/collections")).await;
    let tombstones = b.text("tr[data-collection=docs] .tombstones").await;
    assert!(tombstones.parse::<u64>().is_ok(), "tombstones shown as a number: {tombstones:?}");
    b.screenshot("collections").await;

    // Tenants, users and API keys.
    b.goto(&format!("{url}/dashboard/#/access")).await;
    b.type_into("#create-tenant input[name=name]", "acme").await;
    b.click("#create-tenant button[type=submit]").await;
    b.find("tr[data-tenant=acme]").await;
    b.find("#create-user select[name=tenant] option[value=acme]").await;
    b.type_into("#create-user input[name=username]", "ursula").await;
    b.type_into("#create-user input[name=password]", "password-1").await;
    b.run("document.querySelector('#create-user select[name=tenant]').value = 'acme'; return 1;").await;
    b.click("#create-user button[type=submit]").await;
    b.wait_text("tr[data-user=ursula]", "ursula in acme", |s| s.contains("acme") && s.contains("user")).await;
    b.type_into("#create-key input[name=name]", "ci").await;
    b.click("#create-key button[type=submit]").await;
    let shown = b.wait_text("#new-key", "the new key", |s| s.contains("sk_")).await;
    let secret = shown.rsplit(' ').next().unwrap().to_owned();
    assert_eq!(tasks_with_key(&t, &secret).await, 200, "the key shown works");
    b.screenshot("access").await;
    b.accept_confirm().await;
    b.click("tr[data-user=ursula] button[data-action=delete]").await;
    b.wait_gone("tr[data-user=ursula]", "ursula after her deletion").await;
    b.accept_confirm().await;
    b.click("tr[data-key] button[data-action=revoke]").await;
    b.wait_text("tr[data-key]", "revoked", |s| s.contains("revoked")).await;
    assert_eq!(tasks_with_key(&t, &secret).await, 401, "the revoked key is refused");

    // Audit: what was just done, newest first.
    b.goto(&format!("{url}/dashboard/#/audit")).await;
    b.wait_text("#audit", "the user deletion", |s| s.contains("user_deleted") && s.contains("tenant_created")).await;
    b.screenshot("audit").await;

    // A reader's session has no management controls.
    let reader = json!({"username": "rita", "password": "password-1", "tenant": "default", "role": "reader"});
    let (code, v) = call(&t, 0, "POST", "/users", &Auth::Bearer(&t.admin_token), Some(reader)).await;
    assert_eq!(code, 200, "{v}");
    b.click("#logout").await;
    b.find("#login").await;
    login(&b, &url, "rita", "password-1").await;
    b.goto(&format!("{url}/dashboard/#/nodes")).await;
    b.find("tr[data-node='1']").await;
    assert_eq!(b.count("button[data-action]").await, 0, "a reader sees no drain or other button");
    b.goto(&format!("{url}/dashboard/#/tasks")).await;
    b.find("#task-filter").await;
    assert_eq!(b.count("#submit").await, 0, "a reader sees no submit form");
    assert_eq!(b.run("return document.getElementById('nav-audit').hidden;").await, true, "no audit page");
    b.goto(&format!("{url}/dashboard/#/plugins")).await;
    b.find(".card h2").await;
    assert_eq!(b.count("#load-plugin").await, 0, "a reader sees no load form");
    // Control: the admin's page had them (checked above by clicking drain).
    b.screenshot("reader-nodes").await;
    b.quit().await;
}

/// `GET /tasks` with an API key: the status code.
async fn tasks_with_key(t: &TestCluster, key: &str) -> u16 {
    call(t, 1, "GET", "/tasks", &Auth::Key(key), None).await.0
}
