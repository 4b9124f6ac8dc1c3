//! TLS: REST and gRPC over rustls, mutual TLS on the Raft transport, and a
//! node whose certificate the cluster CA did not sign kept out.

use std::path::Path;

use serde_json::json;

use crate::util::*;

/// `certs` holds the node's certificate; `ca` is the CA of the REST and
/// cluster TLS it trusts.
fn tls_args(certs: &Path, ca: &Path, node: usize) -> Vec<String> {
    let cert = certs.join(format!("node{node}.pem")).display().to_string();
    let key = certs.join(format!("node{node}.key")).display().to_string();
    let ca = ca.display().to_string();
    [
        format!("security.tls.cert={cert}"),
        format!("security.tls.key={key}"),
        format!("security.tls.ca={ca}"),
        format!("security.cluster_tls.ca={ca}"),
        format!("security.cluster_tls.cert={cert}"),
        format!("security.cluster_tls.key={key}"),
    ]
    .into_iter()
    .flat_map(|s| ["--set".to_string(), s])
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutual_tls_cluster_forms_and_keeps_strangers_out() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    synod_api::tls::certs_init(&certs, 3, &[]).unwrap();
    let ca = certs.join("ca.pem");
    let mut t = must_new();
    t.use_tls(&ca).unwrap();
    t.add_node(None, &tls_args(&certs, &ca, 1)).unwrap();
    t.wait_ready(0, READY).await.unwrap();
    t.add_node(Some(0), &tls_args(&certs, &ca, 2)).unwrap();
    t.add_node(Some(0), &tls_args(&certs, &ca, 3)).unwrap();
    t.wait_voters(0, 3, READY).await.unwrap();

    // Replicated: a task submitted through one node finishes, read on another.
    let r =
        t.http.post(format!("{}/tasks/submit", t.nodes[1].url())).json(&json!({"type": "echo", "payload": {"x": 1}}));
    let v: serde_json::Value = r.send().await.unwrap().json().await.unwrap();
    let id = v["id"].as_str().unwrap().to_string();
    t.wait_for("the task on node 2", READY, || async {
        let (code, v) = t.get(2, &format!("/tasks/{id}/result?wait=1")).await.ok()?;
        (code == 200 && v["state"] == "succeeded").then_some(())
    })
    .await
    .unwrap();

    // Plain HTTP to the TLS port fails; gRPC over TLS works with the CA.
    let plain = reqwest::Client::new().get(format!("http://{}/health", t.nodes[0].http)).send().await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success(), "plain HTTP must not be served");
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(&ca).unwrap()))
        .domain_name("localhost");
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{}", t.nodes[0].grpc))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = synod_api::pb::cluster_client::ClusterClient::with_interceptor(channel, AdminAuth::of(&t));
    let status = client.status(synod_api::pb::StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.nodes.len(), 3);

    // A node that trusts the cluster's CA (it is no secret) but holds a
    // certificate of another CA cannot join. It cannot even ask for a node
    // id: the cluster channel is mutual TLS, so the member's transport
    // refuses its certificate before any leader operation is read.
    let strangers = dir.path().join("strangers");
    synod_api::tls::certs_init(&strangers, 1, &[]).unwrap();
    let stranger = t.add_node(Some(0), &tls_args(&strangers, &ca, 1)).unwrap();
    t.wait_for("the join to be refused", READY, || async {
        t.log_text(stranger).contains("allocating a node id failed").then_some(())
    })
    .await
    .unwrap();
    let s = t.status(0).await.unwrap();
    assert_eq!(s["voters"].as_array().unwrap().len(), 3, "{s}");
    assert!(s["learners"].as_array().unwrap().is_empty(), "the stranger is no member: {s}");
}
