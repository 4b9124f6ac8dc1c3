//! The administration commands: REST clients of a node.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::Value;

use super::*;

/// A small REST client for the admin commands.
pub struct Client {
    pub(super) base: String,
    pub(super) http: reqwest::Client,
    /// Headers sent with every call (credentials, the tenant).
    pub(super) always: Vec<(&'static str, String)>,
}

/// Where `synod login` keeps the token: `$SYNOD_TOKEN_FILE`, else
/// `~/.config/synod/token`.
pub fn token_file() -> PathBuf {
    if let Some(p) = std::env::var_os("SYNOD_TOKEN_FILE") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".config").join("synod").join("token")
}

impl Client {
    fn with_ca(base: &str, ca: Option<&std::path::Path>) -> anyhow::Result<Client> {
        let http = crate::tls::http_client(ca, std::time::Duration::from_secs(30))?;
        Ok(Client { base: base.trim_end_matches('/').to_string(), http, always: Vec::new() })
    }

    /// A client of `target` with its credentials: --api-key, else --token,
    /// else the token `synod login` saved (if any).
    pub fn of(target: &Target) -> anyhow::Result<Client> {
        let mut c = Client::with_ca(&target.addr, target.ca_cert.as_deref())?;
        if let Some(k) = &target.api_key {
            c.always.push(("x-api-key", k.clone()));
        } else if let Some(t) = target.token.clone().or_else(|| std::fs::read_to_string(token_file()).ok()) {
            c.always.push(("authorization", format!("Bearer {}", t.trim())));
        }
        Ok(c)
    }

    /// The tenant named with --tenant, or `own` (the caller's).
    pub fn tenant_name(&self) -> String {
        self.always
            .iter()
            .find(|(k, _)| *k == crate::auth::TENANT_HEADER)
            .map_or("own", |(_, t)| t.as_str())
            .to_string()
    }

    /// Acts in `tenant` on every call.
    pub fn with_tenant(mut self, tenant: Option<String>) -> Client {
        if let Some(t) = tenant {
            self.always.push((crate::auth::TENANT_HEADER, t));
        }
        self
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, String)],
    ) -> anyhow::Result<(Value, Option<String>)> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        for (k, v) in self.always.iter().chain(headers) {
            req = req.header(*k, v);
        }
        let resp = req.send().await.with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_string);
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let code = value["error"]["code"].as_str().unwrap_or("error");
            let message = value["error"]["message"].as_str().unwrap_or("");
            bail!("{status} {code}: {message}");
        }
        Ok((value, etag))
    }
}

fn parse_labels(labels: Vec<String>) -> anyhow::Result<BTreeMap<String, String>> {
    labels
        .into_iter()
        .map(|l| {
            let (k, v) = l.split_once('=').with_context(|| format!("label {l:?}: expected KEY=VALUE"))?;
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

pub(super) fn print(v: &Value) {
    super::output::print(v);
}

/// Everything but unreserved characters, `.` included (a name `..` must
/// not become a step up the path).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');

/// `s` as one URL path segment (`s:a/b` is `s%3Aa%2Fb`, one segment the
/// server decodes back), or as a query value.
pub fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

pub async fn run_admin(cmd: Command) -> anyhow::Result<()> {
    use reqwest::Method;
    match cmd {
        Command::Cluster(ClusterArgs { target, cmd }) => {
            let c = Client::of(&target)?;
            let (v, _) = match cmd {
                ClusterCmd::Status => c.call(Method::GET, "/cluster/status", None, &[]).await?,
                ClusterCmd::Digest => c.call(Method::GET, "/debug/digest", None, &[]).await?,
                ClusterCmd::History { since_ms } => {
                    c.call(Method::GET, &format!("/metrics/history?since_ms={since_ms}"), None, &[]).await?
                }
                ClusterCmd::AddLearner { id, raft_addr, http_addr, grpc_addr } => {
                    let body = serde_json::json!({"id": id, "raft_addr": raft_addr, "http_addr": http_addr, "grpc_addr": grpc_addr});
                    c.call(Method::POST, "/cluster/add-learner", Some(body), &[]).await?
                }
                ClusterCmd::Promote { id } => {
                    c.call(Method::POST, &format!("/cluster/nodes/{id}/promote"), None, &[]).await?
                }
                ClusterCmd::Demote { id, force } => {
                    c.call(Method::POST, &format!("/cluster/nodes/{id}/demote?force={force}"), None, &[]).await?
                }
                ClusterCmd::Remove { id, force } => {
                    c.call(Method::POST, &format!("/cluster/nodes/{id}/remove?force={force}"), None, &[]).await?
                }
                ClusterCmd::TransferLeader { id } => {
                    c.call(Method::POST, &format!("/cluster/nodes/{id}/transfer-leader"), None, &[]).await?
                }
                ClusterCmd::Drain { id } => {
                    c.call(Method::POST, &format!("/cluster/nodes/{id}/drain"), None, &[]).await?
                }
                ClusterCmd::Undrain { id } => {
                    c.call(Method::POST, &format!("/cluster/nodes/{id}/undrain"), None, &[]).await?
                }
            };
            print(&v);
        }
        Command::Registry(RegistryArgs { target, consistency }) => {
            let c = Client::of(&target)?;
            let (v, _) =
                c.call(Method::GET, &format!("/agents/registry?consistency={}", seg(&consistency)), None, &[]).await?;
            print(&v);
        }
        Command::Node(NodeArgs { target, cmd }) => {
            let c = Client::of(&target)?;
            let (v, etag) = match cmd {
                NodeCmd::Get { id } => c.call(Method::GET, &format!("/cluster/nodes/{id}"), None, &[]).await?,
                NodeCmd::Labels { id, labels, if_match } => {
                    let map = parse_labels(labels)?;
                    let headers: Vec<(&str, String)> =
                        if_match.map(|v| ("if-match", format!("\"{v}\""))).into_iter().collect();
                    c.call(
                        Method::PUT,
                        &format!("/cluster/nodes/{id}/labels"),
                        Some(serde_json::to_value(map)?),
                        &headers,
                    )
                    .await?
                }
            };
            print(&v);
            if let Some(e) = etag {
                eprintln!("ETag: {e}");
            }
        }
        Command::Task(TaskArgs { target, tenant, cmd }) => {
            let c = Client::of(&target)?.with_tenant(tenant);
            let (v, _) = match cmd {
                TaskCmd::Submit {
                    task_type,
                    file: Some(file),
                    batch,
                    concurrency,
                    progress_file,
                    restart,
                    key_prefix,
                    ..
                } => {
                    debug_assert!(task_type.is_none(), "clap keeps TYPE and --file apart");
                    let target = format!("tasks-tenant-{}", c.tenant_name());
                    let prefix = match key_prefix {
                        Some(p) => p,
                        None => super::bulk::task_key_prefix(&file)?,
                    };
                    let job = super::bulk::Job {
                        path: "/tasks/submit".into(),
                        field: "tasks",
                        progress_file: progress_file.unwrap_or_else(|| super::bulk::progress_file_for(&file, &target)),
                        target,
                        incarnation: 0,
                        noun: "tasks",
                        batch: batch.clamp(1, crate::service::tasks::MAX_BATCH),
                        max_bytes: usize::MAX,
                        concurrency,
                        restart,
                    };
                    let mut duplicates = 0u64;
                    let sent = super::bulk::run(
                        &c,
                        job,
                        super::bulk::Source::JsonLines(file),
                        |line, v| super::bulk::task(&prefix, line, v),
                        |line, answer| {
                            duplicates += u64::from(answer["duplicate"].as_bool().unwrap_or(false));
                            let mut out = serde_json::json!({"line": line});
                            if let (Some(o), Some(a)) = (out.as_object_mut(), answer.as_object()) {
                                o.extend(a.clone());
                            }
                            super::output::out(&out.to_string());
                        },
                    )
                    .await?;
                    eprintln!("{sent} tasks sent, {duplicates} of them already submitted before (same key)");
                    return Ok(());
                }
                TaskCmd::Submit {
                    task_type,
                    payload,
                    priority,
                    idempotency_key,
                    max_attempts,
                    timeout_ms,
                    labels,
                    wait,
                    ..
                } => {
                    let task_type = task_type.context("a task TYPE, or --file")?;
                    let payload: Value = serde_json::from_str(&payload).context("--payload is not JSON")?;
                    let mut body = serde_json::json!({"type": task_type, "payload": payload});
                    if !labels.is_empty() {
                        body["labels"] = serde_json::to_value(parse_labels(labels)?)?;
                    }
                    for (k, v) in [
                        ("priority", priority.map(Value::from)),
                        ("idempotency_key", idempotency_key.map(Value::from)),
                        ("max_attempts", max_attempts.map(Value::from)),
                        ("timeout_ms", timeout_ms.map(Value::from)),
                    ] {
                        if let Some(v) = v {
                            body[k] = v;
                        }
                    }
                    let (submitted, _) = c.call(Method::POST, "/tasks/submit", Some(body), &[]).await?;
                    match wait {
                        None => (submitted, None),
                        Some(w) => {
                            let id = submitted["id"].as_str().context("submit answer without id")?.to_string();
                            c.call(Method::GET, &format!("/tasks/{}/result?wait={w}", seg(&id)), None, &[]).await?
                        }
                    }
                }
                TaskCmd::Status { id } => {
                    c.call(Method::GET, &format!("/tasks/{}/status", seg(&id)), None, &[]).await?
                }
                TaskCmd::Result { id, wait } => {
                    c.call(Method::GET, &format!("/tasks/{}/result?wait={wait}", seg(&id)), None, &[]).await?
                }
                TaskCmd::List { state, task_type, limit, cursor } => {
                    let mut q = Vec::new();
                    for (k, v) in [
                        ("state", state),
                        ("type", task_type),
                        ("limit", limit.map(|l| l.to_string())),
                        ("cursor", cursor),
                    ] {
                        if let Some(v) = v {
                            q.push(format!("{k}={}", seg(&v)));
                        }
                    }
                    c.call(Method::GET, &format!("/tasks?{}", q.join("&")), None, &[]).await?
                }
                TaskCmd::Cancel { id } => {
                    c.call(Method::POST, &format!("/tasks/{}/cancel", seg(&id)), None, &[]).await?
                }
            };
            print(&v);
        }
        Command::Login(LoginArgs { target, username, password }) => {
            let password = match password {
                Some(p) => p,
                None => {
                    eprint!("password for {username}: ");
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line).context("reading the password")?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            let c = Client::with_ca(&target.addr, target.ca_cert.as_deref())?;
            let body = serde_json::json!({"grant_type": "password", "username": username, "password": password});
            let (v, _) = c.call(Method::POST, "/login", Some(body), &[]).await?;
            let token = v["access_token"].as_str().context("login answer without access_token")?;
            let path = token_file();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let _ = std::fs::remove_file(&path);
            crate::service::identity::write_private(&path, token.as_bytes())
                .with_context(|| format!("saving the token to {}", path.display()))?;
            super::output::out(&format!(
                "logged in as {username}; token saved to {} (valid {} s)",
                path.display(),
                v["expires_in"]
            ));
        }
        Command::User(UserArgs { target, cmd }) => {
            let c = Client::of(&target)?;
            let (v, _) = match cmd {
                UserCmd::List => c.call(Method::GET, "/users", None, &[]).await?,
                UserCmd::Create { username, password, tenant, role } => {
                    let body =
                        serde_json::json!({"username": username, "password": password, "tenant": tenant, "role": role});
                    c.call(Method::POST, "/users", Some(body), &[]).await?
                }
                UserCmd::Update { username, password, role, tenant } => {
                    let body = serde_json::json!({"password": password, "role": role, "tenant": tenant});
                    c.call(Method::PUT, &format!("/users/{}", seg(&username)), Some(body), &[]).await?
                }
                UserCmd::Delete { username } => {
                    c.call(Method::DELETE, &format!("/users/{}", seg(&username)), None, &[]).await?
                }
            };
            print(&v);
        }
        Command::Plugin(PluginArgs { target, cmd }) => {
            let c = Client::of(&target)?;
            let (v, _) = match cmd {
                PluginCmd::List => c.call(Method::GET, "/plugins/list", None, &[]).await?,
                PluginCmd::Info { name } => c.call(Method::GET, &format!("/plugins/{}", seg(&name)), None, &[]).await?,
                PluginCmd::Load {
                    file,
                    subprocess,
                    args,
                    workers,
                    timeout_ms,
                    name,
                    version,
                    description,
                    manifest,
                } => {
                    use base64::Engine;
                    let mut m = match manifest {
                        Some(path) => {
                            let text = std::fs::read_to_string(&path)
                                .with_context(|| format!("--manifest: read {}", path.display()))?;
                            serde_json::from_str(&text).context("--manifest is not JSON")?
                        }
                        None => serde_json::json!({}),
                    };
                    m["name"] = name.into();
                    m["version"] = version.into();
                    if !description.is_empty() {
                        m["description"] = description.into();
                    }
                    if let Some(ms) = timeout_ms {
                        m["timeout_ms"] = ms.into();
                    }
                    let body = match (file, subprocess) {
                        (_, Some(command)) => {
                            m["kind"] = "subprocess".into();
                            m["command"] = command.into();
                            if !args.is_empty() {
                                m["args"] = args.into();
                            }
                            if let Some(n) = workers {
                                m["workers"] = n.into();
                            }
                            serde_json::json!({"manifest": m})
                        }
                        (Some(file), None) => {
                            let module = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                            serde_json::json!({
                                "manifest": m,
                                "module_base64": base64::engine::general_purpose::STANDARD.encode(module),
                            })
                        }
                        (None, None) => anyhow::bail!("give a WASM module file or --subprocess COMMAND"),
                    };
                    c.call(Method::POST, "/plugins/load", Some(body), &[]).await?
                }
                PluginCmd::Unload { name } => {
                    c.call(Method::POST, &format!("/plugins/{}/unload", seg(&name)), None, &[]).await?
                }
            };
            print(&v);
        }
        Command::Tenant(TenantArgs { target, cmd }) => {
            let c = Client::of(&target)?;
            let (v, _) = match cmd {
                TenantCmd::List => c.call(Method::GET, "/tenants", None, &[]).await?,
                TenantCmd::Create { name } => {
                    c.call(Method::POST, "/tenants", Some(serde_json::json!({"name": name})), &[]).await?
                }
            };
            print(&v);
        }
        Command::Apikey(ApiKeyArgs { target, cmd }) => {
            let c = Client::of(&target)?;
            let (v, _) = match cmd {
                ApiKeyCmd::List => c.call(Method::GET, "/apikeys", None, &[]).await?,
                ApiKeyCmd::Create { name, role, expires_in } => {
                    let body = serde_json::json!({"name": name, "role": role, "expires_in": expires_in});
                    c.call(Method::POST, "/apikeys", Some(body), &[]).await?
                }
                ApiKeyCmd::Revoke { id } => {
                    c.call(Method::DELETE, &format!("/apikeys/{}", seg(&id)), None, &[]).await?
                }
            };
            print(&v);
        }
        Command::Vector(VectorArgs { target, tenant, cmd }) => {
            let c = Client::of(&target)?.with_tenant(tenant);
            // JSON inline, or `@path` for a file.
            let json = |what: &str, s: &str| -> anyhow::Result<Value> {
                let text = match s.strip_prefix('@') {
                    Some(path) => std::fs::read_to_string(path).with_context(|| format!("--{what}: read {path}"))?,
                    None => s.to_string(),
                };
                serde_json::from_str(&text).with_context(|| format!("--{what} is not JSON"))
            };
            let (v, _) = match cmd {
                VectorCmd::Create {
                    name,
                    dimension,
                    metric,
                    vectorizer,
                    m,
                    ef_construction,
                    ef,
                    quantization,
                    index,
                    backend,
                } => {
                    // The HNSW flags go along with --backend too: the server
                    // refuses the pair with a clear error rather than the CLI
                    // dropping them without a word.
                    let mut body = serde_json::json!({"name": name, "dimension": dimension, "metric": metric,
                        "vectorizer": vectorizer, "index": index,
                        "hnsw": {"m": m, "ef_construction": ef_construction, "ef": ef, "quantization": quantization}});
                    if let Some(provider) = backend {
                        body["backend"] = serde_json::json!({ "provider": provider });
                    }
                    c.call(Method::POST, "/collections", Some(body), &[]).await?
                }
                VectorCmd::List => c.call(Method::GET, "/collections", None, &[]).await?,
                VectorCmd::Get { name } => {
                    c.call(Method::GET, &format!("/collections/{}", seg(&name)), None, &[]).await?
                }
                VectorCmd::Delete { name } => {
                    c.call(Method::DELETE, &format!("/collections/{}", seg(&name)), None, &[]).await?
                }
                VectorCmd::Upsert { name, points } => {
                    let body = serde_json::json!({"points": json("points", &points)?});
                    c.call(Method::POST, &super::bulk::points_path(&name), Some(body), &[]).await?
                }
                VectorCmd::Import {
                    name,
                    file,
                    ids,
                    id_start,
                    batch,
                    max_request_bytes,
                    concurrency,
                    progress_file,
                    restart,
                } => {
                    let source = if file.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
                        super::bulk::Source::Npy { file: file.clone(), ids, id_start }
                    } else if ids.is_some() {
                        bail!("--ids is for a .npy file; JSON Lines carry their ids");
                    } else {
                        super::bulk::Source::JsonLines(file.clone())
                    };
                    // The collection first: a typo fails before any progress
                    // file, and its creation time tells one life of the name
                    // from the next.
                    let (coll, _) = c.call(Method::GET, &format!("/collections/{}", seg(&name)), None, &[]).await?;
                    let target = format!("collection-{name}-tenant-{}", c.tenant_name());
                    let job = super::bulk::Job {
                        path: super::bulk::points_path(&name),
                        field: "points",
                        progress_file: progress_file.unwrap_or_else(|| super::bulk::progress_file_for(&file, &target)),
                        target,
                        incarnation: coll["created_at_ms"].as_u64().unwrap_or(0),
                        noun: "points",
                        batch: batch.max(1),
                        max_bytes: max_request_bytes,
                        concurrency,
                        restart,
                    };
                    let sent = super::bulk::run(&c, job, source, super::bulk::point, |_, _| {}).await?;
                    let (mut v, _) = c.call(Method::GET, &format!("/collections/{}", seg(&name)), None, &[]).await?;
                    if let Some(o) = v.as_object_mut() {
                        o.remove("index_stats");
                        o.insert("sent".into(), sent.into());
                    }
                    (v, None)
                }
                VectorCmd::DeletePoints { name, ids } => {
                    let body = serde_json::json!({"ids": json("ids", &ids)?});
                    c.call(Method::DELETE, &super::bulk::points_path(&name), Some(body), &[]).await?
                }
                VectorCmd::GetPoint { name, id } => {
                    c.call(Method::GET, &format!("/collections/{}/points/{}", seg(&name), seg(&id)), None, &[]).await?
                }
                VectorCmd::SearchBatch { name, queries, consistency } => {
                    let body = serde_json::json!({"collection": name, "queries": json("queries", &queries)?,
                        "consistency": consistency});
                    c.call(Method::POST, "/vector/search/batch", Some(body), &[]).await?
                }
                VectorCmd::Search { name, vector, text, top_k, filter, ef, consistency } => {
                    let mut body = serde_json::json!({"collection": name, "top_k": top_k});
                    if let Some(ef) = ef {
                        body["ef"] = ef.into();
                    }
                    if let Some(v) = vector {
                        body["vector"] = json("vector", &v)?;
                    }
                    if let Some(t) = text {
                        body["text"] = t.into();
                    }
                    if let Some(f) = filter {
                        body["filter"] = json("filter", &f)?;
                    }
                    if let Some(cs) = consistency {
                        body["consistency"] = cs.into();
                    }
                    c.call(Method::POST, "/vector/search", Some(body), &[]).await?
                }
            };
            print(&v);
        }
        Command::Certs(CertsCmd::Init { dir, nodes, hosts }) => {
            for path in crate::tls::certs_init(&dir, nodes, &hosts)? {
                super::output::out(&path.display().to_string());
            }
        }
        Command::Model(ModelCmd::Status { target }) => {
            let (v, _) = Client::of(&target)?.call(Method::GET, "/models", None, &[]).await?;
            print(&v);
        }
        Command::External(ExternalArgs { target, cmd }) => {
            let c = Client::of(&target)?;
            let (v, _) = match cmd {
                ExternalCmd::Ai { provider, operation, model, input, parameters, raw, idempotency_key } => {
                    let input = match input.strip_prefix('@') {
                        Some(path) => {
                            let text =
                                std::fs::read_to_string(path).with_context(|| format!("--input: read {path}"))?;
                            serde_json::from_str(&text).with_context(|| format!("--input: {path} is not JSON"))?
                        }
                        // JSON if it parses, else the text itself.
                        None => serde_json::from_str(&input).unwrap_or(Value::String(input)),
                    };
                    let parameters: Value = match parameters {
                        Some(p) => serde_json::from_str(&p).context("--parameters is not JSON")?,
                        None => serde_json::json!({}),
                    };
                    let body = serde_json::json!({"provider": provider, "operation": operation, "model": model,
                        "input": input, "parameters": parameters, "raw": raw, "idempotency_key": idempotency_key});
                    c.call(Method::POST, "/external/ai", Some(body), &[]).await?
                }
                ExternalCmd::Providers => c.call(Method::GET, "/external/providers", None, &[]).await?,
            };
            print(&v);
        }
        Command::Health(HealthArgs { target, live }) => {
            let client = Client::of(&target)?;
            let url = format!("{}{}", client.base, if live { "/health" } else { "/health/ready" });
            let resp = client.http.get(&url).send().await.with_context(|| format!("cannot reach {url}"))?;
            let status = resp.status();
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            print(&v);
            if !status.is_success() {
                bail!("{url}: {status}: {}", v["reason"].as_str().unwrap_or("not ready"));
            }
        }
        Command::Backup(BackupArgs { target, file }) => super::backup::backup(&Client::of(&target)?, &file).await?,
        Command::Whoami(WhoamiArgs { target }) => {
            let (v, _) = Client::of(&target)?.call(Method::GET, "/whoami", None, &[]).await?;
            print(&v);
        }
        Command::Audit(AuditArgs { target, limit, after }) => {
            let path = format!("/audit?limit={limit}&after={after}");
            let (v, _) = Client::of(&target)?.call(Method::GET, &path, None, &[]).await?;
            print(&v);
        }
        Command::Embed(EmbedArgs { target, model, texts }) => {
            let body = serde_json::json!({"model": model, "input": texts});
            let (v, _) = Client::of(&target)?.call(Method::POST, "/v1/embeddings", Some(body), &[]).await?;
            print(&v);
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "synod", &mut script);
            super::output::out(String::from_utf8_lossy(&script).trim_end_matches('\n'));
        }
        Command::Serve(_) | Command::Config(_) | Command::Model(_) | Command::Restore { .. } => {
            unreachable!("dispatched by main")
        }
    }
    Ok(())
}
