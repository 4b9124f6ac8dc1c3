//! REST: axum handlers as thin adapters over [`crate::service`].

use std::collections::BTreeMap;
use std::time::Instant;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::auth::{AuthContext, TENANT_HEADER};
use crate::error::{ApiError, Result};
use crate::service::cluster::JoinRequest;
use crate::service::tasks;
use crate::service::{self, Consistency, SharedNode};

mod dashboard;
mod external;
pub mod openapi;

/// Our JSON extractor: a malformed or oversize body gets our error body.
/// The body is read as JSON whatever its content type says: `curl -d
/// '{...}'` sends a JSON body labelled as a form, and the JSON routes have
/// no other body to expect (the form routes, `/login`, use their own).
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        let bytes = match axum::body::Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::PayloadTooLarge(format!("request body too large: {}", r.body_text())));
            }
            Err(r) => return Err(ApiError::InvalidArgument(format!("reading the request body: {}", r.body_text()))),
        };
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(format!("request body too large: {}", r.body_text()))
    } else {
        ApiError::InvalidArgument(format!("malformed JSON body: {}", r.body_text()))
    }
}

fn ok<T: serde::Serialize>(v: T) -> Response {
    axum::Json(v).into_response()
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct ConsistencyQuery {
    consistency: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct ForceQuery {
    #[serde(default)]
    force: bool,
}

/// Query extractor with our error body.
struct Q<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> axum::extract::FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Q(v))
            .map_err(|e| ApiError::InvalidArgument(format!("bad query string: {}", e.body_text())))
    }
}

/// Path extractor with our error body (e.g. a node id that is not a number).
struct P<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S> for P<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| P(v))
            .map_err(|e| ApiError::InvalidArgument(format!("bad path: {}", e.body_text())))
    }
}

/// The caller, as the auth layer found it (see [`authenticate`]).
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for AuthContext {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self> {
        parts
            .extensions
            .get::<AuthContext>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("a handler asked for the caller on a public route".into()))
    }
}

use crate::ops::Access;

fn handler(method: &str, path: &str) -> axum::routing::MethodRouter<SharedNode> {
    match (method, path) {
        ("GET", "/health") => get(health),
        ("GET", "/health/ready") => get(ready),
        ("GET", "/metrics") => get(metrics),
        ("GET", "/openapi.json") => get(openapi_json),
        ("GET", "/docs") => get(dashboard::docs),
        ("GET", "/metrics/history") => get(metrics_history),
        ("POST", "/login") => post(login),
        ("GET", "/whoami") => get(whoami),
        ("GET", "/audit") => get(audit),
        ("GET", "/dashboard") => get(dashboard::redirect),
        ("GET", "/dashboard/") => get(dashboard::index),
        ("GET", "/dashboard/{file}") => get(dashboard::file),
        ("GET", "/cluster/status") => get(cluster_status),
        ("GET", "/debug/digest") => get(state_digest),
        ("GET", "/cluster/backup") => get(backup),
        ("GET", "/agents/registry" | "/cluster/nodes") => get(registry),
        ("GET", "/cluster/nodes/{id}") => get(get_node),
        ("PUT", "/cluster/nodes/{id}/labels") => put(set_labels),
        ("POST", "/cluster/nodes/{id}/promote") => post(promote),
        ("POST", "/cluster/nodes/{id}/demote") => post(demote),
        ("POST", "/cluster/nodes/{id}/remove") => post(remove),
        ("POST", "/cluster/nodes/{id}/transfer-leader") => post(transfer_leader),
        ("POST", "/cluster/nodes/{id}/drain") => post(drain),
        ("POST", "/cluster/nodes/{id}/undrain") => post(undrain),
        ("POST", "/cluster/add-learner" | "/cluster/join") => post(add_learner),
        ("POST", "/tasks/submit") => post(submit_tasks),
        ("GET", "/tasks") => get(list_tasks),
        ("GET", "/tasks/{id}/status") => get(task_status),
        ("GET", "/tasks/{id}/result") => get(task_result),
        ("POST", "/tasks/{id}/cancel") => post(cancel_task),
        ("GET", "/plugins/list") => get(list_plugins),
        ("POST", "/plugins/load") => post(load_plugin),
        ("GET", "/plugins/{name}") => get(get_plugin),
        ("POST", "/plugins/{name}/unload") => post(unload_plugin),
        ("GET", "/models") => get(list_models),
        ("GET", "/tenants") => get(list_tenants),
        ("POST", "/tenants") => post(create_tenant),
        ("GET", "/users") => get(list_users),
        ("POST", "/users") => post(create_user),
        ("PUT", "/users/{name}") => put(update_user),
        ("DELETE", "/users/{name}") => axum::routing::delete(delete_user),
        ("GET", "/apikeys") => get(list_api_keys),
        ("POST", "/apikeys") => post(create_api_key),
        ("DELETE", "/apikeys/{id}") => axum::routing::delete(revoke_api_key),
        ("GET", "/collections") => get(list_collections),
        ("POST", "/collections") => post(create_collection),
        ("GET", "/collections/{name}") => get(get_collection),
        ("DELETE", "/collections/{name}") => axum::routing::delete(delete_collection),
        ("POST", "/collections/{name}/points") => post(upsert_points),
        ("DELETE", "/collections/{name}/points") => axum::routing::delete(delete_points),
        ("GET", "/collections/{name}/points/{id}") => get(get_point),
        ("POST", "/vector/search") => post(search),
        ("POST", "/vector/search/batch") => post(search_batch),
        ("POST", "/external/ai") => post(external::external_ai),
        ("GET", "/external/providers") => get(external::list_providers),
        ("POST", "/v1/embeddings") => post(external::openai_embeddings),
        (m, p) => panic!("route {m} {p} is in ops::OPERATIONS but has no handler"),
    }
}

pub fn router(node: SharedNode) -> Router {
    let limit = node.cfg.node.max_body_size.as_u64() as usize;
    let mut r = Router::new();
    // A module may be larger than other bodies: base64 of up to
    // plugins.wasm_max_module_size, plus the manifest.
    let module_limit = (node.cfg.plugins.wasm_max_module_size.as_u64() as usize / 3 * 4 + 64 * 1024).max(limit);
    for (method, path, _) in crate::ops::rest_routes() {
        let h = handler(method, path);
        let h = if path == "/plugins/load" { h.layer(axum::extract::DefaultBodyLimit::max(module_limit)) } else { h };
        r = r.route(path, h);
    }
    r.route_layer(middleware::from_fn_with_state(node.clone(), authenticate))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(track))
        .with_state(node)
}

/// Checks the caller of every matched route against its [`Access`] rule
/// and hands the [`AuthContext`] to the handler.
async fn authenticate(State(node): State<SharedNode>, mut req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let path = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_default();
    let rule = crate::ops::rest_access(req.method().as_str(), &path).unwrap_or(Access::Admin);
    let public = match rule {
        Access::Public => true,
        Access::Metrics => !node.cfg.security.metrics_auth,
        _ => false,
    };
    if !public {
        let h = req.headers();
        let got = crate::service::authn::authenticate(
            &node,
            h.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
            h.get("x-api-key").map(|v| v.as_bytes()),
            h.get(TENANT_HEADER).map(|v| v.as_bytes()),
        )
        .and_then(|ctx| crate::ops::permit(&ctx, rule).map(|()| ctx));
        match got {
            Ok(ctx) => {
                req.extensions_mut().insert(ctx);
            }
            Err(e) => return e.into_response(),
        }
    }
    crate::metrics::auth_checked(started.elapsed());
    next.run(req).await
}

/// Counts and times every request by route and status.
async fn track(req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    // Known methods only: a client inventing methods must not invent series.
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS") => m.to_string(),
        _ => "OTHER".to_string(),
    };
    let started = Instant::now();
    let resp = next.run(req).await;
    let code = resp.status().as_u16();
    // A failed login is audited as such already.
    if route != "/login" {
        crate::service::authn::audit_refused(code, &format!("{method} {route}"));
    }
    crate::metrics::http_request(route, method, code.to_string(), started.elapsed());
    resp
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!("no route for {} {}", req.method(), req.uri().path()))
}

async fn method_not_allowed(req: Request) -> Response {
    let e = ApiError::InvalidArgument(format!("method {} is not allowed on {}", req.method(), req.uri().path()));
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(e.body())).into_response()
}

/// The document is the same for the life of the process: built once.
async fn openapi_json() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = DOC.get_or_init(|| serde_json::to_string(&openapi::document()).expect("the document serializes"));
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], text.as_str()).into_response()
}

async fn health(State(node): State<SharedNode>) -> Response {
    ok(service::cluster::do_health(&node))
}

async fn ready(State(node): State<SharedNode>) -> Response {
    let h = service::cluster::do_health(&node);
    let status = if h.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(h)).into_response()
}

/// `/metrics`: every series for an admin; without admin credentials (it is
/// public unless `security.metrics_auth`), the series that name a tenant
/// are left out, so an anonymous scrape learns no tenant names.
async fn metrics(
    State(node): State<SharedNode>,
    ctx: Option<axum::Extension<AuthContext>>,
    headers: HeaderMap,
) -> Response {
    let admin = match ctx {
        Some(axum::Extension(ctx)) => ctx.role == crate::auth::Role::Admin,
        None if headers.contains_key(header::AUTHORIZATION) || headers.contains_key("x-api-key") => {
            crate::service::authn::authenticate(
                &node,
                headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
                headers.get("x-api-key").map(|v| v.as_bytes()),
                None,
            )
            .is_ok_and(|c| c.role == crate::auth::Role::Admin)
        }
        None => false,
    };
    crate::metrics::export_cached(&node.raft.store);
    let mut text = crate::metrics::render();
    if !admin {
        text = text.lines().filter(|l| !l.contains("tenant=\"")).fold(String::new(), |mut out, l| {
            out.push_str(l);
            out.push('\n');
            out
        });
    }
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"))], text).into_response()
}

async fn state_digest(State(node): State<SharedNode>, ctx: AuthContext) -> Result<Response> {
    Ok(ok(service::cluster::do_state_digest(&ctx, &node)?))
}

/// `GET /cluster/backup`: the backup file, streamed; what it holds in the
/// `X-Synod-Backup-*` headers (and in the file itself).
async fn backup(State(node): State<SharedNode>, ctx: AuthContext) -> Result<Response> {
    let b = service::backup::do_backup(&ctx, &node).await?;
    let file = tokio::fs::File::open(&b.file).await.map_err(|e| ApiError::Internal(format!("backup file: {e}")))?;
    let about = b.about.clone();
    // The temp file lives as long as the stream that reads it.
    let chunks = futures::stream::unfold((file, Some(b.file)), |(mut file, keep)| async move {
        use tokio::io::AsyncReadExt;
        keep.as_ref()?;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(buf)), (file, keep)))
            }
            Err(e) => Some((Err(e), (file, None))),
        }
    });
    let name = format!("attachment; filename=\"synod-{}-{}.synodbak\"", about.node_id, about.applied_index);
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
        (header::CONTENT_LENGTH, HeaderValue::from(about.bytes)),
        (header::CONTENT_DISPOSITION, HeaderValue::from_str(&name).map_err(|e| ApiError::Internal(e.to_string()))?),
    ];
    let mut resp = (headers, axum::body::Body::from_stream(chunks)).into_response();
    for (k, v) in [
        ("x-synod-backup-index", about.applied_index.to_string()),
        ("x-synod-backup-digest", about.digest.clone()),
        ("x-synod-backup-records", about.records.to_string()),
        ("x-synod-backup-node", about.node_id.to_string()),
    ] {
        resp.headers_mut().insert(k, HeaderValue::from_str(&v).map_err(|e| ApiError::Internal(e.to_string()))?);
    }
    Ok(resp)
}

#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    #[serde(default)]
    since_ms: u64,
}

async fn metrics_history(State(node): State<SharedNode>, ctx: AuthContext, Q(q): Q<HistoryQuery>) -> Result<Response> {
    Ok(ok(service::history::do_metrics_history(&ctx, &node, q.since_ms)?))
}

async fn whoami(ctx: AuthContext) -> Result<Response> {
    Ok(ok(crate::service::identity::do_whoami(&ctx)))
}

async fn audit(
    State(node): State<SharedNode>,
    _ctx: AuthContext,
    Q(q): Q<crate::service::authn::AuditQuery>,
) -> Result<Response> {
    Ok(ok(crate::service::authn::do_audit(&node, q)?))
}

async fn cluster_status(State(node): State<SharedNode>, ctx: AuthContext) -> Result<Response> {
    Ok(ok(service::cluster::do_cluster_status(&ctx, &node)?))
}

async fn registry(State(node): State<SharedNode>, ctx: AuthContext, Q(q): Q<ConsistencyQuery>) -> Result<Response> {
    let c = Consistency::parse(q.consistency.as_deref())?;
    Ok(ok(service::cluster::do_list_registry(&ctx, &node, c).await?))
}

fn etag(version: u64) -> [(header::HeaderName, HeaderValue); 1] {
    [(header::ETAG, HeaderValue::from_str(&format!("\"{version}\"")).expect("digits are a valid header value"))]
}

async fn get_node(
    State(node): State<SharedNode>,
    ctx: AuthContext,
    P(id): P<u64>,
    Q(q): Q<ConsistencyQuery>,
) -> Result<Response> {
    let c = Consistency::parse(q.consistency.as_deref())?;
    let view = service::cluster::do_get_node(&ctx, &node, id, c).await?;
    Ok((etag(view.record_version), axum::Json(view)).into_response())
}

/// Parses `If-Match: "7"` (or `7`, or `*` for any version).
fn if_match(headers: &HeaderMap) -> Result<Option<u64>> {
    let Some(v) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let s = v.to_str().map_err(|_| ApiError::InvalidArgument("If-Match is not ASCII".into()))?.trim();
    if s == "*" {
        return Ok(None);
    }
    let bare = s.trim_start_matches("W/").trim_matches('"');
    bare.parse::<u64>()
        .map(Some)
        .map_err(|_| ApiError::InvalidArgument(format!("If-Match {s:?} is not a record version (an ETag like \"3\")")))
}

async fn set_labels(
    State(node): State<SharedNode>,
    ctx: AuthContext,
    P(id): P<u64>,
    headers: HeaderMap,
    Json(labels): Json<BTreeMap<String, String>>,
) -> Result<Response> {
    let expected = if_match(&headers)?;
    let view = service::cluster::do_set_labels(&ctx, &node, id, labels, expected).await?;
    Ok((etag(view.record_version), axum::Json(view)).into_response())
}

async fn promote(State(node): State<SharedNode>, ctx: AuthContext, P(id): P<u64>) -> Result<Response> {
    Ok(ok(service::cluster::do_promote(&ctx, &node, id).await?))
}

async fn demote(
    State(node): State<SharedNode>,
    ctx: AuthContext,
    P(id): P<u64>,
    Q(q): Q<ForceQuery>,
) -> Result<Response> {
    Ok(ok(service::cluster::do_demote(&ctx, &node, id, q.force).await?))
}

async fn remove(
    State(node): State<SharedNode>,
    ctx: AuthContext,
    P(id): P<u64>,
    Q(q): Q<ForceQuery>,
) -> Result<Response> {
    Ok(ok(service::cluster::do_remove(&ctx, &node, id, q.force).await?))
}

async fn transfer_leader(State(node): State<SharedNode>, ctx: AuthContext, P(id): P<u64>) -> Result<Response> {
    Ok(ok(service::cluster::do_transfer_leader(&ctx, &node, id).await?))
}

async fn drain(State(node): State<SharedNode>, ctx: AuthContext, P(id): P<u64>) -> Result<Response> {
    Ok(ok(service::cluster::do_set_draining(&ctx, &node, id, true).await?))
}

async fn undrain(State(node): State<SharedNode>, ctx: AuthContext, P(id): P<u64>) -> Result<Response> {
    Ok(ok(service::cluster::do_set_draining(&ctx, &node, id, false).await?))
}

async fn add_learner(
    State(node): State<SharedNode>,
    ctx: AuthContext,
    Json(req): Json<JoinRequest>,
) -> Result<Response> {
    Ok(ok(service::cluster::do_add_learner(&ctx, &node, req).await?))
}

/// `POST /tasks/submit`: one task (`{"type", "payload", ...}`, optional
/// `Idempotency-Key` header) or a batch (`{"tasks": [...]}`).
async fn submit_tasks(
    State(node): State<SharedNode>,
    ctx: AuthContext,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Result<Response> {
    let header_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            Some(v.to_str().map_err(|_| ApiError::InvalidArgument("Idempotency-Key is not ASCII".into()))?.to_string())
        }
    };
    let parse = |v: serde_json::Value| {
        serde_json::from_value::<tasks::SubmitRequest>(v)
            .map_err(|e| ApiError::InvalidArgument(format!("invalid task: {e}")))
    };
    if let Some(list) = body.get("tasks") {
        let serde_json::Value::Array(items) = list.clone() else {
            return Err(ApiError::InvalidArgument("\"tasks\" must be an array".into()));
        };
        if body.as_object().is_some_and(|o| o.len() > 1) {
            return Err(ApiError::InvalidArgument("a batch body has only \"tasks\"".into()));
        }
        let reqs = items.into_iter().map(parse).collect::<Result<Vec<_>>>()?;
        let out = tasks::do_submit_tasks(&ctx, &node, reqs).await?;
        return Ok(ok(json!({"tasks": out})));
    }
    let mut req = parse(body)?;
    if let Some(k) = header_key {
        if req.idempotency_key.as_ref().is_some_and(|b| *b != k) {
            return Err(ApiError::InvalidArgument("Idempotency-Key header and idempotency_key field differ".into()));
        }
        req.idempotency_key = Some(k);
    }
    let mut out = tasks::do_submit_tasks(&ctx, &node, vec![req]).await?;
    Ok(ok(out.pop().expect("one request gives one answer")))
}

async fn task_status(State(node): State<SharedNode>, ctx: AuthContext, P(id): P<String>) -> Result<Response> {
    Ok(ok(tasks::do_task_status(&ctx, &node, &id).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct WaitQuery {
    wait: Option<f64>,
}

/// 200 with the result when finished; 202 with the state otherwise.
async fn task_result(
    State(node): State<SharedNode>,
    ctx: AuthContext,
    P(id): P<String>,
    Q(q): Q<WaitQuery>,
) -> Result<Response> {
    let wait = q.wait.unwrap_or(0.0);
    if !wait.is_finite() || wait < 0.0 {
        return Err(ApiError::InvalidArgument(format!("wait={wait} must be a number of seconds >= 0")));
    }
    let v = tasks::do_task_result(&ctx, &node, &id, std::time::Duration::from_secs_f64(wait.min(60.0))).await?;
    let status = if v.finished { StatusCode::OK } else { StatusCode::ACCEPTED };
    Ok((status, axum::Json(v)).into_response())
}

async fn list_tasks(State(node): State<SharedNode>, ctx: AuthContext, Q(q): Q<tasks::ListQuery>) -> Result<Response> {
    Ok(ok(tasks::do_list_tasks(&ctx, &node, q)?))
}

async fn cancel_task(State(node): State<SharedNode>, ctx: AuthContext, P(id): P<String>) -> Result<Response> {
    Ok(ok(tasks::do_cancel_task(&ctx, &node, &id).await?))
}

async fn list_plugins(State(node): State<SharedNode>, ctx: AuthContext) -> Result<Response> {
    Ok(ok(json!({"plugins": crate::service::plugins::do_list_plugins(&ctx, &node)?})))
}

async fn list_models(State(node): State<SharedNode>, ctx: AuthContext) -> Result<Response> {
    Ok(ok(json!({"models": crate::service::plugins::do_list_models(&ctx, &node)?})))
}

async fn get_plugin(State(node): State<SharedNode>, ctx: AuthContext, P(name): P<String>) -> Result<Response> {
    Ok(ok(crate::service::plugins::do_get_plugin(&ctx, &node, &name)?))
}

async fn load_plugin(
    State(node): State<SharedNode>,
    ctx: AuthContext,
    Json(req): Json<crate::service::plugins::LoadRequest>,
) -> Result<Response> {
    let spec = req.decode(&node)?;
    Ok(ok(crate::service::plugins::do_load_plugin(&ctx, &node, spec).await?))
}

async fn unload_plugin(State(node): State<SharedNode>, ctx: AuthContext, P(name): P<String>) -> Result<Response> {
    crate::service::plugins::do_unload_plugin(&ctx, &node, &name).await?;
    Ok(ok(json!({"unloaded": name})))
}

// ---- identity

/// `POST /login`: the OAuth2 password grant, form-encoded or JSON.
async fn login(
    State(node): State<SharedNode>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let req: crate::service::identity::LoginRequest = if form {
        serde_urlencoded::from_bytes(&body)
            .map_err(|e| ApiError::InvalidArgument(format!("malformed form body: {e}")))?
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidArgument(format!("malformed JSON body: {e}")))?
    };
    Ok(ok(crate::service::identity::do_login(&node, req, &peer.ip().to_string()).await?))
}

async fn list_tenants(State(node): State<SharedNode>, ctx: AuthContext) -> Result<Response> {
    Ok(ok(json!({"tenants": crate::service::identity::do_list_tenants(&ctx, &node)?})))
}

async fn create_tenant(
    State(node): State<SharedNode>,
    ctx: AuthContext,
    Json(req): Json<crate::service::identity::TenantRequest>,
) -> Result<Response> {
    Ok(ok(crate::service::identity::do_create_tenant(&ctx, &node, req).await?))
}

async fn list_users(State(node): State<SharedNode>, ctx: AuthContext) -> Result<Response> {
    Ok(ok(json!({"users": crate::service::identity::do_list_users(&ctx, &node)?})))
}

async fn create_user(
    State(node): State<SharedNode>,
    ctx: AuthContext,
    Json(req): Json<crate::service::identity::UserRequest>,
) -> Result<Response> {
    Ok(ok(crate::service::identity::do_create_user(&ctx, &node, req).await?))
}

async fn update_user(
    State(node): State<SharedNode>,
    ctx: AuthContext,
    P(name): P<String>,
    Json(req): Json<crate::service::identity::UserUpdate>,
) -> Result<Response> {
    Ok(ok(crate::service::identity::do_update_user(&ctx, &node, &name, req).await?))
}

async fn delete_user(State(node): State<SharedNode>, ctx: AuthContext, P(name): P<String>) -> Result<Response> {
    crate::service::identity::do_delete_user(&ctx, &node, &name).await?;
    Ok(ok(json!({"deleted": name})))
}

async fn list_api_keys(State(node): State<SharedNode>, ctx: AuthContext) -> Result<Response> {
    Ok(ok(json!({"keys": crate::service::identity::do_list_api_keys(&ctx, &node)?})))
}

async fn create_api_key(
    State(node): State<SharedNode>,
    ctx: AuthContext,
    Json(req): Json<crate::service::identity::ApiKeyRequest>,
) -> Result<Response> {
    Ok(ok(crate::service::identity::do_create_api_key(&ctx, &node, req).await?))
}

async fn revoke_api_key(State(node): State<SharedNode>, ctx: AuthContext, P(id): P<String>) -> Result<Response> {
    Ok(ok(crate::service::identity::do_revoke_api_key(&ctx, &node, &id).await?))
}

// ---- vectors

async fn list_collections(State(node): State<SharedNode>, ctx: AuthContext) -> Result<Response> {
    Ok(ok(json!({"collections": crate::service::vectors::do_list_collections(&ctx, &node).await?})))
}

async fn create_collection(
    State(node): State<SharedNode>,
    ctx: AuthContext,
    Json(req): Json<crate::service::vectors::CollectionRequest>,
) -> Result<Response> {
    Ok(ok(crate::service::vectors::do_create_collection(&ctx, &node, req).await?))
}

async fn get_collection(State(node): State<SharedNode>, ctx: AuthContext, P(name): P<String>) -> Result<Response> {
    Ok(ok(crate::service::vectors::do_get_collection(&ctx, &node, &name).await?))
}

async fn delete_collection(State(node): State<SharedNode>, ctx: AuthContext, P(name): P<String>) -> Result<Response> {
    crate::service::vectors::do_delete_collection(&ctx, &node, &name).await?;
    Ok(ok(json!({"deleted": name})))
}

async fn upsert_points(
    State(node): State<SharedNode>,
    ctx: AuthContext,
    P(name): P<String>,
    Json(req): Json<crate::service::vectors::UpsertRequest>,
) -> Result<Response> {
    Ok(ok(crate::service::vectors::do_upsert_points(&ctx, &node, &name, req).await?))
}

async fn delete_points(
    State(node): State<SharedNode>,
    ctx: AuthContext,
    P(name): P<String>,
    Json(req): Json<crate::service::vectors::DeletePointsRequest>,
) -> Result<Response> {
    Ok(ok(crate::service::vectors::do_delete_points(&ctx, &node, &name, req).await?))
}

async fn get_point(
    State(node): State<SharedNode>,
    ctx: AuthContext,
    P((name, id)): P<(String, String)>,
) -> Result<Response> {
    Ok(ok(crate::service::vectors::do_get_point(&ctx, &node, &name, &id).await?))
}

async fn search(
    State(node): State<SharedNode>,
    ctx: AuthContext,
    Json(req): Json<crate::service::vectors::SearchRequest>,
) -> Result<Response> {
    Ok(ok(crate::service::vectors::do_search(&ctx, &node, req).await?))
}

async fn search_batch(
    State(node): State<SharedNode>,
    ctx: AuthContext,
    Json(req): Json<crate::service::vectors::BatchSearchRequest>,
) -> Result<Response> {
    Ok(ok(crate::service::vectors::do_search_batch(&ctx, &node, req).await?))
}
