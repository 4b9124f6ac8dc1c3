//! The standard services gRPC tools expect from a server: `grpc.health.v1`
//! (what `grpc_health_probe` and Kubernetes' gRPC probes call) and server
//! reflection (what `grpcurl list` and `grpcurl describe` read instead of
//! the proto files). Both are public, as `/health` is.

use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::service;

/// Synod's own services, by their full names: the health service reports
/// each of them, and the overall status (`""`), as `/health/ready` would.
pub const SERVICES: [&str; 6] = [
    "synod.v1.Cluster",
    "synod.v1.Tasks",
    "synod.v1.Identity",
    "synod.v1.Vectors",
    "synod.v1.Plugins",
    "synod.v1.External",
];

/// How often readiness is looked at again. A probe sees a change within
/// this, and `Watch` callers are told of it then.
const POLL: Duration = Duration::from_millis(250);

/// The health service, and the loop that keeps its statuses following
/// `/health/ready` (run it until the server stops).
pub fn health(
    node: service::SharedNode,
) -> (
    HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    impl std::future::Future<Output = ()>,
) {
    let (reporter, server) = tonic_health::server::health_reporter();
    let follow = {
        let reporter = reporter.clone();
        async move {
            let mut last = None;
            loop {
                let health = service::cluster::do_health(&node);
                let ready = health.ready;
                if last != Some(ready) {
                    if last.is_some() {
                        tracing::info!(ready, reason = health.reason.as_deref().unwrap_or(""), "readiness changed");
                    }
                    set_all(&reporter, ready).await;
                    last = Some(ready);
                }
                tokio::time::sleep(POLL).await;
            }
        }
    };
    (reporter, server, follow)
}

/// Every status at once: serving when ready, not serving otherwise (and
/// from the moment the node begins to stop).
pub async fn set_all(reporter: &HealthReporter, ready: bool) {
    let status = if ready { ServingStatus::Serving } else { ServingStatus::NotServing };
    for name in std::iter::once("").chain(SERVICES) {
        reporter.set_service_status(name, status).await;
    }
}

/// Forgets every status: the streams of `Watch` callers end.
pub async fn clear_all(mut reporter: HealthReporter) {
    for name in std::iter::once("").chain(SERVICES) {
        reporter.clear_service_status(name).await;
    }
}

/// The descriptors of every public service, health and reflection included.
const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/synod_descriptor.bin"));

/// Server reflection, both versions: `v1` and the `v1alpha` older tools
/// (and some current ones) still ask for first.
pub fn reflection() -> anyhow::Result<(
    tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
    tonic_reflection::server::v1alpha::ServerReflectionServer<impl tonic_reflection::server::v1alpha::ServerReflection>,
)> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(DESCRIPTORS)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}
