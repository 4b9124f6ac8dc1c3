//! Security on real processes: every REST route and gRPC method refuses a
//! caller without credentials, with a bad token, or with too small a role;
//! tenants cannot see each other; logins, API keys and their revocation.

use std::time::Duration;

use serde_json::{Value, json};
use synod_api::auth::{Role, TokenKeys};
use synod_api::ops::{Access, grpc_methods, rest_routes};

use crate::util::*;

/// Sends `method path` with `auth` (a full Authorization value, or none).
async fn call(
    t: &TestCluster,
    i: usize,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), format!("{}{path}", t.nodes[i].url()));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

async fn login(t: &TestCluster, user: &str, password: &str) -> String {
    let (code, v) = call(t, 0, "POST", "/login", None, Some(json!({"username": user, "password": password}))).await;
    assert_eq!(code, 200, "login {user}: {v}");
    format!("Bearer {}", v["access_token"].as_str().unwrap())
}

fn concrete(path: &str) -> String {
    path.replace("{id}", "1").replace("{name}", "nobody")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_and_method_checks_its_caller() {
    let t = must_three(&["--set".into(), "security.login_rate_per_minute=5".into()]).await;
    let leader = must_leader(&t, &[0, 1, 2]).await;

    // Two tenants, a user and a reader in one, a user in the other.
    for (name, tenant, role) in [("uma", "acme", "user"), ("rita", "acme", "reader"), ("bob", "beta", "user")] {
        let (code, v) = call(
            &t,
            leader,
            "POST",
            "/users",
            Some(&format!("Bearer {}", t.admin_token)),
            Some(json!({"username": name, "password": "password-1", "tenant": tenant, "role": role})),
        )
        .await;
        assert_eq!(code, 200, "{v}");
    }
    let uma = login(&t, "uma", "password-1").await;
    let rita = login(&t, "rita", "password-1").await;
    let bob = login(&t, "bob", "password-1").await;

    // Bad tokens of every kind.
    let now = synod_api::service::now_ms() / 1000;
    let keys = TokenKeys::hs256(t.secret.as_bytes(), Duration::from_secs(60));
    let expired = format!("Bearer {}", keys.issue("uma", "acme", Role::Admin, now - 7200).unwrap());
    let other_key = TokenKeys::hs256(b"not the cluster's secret at all!", Duration::from_secs(60));
    let wrong_key = format!("Bearer {}", other_key.issue("uma", "acme", Role::Admin, now).unwrap());
    let good = keys.issue("uma", "acme", Role::User, now).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    claims["role"] = "admin".into();
    let tampered = format!("Bearer {}.{}.{}", parts[0], b64.encode(claims.to_string()), parts[2]);
    let alg_none =
        format!("Bearer {}.{}.", b64.encode(r#"{"alg":"none","typ":"JWT"}"#), b64.encode(claims.to_string()));
    let bad_tokens = [("expired", expired), ("wrong key", wrong_key), ("tampered", tampered), ("alg none", alg_none)];

    // Whatever changes the cluster or identities is for admins only.
    for (method, path, access) in rest_routes() {
        let admin_area = ["/cluster/", "/internal/", "/users", "/tenants"].iter().any(|p| path.starts_with(p));
        if admin_area && method != "GET" {
            assert_eq!(access, Access::Admin, "{method} {path}");
        }
    }
    for (method, path, access) in rest_routes() {
        let path = concrete(path);
        let (code, v) = call(&t, 0, method, &path, None, None).await;
        match access {
            Access::Public | Access::Metrics => assert_ne!(code, 401, "{method} {path} is public: {v}"),
            _ => {
                assert_eq!(code, 401, "{method} {path} without credentials: {v}");
                assert_eq!(v["error"]["code"], "unauthenticated", "{v}");
                for (what, token) in &bad_tokens {
                    let (code, v) = call(&t, 0, method, &path, Some(token), None).await;
                    assert_eq!(code, 401, "{method} {path} with a {what} token: {v}");
                }
            }
        }
        let (code, v) = call(&t, 0, method, &path, Some(&rita), Some(json!({}))).await;
        match access {
            Access::Write | Access::Admin => assert_eq!(code, 403, "{method} {path} as a reader: {v}"),
            _ => assert_ne!(code, 403, "{method} {path} as a reader: {v}"),
        }
        if access == Access::Admin {
            let (code, v) = call(&t, 0, method, &path, Some(&uma), Some(json!({}))).await;
            assert_eq!(code, 403, "{method} {path} as a user: {v}");
        }
    }

    // gRPC: the same rules; every method of the protos is in the table.
    let protos = [
        include_str!("../../proto/synod/v1/cluster.proto"),
        include_str!("../../proto/synod/v1/tasks.proto"),
        include_str!("../../proto/synod/v1/identity.proto"),
        include_str!("../../proto/synod/v1/vectors.proto"),
    ];
    for (service, proto) in ["Cluster", "Tasks", "Identity", "Vectors"].iter().zip(protos) {
        for line in proto.lines().map(str::trim).filter(|l| l.starts_with("rpc ")) {
            let name = line[4..].split('(').next().unwrap().trim();
            let full = format!("{service}.{name}");
            assert!(grpc_methods().any(|(m, _)| m == full), "{full} has no access rule in ops::OPERATIONS");
        }
    }
    let channel = must_channel(&t, 1).await;
    for (method, access) in grpc_methods() {
        let (service, name) = method.split_once('.').unwrap();
        let path = format!("/synod.v1.{service}/{name}");
        for (who, auth) in
            [("nobody", None), ("reader", Some(rita.as_str())), ("expired", Some(bad_tokens[0].1.as_str()))]
        {
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            grpc.ready().await.unwrap();
            let mut req = tonic::Request::new(synod_api::pb::StatusRequest {});
            if let Some(a) = auth {
                req.metadata_mut().insert("authorization", a.parse().unwrap());
            }
            let codec =
                tonic_prost::ProstCodec::<synod_api::pb::StatusRequest, synod_api::pb::StatusRequest>::default();
            let r = grpc.unary(req, path.parse().unwrap(), codec).await;
            let code = r.err().map(|s| s.code());
            match (who, access) {
                (_, Access::Public) => assert_ne!(code, Some(tonic::Code::Unauthenticated), "{method} is public"),
                ("nobody" | "expired", _) => assert_eq!(code, Some(tonic::Code::Unauthenticated), "{method} as {who}"),
                ("reader", Access::Write | Access::Admin) => {
                    assert_eq!(code, Some(tonic::Code::PermissionDenied), "{method} as a reader")
                }
                _ => assert_ne!(code, Some(tonic::Code::PermissionDenied), "{method} as a reader"),
            }
        }
    }

    // The gRPC twins of /login and /apikeys.
    let mut identity = synod_api::pb::identity_client::IdentityClient::new(channel.clone());
    let creds = synod_api::pb::LoginRequest { username: "uma".into(), password: "password-1".into() };
    let token = identity.login(creds).await.unwrap().into_inner().access_token;
    let mut req = tonic::Request::new(synod_api::pb::CreateApiKeyRequest {
        name: "grpc".into(),
        role: String::new(),
        expires_in: 0,
    });
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let created = identity.create_api_key(req).await.unwrap().into_inner();
    assert!(created.key.starts_with("sk_"), "{created:?}");
    assert_eq!((created.tenant.as_str(), created.role.as_str()), ("acme", "user"));

    // Tenants: bob (beta) cannot see uma's (acme) task; the admin only by naming acme.
    let (code, v) =
        call(&t, 0, "POST", "/tasks/submit", Some(&uma), Some(json!({"type": "echo", "payload": {}}))).await;
    assert_eq!(code, 200, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    for (method, path) in [("GET", "status"), ("GET", "result"), ("POST", "cancel")] {
        let (code, v) = call(&t, 1, method, &format!("/tasks/{id}/{path}"), Some(&bob), None).await;
        assert_eq!(code, 404, "bob {path}: {v}");
    }
    let (code, _) = call(&t, 1, "GET", &format!("/tasks/{id}/status"), Some(&rita), None).await;
    assert_eq!(code, 200, "a reader of acme reads acme's task");
    let admin = format!("Bearer {}", t.admin_token);
    let (code, _) = call(&t, 1, "GET", &format!("/tasks/{id}/status"), Some(&admin), None).await;
    assert_eq!(code, 404, "the admin acts in its own tenant unless it names another");
    let r = t
        .http
        .get(format!("{}/tasks/{id}/status", t.nodes[1].url()))
        .header("x-synod-tenant", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "the admin naming acme sees it");
    let r = reqwest::Client::new()
        .get(format!("{}/tasks/{id}/status", t.nodes[1].url()))
        .header("authorization", &bob)
        .header("x-synod-tenant", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403, "a non-admin cannot name another tenant");

    // API keys: shown once, listed without secret, usable, revoked everywhere.
    let (code, k) = call(&t, 0, "POST", "/apikeys", Some(&uma), Some(json!({"name": "ci"}))).await;
    assert_eq!(code, 200, "{k}");
    let key = k["key"].as_str().unwrap().to_string();
    let (_, list) = call(&t, 2, "GET", "/apikeys", Some(&uma), None).await;
    assert!(list["keys"].as_array().unwrap().iter().all(|x| x.get("key").is_none()), "{list}");
    let (code, _) = call(&t, 2, "POST", "/apikeys", Some(&rita), Some(json!({"role": "user"}))).await;
    assert_eq!(code, 403, "a reader cannot mint a user key");
    let with_key = |i: usize| {
        let key = key.clone();
        let url = format!("{}/tasks?limit=1", t.nodes[i].url());
        async move { reqwest::Client::new().get(url).header("x-api-key", key).send().await.unwrap().status().as_u16() }
    };
    for i in 0..3 {
        t.wait_for("the key to reach every node", READY, || async { (with_key(i).await == 200).then_some(()) })
            .await
            .unwrap();
    }
    let (code, v) = call(&t, 1, "DELETE", &format!("/apikeys/{}", k["id"].as_str().unwrap()), Some(&bob), None).await;
    assert_eq!(code, 404, "another tenant cannot revoke it: {v}");
    let (code, v) = call(&t, 1, "DELETE", &format!("/apikeys/{}", k["id"].as_str().unwrap()), Some(&uma), None).await;
    assert_eq!(code, 200, "{v}");
    for i in 0..3 {
        t.wait_for("the revocation to reach every node", Duration::from_secs(2), || async {
            (with_key(i).await == 401).then_some(())
        })
        .await
        .unwrap();
    }

    // An admin turns the reader into a user: her old token is void, her
    // next one may write.
    tokio::time::sleep(Duration::from_millis(1100)).await; // a token's iat has whole seconds
    let (code, v) = call(&t, 0, "PUT", "/users/rita", Some(&admin), Some(json!({"role": "user"}))).await;
    assert_eq!((code, v["role"].as_str()), (200, Some("user")), "{v}");
    let (code, _) = call(&t, 0, "GET", "/tasks", Some(&rita), None).await;
    assert_eq!(code, 401, "a token issued before the role change");
    let rita = login(&t, "rita", "password-1").await;
    let (code, v) =
        call(&t, 0, "POST", "/tasks/submit", Some(&rita), Some(json!({"type": "echo", "payload": {}}))).await;
    assert_eq!(code, 200, "{v}");

    // A deleted user's token and keys stop at once; a key cannot mint keys.
    let (code, _) = call(
        &t,
        0,
        "POST",
        "/users",
        Some(&admin),
        Some(json!({"username": "dan", "password": "password-1", "tenant": "acme", "role": "user"})),
    )
    .await;
    assert_eq!(code, 200);
    let dan = login(&t, "dan", "password-1").await;
    let (_, k) = call(&t, 0, "POST", "/apikeys", Some(&dan), Some(json!({"name": "dan's"}))).await;
    let dan_key = k["key"].as_str().unwrap().to_string();
    let r = reqwest::Client::new()
        .post(format!("{}/apikeys", t.nodes[0].url()))
        .header("x-api-key", &dan_key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403, "an API key cannot create API keys");
    let (code, _) = call(&t, 0, "DELETE", "/users/dan", Some(&admin), None).await;
    assert_eq!(code, 200);
    t.wait_for("dan's credentials to stop on every node", READY, || async {
        for i in 0..3 {
            let (code, _) = call(&t, i, "GET", "/tasks", Some(&dan), None).await;
            let r = reqwest::Client::new()
                .get(format!("{}/tasks", t.nodes[i].url()))
                .header("x-api-key", &dan_key)
                .send()
                .await
                .unwrap();
            if code != 401 || r.status().as_u16() != 401 {
                return None;
            }
        }
        Some(())
    })
    .await
    .unwrap();

    // Logins: form-encoded like OAuth2 clients, wrong password, rate limit.
    let r = reqwest::Client::new()
        .post(format!("{}/login", t.nodes[2].url()))
        .form(&[("grant_type", "password"), ("username", "bob"), ("password", "password-1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(v["expires_in"], 3600);
    let (code, v) = call(&t, 2, "POST", "/login", None, Some(json!({"username": "bob", "password": "nope"}))).await;
    assert_eq!(code, 401, "{v}");
    let mut limited = None;
    for _ in 0..10 {
        let r = reqwest::Client::new()
            .post(format!("{}/login", t.nodes[2].url()))
            .json(&json!({"username": "bob", "password": "nope"}))
            .send()
            .await
            .unwrap();
        if r.status().as_u16() == 429 {
            limited = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
            break;
        }
    }
    assert!(
        limited.is_some_and(|s| s.parse::<u64>().unwrap() >= 1),
        "5 logins a minute per user, then 429 + Retry-After"
    );
}

#[tokio::test]
async fn the_first_admin_logs_in_with_the_configured_password() {
    let t = must_single(&[]).await;
    t.wait_for("the first admin", READY, || async {
        let (_, v) = t.get(0, "/users").await.ok()?;
        (v["users"].as_array()?.len() == 1).then_some(())
    })
    .await
    .unwrap();
    let token = login(&t, "admin", &t.admin_password).await;
    let (code, v) = call(&t, 0, "GET", "/users", Some(&token), None).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["users"][0]["username"], "admin");
    assert_eq!(v["users"][0]["role"], "admin");
    let (code, _) = call(&t, 0, "GET", "/cluster/status", None, None).await;
    assert_eq!(code, 401);
    assert!(!t.nodes[0].data_dir.join("admin-password").exists(), "a configured password is not written down");

    // The Raft port refuses callers without the cluster's transport token,
    // so nobody can propose commands (a user, a key) around the API.
    use synod_raft::pb::raft_service_client::RaftServiceClient;
    let mut raft = RaftServiceClient::connect(format!("http://{}", t.nodes[0].raft)).await.unwrap();
    let err = raft.ping(synod_raft::pb::Empty {}).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
    let err = raft.client_write(synod_raft::pb::Blob { data: vec![1, 2, 3] }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
}

#[tokio::test]
async fn tenant_quotas_and_request_rates_answer_429() {
    let args: Vec<String> = [
        "security.tenant_max_queued_tasks=5",
        "security.tenant_requests_per_second=20",
        "security.tenant_max_vectors=2",
    ]
    .iter()
    .flat_map(|s| ["--set".to_string(), s.to_string()])
    .collect();
    let t = must_single(&args).await;
    let url = t.nodes[0].url();
    // Tasks no node can take stay queued.
    let task = json!({"type": "echo", "payload": {}, "labels": {"gpu": "h100"}});
    let r =
        t.http.post(format!("{url}/tasks/submit")).json(&json!({"tasks": vec![task.clone(); 5]})).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = t.http.post(format!("{url}/tasks/submit")).json(&task).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "resource_exhausted", "{v}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, list) = t.get(0, "/tasks?limit=100").await.unwrap();
    assert_eq!(list["tasks"].as_array().unwrap().len(), 5, "the refused submit stored nothing");

    // At most 2 vectors: a third is refused whole, and nothing is stored.
    let coll = json!({"name": "v", "dimension": 1});
    assert_eq!(t.http.post(format!("{url}/collections")).json(&coll).send().await.unwrap().status().as_u16(), 200);
    let pts =
        |ids: &[u64]| json!({"points": ids.iter().map(|i| json!({"id": i, "vector": [1.0]})).collect::<Vec<_>>()});
    let r = t.http.post(format!("{url}/collections/v/points")).json(&pts(&[1, 2])).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = t.http.post(format!("{url}/collections/v/points")).json(&pts(&[3])).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let (_, c) = t.get(0, "/collections/v").await.unwrap();
    assert_eq!(c["points"], 2, "{c}");

    // 20 requests a second: a burst of 60 meets 429 with Retry-After.
    let mut limited = 0;
    for _ in 0..60 {
        let r = t.http.get(format!("{url}/tasks?limit=1")).send().await.unwrap();
        if r.status().as_u16() == 429 {
            assert!(r.headers().get("retry-after").is_some());
            limited += 1;
        }
    }
    assert!(limited > 0, "a burst of 60 against a rate of 20/s is limited");
    // Health checks are not a tenant's requests.
    assert_eq!(t.http.get(format!("{url}/health")).send().await.unwrap().status().as_u16(), 200);
}

#[tokio::test]
async fn an_ed25519_key_pair_signs_the_tokens_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("jwt.pem");
    std::fs::write(&key, rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap().serialize_pem()).unwrap();
    let args: Vec<String> =
        ["security.jwt_algorithm=EdDSA".to_string(), format!("security.jwt_secret={}", key.display())]
            .into_iter()
            .flat_map(|s| ["--set".to_string(), s])
            .collect();
    let t = must_single(&args).await;
    let token = t
        .wait_for("the first admin", READY, || async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let body = json!({"username": "admin", "password": t.admin_password});
            let (code, v) = call(&t, 0, "POST", "/login", None, Some(body)).await;
            (code == 200).then(|| v["access_token"].as_str().unwrap().to_string())
        })
        .await
        .unwrap();
    let header: Value = {
        use base64::Engine;
        let h = token.split('.').next().unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap()
    };
    assert_eq!(header["alg"], "EdDSA");
    let (code, _) = call(&t, 0, "GET", "/cluster/status", Some(&format!("Bearer {token}")), None).await;
    assert_eq!(code, 200);
    let (code, _) = call(&t, 0, "GET", "/cluster/status", Some(&format!("Bearer {}", t.admin_token)), None).await;
    assert_eq!(code, 401, "an HS256 token is refused by an EdDSA cluster");
}
