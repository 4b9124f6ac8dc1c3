//! The Prometheus exporter (the only one in Synod) and HTTP metrics.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Fine below 5 ms, where a write's stages live (`synod-bench writes
/// --breakdown` reads medians from these buckets).
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00015, 0.0002, 0.0003, 0.0004, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the global recorder once per process.
pub fn install() {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed");
        }
        handle
    });
}

/// The current metrics in Prometheus text format.
pub fn render() -> String {
    HANDLE.get().map(|h| h.render()).unwrap_or_default()
}

pub fn http_request(route: String, method: String, status: String, took: Duration) {
    counter!("synod_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status.clone())
        .increment(1);
    histogram!("synod_http_request_seconds", "route" => route, "method" => method, "status" => status)
        .record(took.as_secs_f64());
}

pub fn grpc_request(method: &'static str, ok: bool, took: Duration) {
    let outcome = if ok { "ok" } else { "error" };
    counter!("synod_grpc_requests_total", "method" => method, "outcome" => outcome).increment(1);
    histogram!("synod_grpc_request_seconds", "method" => method).record(took.as_secs_f64());
}

/// The access check of a REST request (the token or key verified, the
/// rule applied), before its handler runs.
pub fn auth_checked(took: Duration) {
    histogram!("synod_http_auth_seconds").record(took.as_secs_f64());
}

/// Refreshes the gauges computed from the store ([`export_task_counters`],
/// [`export_vector_index`]) at most once a second, however often `/metrics`
/// is scraped.
pub fn export_cached(store: &synod_store::Store) {
    static LAST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if last.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1)) {
        return;
    }
    *last = Some(std::time::Instant::now());
    drop(last);
    export_task_counters(store);
    export_vector_index(store);
}

const TASK_STATES: [&str; 7] = ["queued", "assigned", "running", "succeeded", "failed", "cancelled", "dead_lettered"];

/// Mirrors the replicated task counters into gauges: `synod_tasks{tenant,state}`
/// (queue depth by tenant and state) and `synod_tasks_<event>{tenant}` for
/// attempts, retries, dead letters and requeues (lease expiries, lost nodes,
/// drains). Replicated, so every node reports the same numbers.
pub fn export_task_counters(store: &synod_store::Store) {
    let Ok(counters) = store.task_counters() else { return };
    for (tenant, name, value) in counters {
        if TASK_STATES.contains(&name.as_str()) {
            metrics::gauge!("synod_tasks", "tenant" => tenant, "state" => name).set(value as f64);
        } else if name == synod_store::vectors::VECTORS_COUNTER {
            metrics::gauge!("synod_vectors_stored", "tenant" => tenant).set(value as f64);
        } else if name == synod_store::schema::STORAGE_BYTES_COUNTER {
            metrics::gauge!("synod_tenant_storage_bytes", "tenant" => tenant).set(value as f64);
        } else {
            metrics::gauge!(format!("synod_tasks_{name}"), "tenant" => tenant).set(value as f64);
        }
    }
}

/// The vector index of this node (derived state, so per node):
/// `synod_vector_index_points`, `..._growing_points` (not yet in a graph),
/// `..._segments`, `..._tombstones`, `..._bytes` (estimated) and
/// `synod_vector_index_bytes_per_million_vectors`.
pub fn export_vector_index(store: &synod_store::Store) {
    let s = store.vector_index().stats();
    metrics::gauge!("synod_vector_index_collections").set(s.collections as f64);
    metrics::gauge!("synod_vector_index_points").set(s.points as f64);
    metrics::gauge!("synod_vector_index_growing_points").set(s.growing as f64);
    metrics::gauge!("synod_vector_index_segments").set(s.segments as f64);
    metrics::gauge!("synod_vector_index_tombstones").set(s.tombstones as f64);
    metrics::gauge!("synod_vector_index_bytes").set(s.bytes as f64);
    let per_million = if s.points == 0 { 0.0 } else { s.bytes as f64 * 1e6 / s.points as f64 };
    metrics::gauge!("synod_vector_index_bytes_per_million_vectors").set(per_million);
}

/// One `/external/ai` call of a tenant: `synod_external_tenant_calls_total`
/// and `synod_external_tenant_tokens_total` (what the provider reported).
pub fn external_tenant_call(
    tenant: &str,
    provider: &str,
    result: &Result<synod_plugins::external::AiResponse, synod_plugins::external::ExternalError>,
) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    };
    counter!("synod_external_tenant_calls_total", "tenant" => tenant.to_owned(), "provider" => provider.to_owned(), "outcome" => outcome)
        .increment(1);
    if let Ok(r) = result {
        counter!("synod_external_tenant_tokens_total", "tenant" => tenant.to_owned(), "provider" => provider.to_owned())
            .increment(r.usage.total_tokens);
    }
}
