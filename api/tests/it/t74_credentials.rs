//! The life of a credential: a user's tokens and API keys die with the
//! user (and never pass to a user created again under the name), a new
//! password revokes the keys, the first admin is created once per cluster,
//! a ready node can log that admin in, and failed logins are counted by the
//! whole cluster.

use serde_json::{Value, json};

use crate::util::*;

async fn login(t: &TestCluster, i: usize, user: &str, password: &str) -> (u16, Value) {
    call(t, i, "POST", "/login", &Auth::None, Some(json!({"username": user, "password": password}))).await
}

async fn must_login(t: &TestCluster, user: &str, password: &str) -> String {
    let (code, v) = login(t, 0, user, password).await;
    assert_eq!(code, 200, "login {user}: {v}");
    v["access_token"].as_str().unwrap().to_string()
}

async fn must_create_user(t: &TestCluster, name: &str, role: &str) {
    let admin = Auth::Bearer(&t.admin_token);
    let body = json!({"username": name, "password": "password-1", "tenant": "acme", "role": role});
    let (code, v) = call(t, 0, "POST", "/users", &admin, Some(body)).await;
    assert_eq!(code, 200, "{v}");
}

async fn must_key(t: &TestCluster, token: &str) -> String {
    let (code, k) = call(t, 0, "POST", "/apikeys", &Auth::Bearer(token), Some(json!({"name": "ci"}))).await;
    assert_eq!(code, 200, "{k}");
    k["key"].as_str().unwrap().to_string()
}

async fn tasks_with(t: &TestCluster, auth: &Auth<'_>) -> u16 {
    call(t, 0, "GET", "/tasks?limit=1", auth, None).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_created_again_under_a_deleted_name_gets_nothing_of_the_old_one() {
    let t = must_single(&[]).await;
    let admin = Auth::Bearer(&t.admin_token);
    must_create_user(&t, "carl", "user").await;
    let old_token = must_login(&t, "carl", "password-1").await;
    let old_key = must_key(&t, &old_token).await;
    // Control: both work while carl exists.
    assert_eq!(tasks_with(&t, &Auth::Bearer(&old_token)).await, 200);
    assert_eq!(tasks_with(&t, &Auth::Key(&old_key)).await, 200);

    let (code, v) = call(&t, 0, "DELETE", "/users/carl", &admin, None).await;
    assert_eq!(code, 200, "{v}");
    // Deleting the user revoked the key for all to see.
    let admin_acme = reqwest::Client::new()
        .get(format!("{}/apikeys", t.nodes[0].url()))
        .bearer_auth(&t.admin_token)
        .header("x-synod-tenant", "acme")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let listed = admin_acme["keys"].as_array().unwrap();
    assert!(listed.iter().all(|k| k["revoked_at_ms"].as_u64().is_some()), "{admin_acme}");

    // The same name, the same password, the same tenant and role.
    must_create_user(&t, "carl", "user").await;
    assert_eq!(tasks_with(&t, &Auth::Bearer(&old_token)).await, 401, "the old carl's token");
    assert_eq!(tasks_with(&t, &Auth::Key(&old_key)).await, 401, "the old carl's API key");
    // Control: the new carl logs in and works.
    let new_token = must_login(&t, "carl", "password-1").await;
    assert_eq!(tasks_with(&t, &Auth::Bearer(&new_token)).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_password_revokes_the_users_api_keys_and_a_role_change_does_not() {
    let t = must_single(&[]).await;
    let admin = Auth::Bearer(&t.admin_token);
    must_create_user(&t, "dora", "user").await;
    let token = must_login(&t, "dora", "password-1").await;
    let key = must_key(&t, &token).await;
    assert_eq!(tasks_with(&t, &Auth::Key(&key)).await, 200);

    let (code, v) = call(&t, 0, "PUT", "/users/dora", &admin, Some(json!({"role": "reader"}))).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(tasks_with(&t, &Auth::Key(&key)).await, 200, "a role change keeps the key (capped at the role)");

    let (code, v) = call(&t, 0, "PUT", "/users/dora", &admin, Some(json!({"password": "password-2"}))).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(tasks_with(&t, &Auth::Key(&key)).await, 401, "a new password revokes the keys");

    // A reader mints no keys at all, over REST and gRPC alike.
    let reader = must_login(&t, "dora", "password-2").await;
    let (code, v) = call(&t, 0, "POST", "/apikeys", &Auth::Bearer(&reader), Some(json!({}))).await;
    assert_eq!(code, 403, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_first_admin_stays_deleted_across_a_restart() {
    let mut t = must_single(&[]).await;
    let admin = Auth::Bearer(&t.admin_token);
    let body = json!({"username": "root", "password": "password-1", "tenant": "default", "role": "admin"});
    let (code, v) = call(&t, 0, "POST", "/users", &admin, Some(body)).await;
    assert_eq!(code, 200, "{v}");
    let root = must_login(&t, "root", "password-1").await;
    let (code, v) = call(&t, 0, "DELETE", "/users/admin", &Auth::Bearer(&root), None).await;
    assert_eq!(code, 200, "{v}");

    t.stop(0).unwrap();
    t.start(0).unwrap();
    t.wait_for("node 0 ready again", READY, || async {
        matches!(t.get(0, "/health/ready").await, Ok((200, _))).then_some(())
    })
    .await
    .unwrap();
    // The node tried to create the first admin again at start (it always
    // does) and was refused: no admin, and its password opens nothing.
    let (code, v) = login(&t, 0, "admin", &t.admin_password).await;
    assert_eq!(code, 401, "the deleted first admin came back: {v}");
    let (code, users) = call(&t, 0, "GET", "/users", &Auth::Bearer(&root), None).await;
    assert_eq!(code, 200, "{users}");
    let names: Vec<&str> = users["users"].as_array().unwrap().iter().filter_map(|u| u["username"].as_str()).collect();
    assert_eq!(names, ["root"], "{users}");
}

/// A node's first admin password (generated, in `<data-dir>/admin-password`)
/// opens the cluster as soon as the node says it is ready, and its file is
/// removed once the admin changes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_node_logs_the_first_admin_in_and_retires_the_password_file_once_changed() {
    let mut t = must_new();
    t.c.admin_password.clear(); // the node generates one
    t.add_node(None, &[]).unwrap();
    t.wait_for("node 0 ready", READY, || async {
        matches!(t.get(0, "/health/ready").await, Ok((200, _))).then_some(())
    })
    .await
    .unwrap();
    let file = t.nodes[0].data_dir.join("admin-password");
    let password = std::fs::read_to_string(&file).expect("the generated password is written down");
    // At once: ready means the admin exists on this node.
    let token = must_login(&t, "admin", &password).await;

    let body = json!({"password": "a-password-of-my-own"});
    let (code, v) = call(&t, 0, "PUT", "/users/admin", &Auth::Bearer(&token), Some(body)).await;
    assert_eq!(code, 200, "{v}");
    t.wait_for("the password file to go", READY, || async { (!file.exists()).then_some(()) }).await.unwrap();
    assert_eq!(login(&t, 0, "admin", &password).await.0, 401);
    must_login(&t, "admin", "a-password-of-my-own").await;
}

/// Failed logins of a user are counted by the cluster: three on one node
/// lock the user out on another, right password or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_of_a_user_are_limited_across_nodes() {
    let args: Vec<String> = ["--set".into(), "security.login_rate_per_minute=3".into()].to_vec();
    let t = must_three(&args).await;
    must_create_user(&t, "eve", "user").await;
    for _ in 0..3 {
        assert_eq!(login(&t, 0, "eve", "wrong-password").await.0, 401);
    }
    // Each failure is committed before its 401, and a login reads the user
    // after a read barrier: at once, one login on node 1 with the right
    // password is refused.
    let r = reqwest::Client::new()
        .post(format!("{}/login", t.nodes[1].url()))
        .json(&json!({"username": "eve", "password": "password-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let wait: u64 = r.headers().get("retry-after").expect("Retry-After").to_str().unwrap().parse().unwrap();
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("failed logins for eve"), "{v}");
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    // Control: another user on the same node is not limited, and (the
    // same barrier) logs in there as soon as node 0 has created it.
    must_create_user(&t, "fay", "user").await;
    assert_eq!(login(&t, 1, "fay", "password-1").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_capped_by_api_key_max_ttl() {
    let t = must_single(&["--set".into(), "security.api_key_max_ttl=1h".into()]).await;
    let admin = Auth::Bearer(&t.admin_token);
    let (code, k) = call(&t, 0, "POST", "/apikeys", &admin, Some(json!({"name": "forever?"}))).await;
    assert_eq!(code, 200, "{k}");
    let life = k["expires_at_ms"].as_u64().expect("capped") - k["created_at_ms"].as_u64().unwrap();
    assert_eq!(life, 3_600_000, "{k}");
    let (code, v) = call(&t, 0, "POST", "/apikeys", &admin, Some(json!({"expires_in": 7200}))).await;
    assert_eq!(code, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("api_key_max_ttl"), "{v}");
    let (code, k) = call(&t, 0, "POST", "/apikeys", &admin, Some(json!({"expires_in": 60}))).await;
    assert_eq!(code, 200, "{k}");
}

/// Audit events have their own log layer: a node logging errors only still
/// writes them, for label writes, cancels, deletes and refused requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_events_are_written_whatever_the_log_level() {
    let t = must_single(&["--set".into(), "observability.log_level=error".into()]).await;
    let admin = Auth::Bearer(&t.admin_token);
    let id = t.node_id(0).await.unwrap();
    let (code, v) = t.put_labels(0, id, &json!({"zone": "a"}), None).await.unwrap();
    assert_eq!(code, 200, "{v}");
    let (code, v) =
        call(&t, 0, "POST", "/tasks/submit", &admin, Some(json!({"type": "sleep", "payload": {"ms": 60000}}))).await;
    assert_eq!(code, 200, "{v}");
    let task = v["id"].as_str().unwrap().to_string();
    let (code, v) = call(&t, 0, "POST", &format!("/tasks/{task}/cancel"), &admin, None).await;
    assert_eq!(code, 200, "{v}");
    must_create_user(&t, "gil", "reader").await;
    let gil = must_login(&t, "gil", "password-1").await;
    let (code, _) =
        call(&t, 0, "POST", "/collections", &Auth::Bearer(&gil), Some(json!({"name": "c", "dimension": 2}))).await;
    assert_eq!(code, 403);
    assert_eq!(call(&t, 0, "GET", "/tasks", &Auth::Bearer("not-a-token"), None).await.0, 401);
    assert_eq!(tasks_with(&t, &Auth::Key("sk_nope_nope")).await, 401);

    let events = ["node_labels_set", "task_cancelled", "permission_denied", "unauthenticated", "apikey_refused"];
    t.wait_for("every audit event in the log", READY, || async {
        let log = t.log_text(0);
        events.iter().all(|e| log.contains(&format!("\"{e}\""))).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {}", t.log_text(0)));
    // Control: the level did apply to everything else.
    assert!(!t.log_text(0).contains("synod is serving"), "an info line of another target was written");
    for e in events {
        let counted = metric(&t, 0, &format!("synod_audit_events_total{{event=\"{e}\"}}")).await;
        assert!(counted >= 1.0, "{e} counted {counted}");
    }

    // The same events, newest first, from the node's ring: over REST, gRPC
    // and the CLI alike; an admin's only.
    let (code, v) = call(&t, 0, "GET", "/audit?limit=1000", &admin, None).await;
    assert_eq!(code, 200, "{v}");
    let listed: Vec<&str> = v["events"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    for e in events {
        assert!(listed.contains(&e), "{e} not in GET /audit: {listed:?}");
    }
    let seqs: Vec<u64> = v["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "newest first: {seqs:?}");
    let (code, newer) = call(&t, 0, "GET", &format!("/audit?after={}", seqs[1]), &admin, None).await;
    assert_eq!(code, 200, "{newer}");
    assert_eq!(newer["events"].as_array().unwrap().len(), 1, "only what came after: {newer}");
    assert_eq!(call(&t, 0, "GET", "/audit?limit=0", &admin, None).await.0, 400);
    assert_eq!(call(&t, 0, "GET", "/audit?limit=1001", &admin, None).await.0, 400);
    assert_eq!(call(&t, 0, "GET", "/audit", &Auth::Bearer(&gil), None).await.0, 403, "a reader reads no audit");
    let mut identity = synod_api::pb::identity_client::IdentityClient::new(must_channel(&t, 0).await);
    let mut req = tonic::Request::new(synod_api::pb::AuditRequest { after: 0, limit: 0 });
    req.metadata_mut().insert("authorization", format!("Bearer {}", t.admin_token).parse().unwrap());
    let reply = identity.audit(req).await.unwrap().into_inner();
    assert_eq!(reply.capacity, 1000);
    assert!(reply.events.iter().any(|e| e.event == "task_cancelled" && e.who == "admin"), "{reply:?}");
    let out = std::process::Command::new(BIN)
        .args(["audit", "--limit", "5", "--addr", &t.nodes[0].url()])
        .env("SYNOD_TOKEN", &t.admin_token)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["events"].as_array().unwrap().len(), 5, "{cli}");
}

/// The ring keeps `observability.audit_events`, dropping the oldest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_ring_keeps_the_newest_events() {
    let t = must_single(&["--set".into(), "observability.audit_events=3".into()]).await;
    let admin = Auth::Bearer(&t.admin_token);
    for i in 0..6 {
        let (code, v) = call(&t, 0, "POST", "/tenants", &admin, Some(json!({"name": format!("t{i}")}))).await;
        assert_eq!(code, 200, "{v}");
    }
    let (code, v) = call(&t, 0, "GET", "/audit?limit=1000", &admin, None).await;
    assert_eq!(code, 200, "{v}");
    let what: Vec<&str> = v["events"].as_array().unwrap().iter().map(|e| e["what"].as_str().unwrap()).collect();
    assert_eq!(what, ["t5", "t4", "t3"], "{v}");
    assert_eq!(v["capacity"], 3);
}
