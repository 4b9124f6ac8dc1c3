//! Helpers: a cluster of real `synod` processes (the binary of this test
//! build's profile) in a temp dir. Helpers that panic are `must_*`.

use std::time::Duration;

use serde_json::{Value, json};
use synod_testkit::{Credentials, LocalCluster};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_synod");

/// Generous bounds: these are liveness deadlines, not speed assertions.
pub const READY: Duration = Duration::from_secs(60);

pub struct TestCluster {
    pub c: LocalCluster,
    _dir: TempDir,
}

impl std::ops::Deref for TestCluster {
    type Target = LocalCluster;
    fn deref(&self) -> &LocalCluster {
        &self.c
    }
}

impl std::ops::DerefMut for TestCluster {
    fn deref_mut(&mut self) -> &mut LocalCluster {
        &mut self.c
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for i in 0..self.c.nodes.len() {
                let log = self.c.log_text(i);
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("---- node {i} log (last 40 lines) ----");
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

/// Settings that make failure detection quick in tests.
pub fn fast_args() -> Vec<String> {
    ["cluster.node_heartbeat_interval=200ms", "cluster.suspect_after=1s", "cluster.dead_after=2s"]
        .iter()
        .flat_map(|s| ["--set".to_string(), s.to_string()])
        .collect()
}

pub fn must_new() -> TestCluster {
    let dir = tempfile::tempdir().expect("temp dir");
    let creds = Credentials::generate(|secret| Ok(synod_api::auth::first_admin_token(secret.as_bytes())?))
        .expect("credentials");
    let c = LocalCluster::new(std::path::Path::new(BIN), dir.path(), creds).expect("cluster");
    TestCluster { c, _dir: dir }
}

/// A single bootstrapped node.
pub async fn must_single(extra: &[String]) -> TestCluster {
    let mut t = must_new();
    t.add_node(None, extra).expect("start node 0");
    t.wait_ready(0, READY).await.expect("node 0 ready");
    t
}

/// Three voters: node 0 bootstraps, 1 and 2 join through it.
pub async fn must_three(extra: &[String]) -> TestCluster {
    let mut t = must_single(extra).await;
    t.add_node(Some(0), extra).expect("start node 1");
    t.add_node(Some(0), extra).expect("start node 2");
    t.wait_voters(0, 3, READY).await.expect("three voters");
    for i in 0..3 {
        t.wait_ready(i, READY).await.expect("all ready");
    }
    t
}

pub async fn must_leader(t: &LocalCluster, via: &[usize]) -> usize {
    t.wait_for("a leader", READY, || async {
        for v in via {
            if let Some(l) = t.leader_index(*v).await {
                return Some(l);
            }
        }
        None
    })
    .await
    .expect("a leader")
}

pub async fn must_put_labels(t: &LocalCluster, via: usize, record: u64, labels: Value) -> Value {
    let (code, body) = t.put_labels(via, record, &labels, None).await.expect("request");
    assert_eq!(code, 200, "label write via node {via}: {body}");
    body
}

pub async fn must_get_record(t: &LocalCluster, via: usize, record: u64, consistency: &str) -> Value {
    let (code, body) =
        t.get(via, &format!("/cluster/nodes/{record}?consistency={consistency}")).await.expect("request");
    assert_eq!(code, 200, "get record {record} via node {via}: {body}");
    body
}

pub fn seq_labels(n: u64) -> Value {
    json!({"seq": n.to_string()})
}

pub async fn metric(t: &LocalCluster, i: usize, name: &str) -> f64 {
    let resp = t.http.get(format!("{}/metrics", t.nodes[i].url())).send().await.expect("metrics");
    let text = resp.text().await.expect("metrics body");
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Adds the cluster's admin token to every gRPC call.
#[derive(Clone)]
pub struct AdminAuth(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl AdminAuth {
    pub fn of(t: &LocalCluster) -> AdminAuth {
        AdminAuth(format!("Bearer {}", t.admin_token).parse().expect("a token is ASCII"))
    }
}

impl tonic::service::Interceptor for AdminAuth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

/// A gRPC channel to node `i`.
pub async fn must_channel(t: &LocalCluster, i: usize) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{}", t.nodes[i].grpc))
        .expect("a valid URI")
        .connect()
        .await
        .expect("gRPC connect")
}

/// `--set plugins.models_dir=...`: the models `make test` installed
/// (`SYNOD_TEST_MODELS_DIR`), all-MiniLM-L6-v2 among them. A test that needs
/// the real model fails without it rather than passing vacuously.
pub fn model_args() -> Vec<String> {
    let dir = std::env::var("SYNOD_TEST_MODELS_DIR")
        .unwrap_or_else(|_| panic!("SYNOD_TEST_MODELS_DIR is not set: run `make test` (or `make model`)"));
    assert!(
        std::path::Path::new(&dir).join("all-MiniLM-L6-v2").join("synod-model.json").is_file(),
        "{dir} has no all-MiniLM-L6-v2: run `make model`"
    );
    vec!["--set".to_string(), format!("plugins.models_dir={dir}")]
}

/// sentence-transformers' vector of `text` from shared/testdata/minilm-reference.json.
pub fn reference_vector(text: &str) -> Vec<f32> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/minilm-reference.json");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("the reference file")).unwrap();
    let case = file["public"].as_array().unwrap().iter().find(|c| c["text"] == text);
    let case = case.unwrap_or_else(|| panic!("{text:?} is not a reference sentence"));
    serde_json::from_value(case["embedding"].clone()).unwrap()
}

pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// Polls node `via`'s view of plugin `name` until it is ready on exactly the
/// nodes `want` (and, when given, at module sha256 `sha`).
pub async fn must_plugin_ready(t: &LocalCluster, via: usize, name: &str, sha: Option<&str>, want: &[u64]) {
    let want: std::collections::BTreeSet<u64> = want.iter().copied().collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = t.get(via, &format!("/plugins/{name}")).await.unwrap();
        let ready: std::collections::BTreeSet<u64> =
            v["nodes_ready"].as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default();
        if sha.is_none_or(|s| v["sha256"] == s) && ready == want {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{name} {sha:?} never ready on exactly {want:?}: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A signer of leader operations holding the cluster's secret, as every
/// node of `t` does.
pub fn sealer(t: &LocalCluster) -> synod_api::service::leader_ops::Sealer {
    synod_api::service::leader_ops::Sealer::new(Some(t.secret.as_bytes()))
}

/// Sends the sealed leader operation `data` to node `i` over the cluster
/// channel, as another node (or a joining one) would; `token` false leaves
/// the cluster's transport token out.
pub async fn send_leader_op(
    t: &LocalCluster,
    i: usize,
    data: Vec<u8>,
    token: bool,
) -> synod_api::error::Result<synod_api::service::leader_ops::LeaderReply> {
    let token = token.then(|| synod_api::server::transport_token_of(t.secret.as_bytes()));
    let token = synod_raft::TransportToken::new(token.as_deref()).expect("an ASCII token");
    let peers = synod_raft::Peers::new(Default::default(), 64 * 1024, None, token);
    let bytes = synod_raft::send_leader_op(&peers, 0, &t.nodes[i].raft, data, Duration::from_secs(15)).await?;
    synod_api::service::leader_ops::decode_reply(&bytes, "the node")
}

/// Sends `method path` to node `i` with `auth` only (no harness token).
pub async fn call(
    t: &TestCluster,
    i: usize,
    method: &str,
    path: &str,
    auth: &Auth<'_>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method.parse().unwrap(), format!("{}{path}", t.nodes[i].url()));
    req = match auth {
        Auth::None => req,
        Auth::Bearer(b) => req.header("authorization", format!("Bearer {b}")),
        Auth::Key(k) => req.header("x-api-key", *k),
    };
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(Value::Null))
}

/// The credential of a [`call`].
pub enum Auth<'a> {
    None,
    Bearer(&'a str),
    Key(&'a str),
}
