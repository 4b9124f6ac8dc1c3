//! Finding a cluster through `cluster.seeds`, for nodes started together
//! with identical flags (a StatefulSet, a Compose file).
//!
//! ```text
//!  every round (500 ms), while this node is in no cluster:
//!    resolve every seed again ─► GET /health of each address
//!      a member answers        ─► join the cluster through it (as with --join)
//!      ≥ bootstrap_expect nodes that are in no cluster answer (this one
//!      counted), and this one comes first in their order ─► bootstrap
//!      else                    ─► wait for the next round
//! ```
//!
//! From the moment its HTTP port is bound until the API serves on it, a
//! node answers `GET /health` itself ([`Placeholder`]): `status: "starting"`
//! while it opens its store and joins or bootstraps (200, so a liveness
//! probe does not kill a node opening a large store), and while it looks
//! for its cluster `status: "discovering"` with its boot order and its
//! `bootstrap_expect`; 503 to everything else. The order is (node id when given, a
//! random boot id): every node that sees the same set picks the same first,
//! so one node bootstraps and the others join it at a later round. A node
//! only bootstraps after seeing `bootstrap_expect` waiting nodes, so with
//! `bootstrap_expect` equal to the number of nodes started together two
//! clusters cannot form. A node whose data dir is a member already never
//! gets here: it restarts as what it was. A node holding a restored backup
//! comes first in the order (its state is the new cluster's).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use synod_config::Config;
use tokio::net::TcpListener;

/// How this node came into a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Found {
    /// It comes first among `bootstrap_expect` waiting nodes: it starts the cluster.
    Bootstrap,
    /// The seed at this base URL is a member: join through it.
    Join(String),
}

/// What a node that is in no cluster yet answers on `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Waiting {
    /// `discovering`.
    status: String,
    node_id: Option<u64>,
    /// Random per start; orders the waiting nodes after their node ids.
    boot_id: u64,
    /// Its data dir holds a restored backup: it must start the cluster.
    #[serde(default)]
    restored: bool,
    bootstrap_expect: usize,
    raft_addr: String,
    http_addr: String,
    version: String,
    ready: bool,
    reason: String,
}

impl Waiting {
    fn order(&self) -> (bool, u64, u64) {
        (!self.restored, self.node_id.unwrap_or(u64::MAX), self.boot_id)
    }
}

const DISCOVERING: &str = "discovering";

/// The answer on the HTTP port before the API serves there.
pub(super) struct Placeholder {
    answer: tokio::sync::watch::Sender<serde_json::Value>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Placeholder {
    /// Starts answering on a second handle of `listener` (the same socket),
    /// so the API can take the listener over with no gap and no refused
    /// connection.
    pub(super) fn start(listener: &TcpListener, tls: Option<Arc<rustls::ServerConfig>>) -> anyhow::Result<Placeholder> {
        use std::os::fd::AsFd;
        let dup = std::net::TcpListener::from(listener.as_fd().try_clone_to_owned()?);
        dup.set_nonblocking(true)?;
        let dup = TcpListener::from_std(dup)?;
        let (answer, watch) = tokio::sync::watch::channel(starting("opening its store and starting Raft", None));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            crate::tls::serve_until(&dup, answer_router(watch), tls, async move {
                let _ = stopped.await;
            })
            .await
        });
        Ok(Placeholder { answer, stop, task })
    }

    pub(super) fn say(&self, v: serde_json::Value) {
        self.answer.send_replace(v);
    }

    /// Stops accepting; the API accepts from now on.
    pub(super) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// The placeholder's `/health` while the node is not looking for peers.
pub(super) fn starting(what: &str, node_id: Option<u64>) -> serde_json::Value {
    serde_json::json!({
        "status": "starting",
        "node_id": node_id,
        "version": env!("CARGO_PKG_VERSION"),
        "ready": false,
        "reason": format!("starting: {what}"),
    })
}

/// This node's side of the search.
pub(super) struct Seeker<'a> {
    pub(super) cfg: &'a Config,
    pub(super) client: &'a reqwest::Client,
    pub(super) node_id: Option<u64>,
    /// The data dir holds a restored backup (comes first; never joins).
    pub(super) restored: bool,
    pub(super) raft_addr: String,
    pub(super) http_addr: String,
}

impl Seeker<'_> {
    /// Looks for the cluster until it finds one to join or is the one to
    /// start it, answering other seekers through `placeholder` meanwhile.
    pub(super) async fn find(&self, placeholder: &Placeholder) -> anyhow::Result<Found> {
        let me = Waiting {
            status: DISCOVERING.into(),
            node_id: self.node_id,
            boot_id: boot_id(&self.cfg.node.data_dir)?,
            restored: self.restored,
            bootstrap_expect: self.cfg.cluster.bootstrap_expect,
            raft_addr: self.raft_addr.clone(),
            http_addr: self.http_addr.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
            ready: false,
            reason: "looking for its cluster through cluster.seeds".into(),
        };
        placeholder.say(serde_json::to_value(&me)?);
        let found = self.search(&me).await;
        let what = match &found {
            Ok(Found::Bootstrap) => "bootstrapping its cluster".to_string(),
            Ok(Found::Join(via)) => format!("joining its cluster through {via}"),
            Err(_) => "stopping".to_string(),
        };
        placeholder.say(starting(&what, self.node_id));
        found
    }

    async fn search(&self, me: &Waiting) -> anyhow::Result<Found> {
        let expect = self.cfg.cluster.bootstrap_expect;
        tracing::info!(
            seeds = ?self.cfg.cluster.seeds,
            bootstrap_expect = expect,
            boot_id = me.boot_id,
            "looking for the cluster through the seeds"
        );
        let mut round = 0u64;
        let mut warned_expect = std::collections::BTreeSet::new();
        // The waiting nodes of the last round: a node bootstraps only on
        // seeing the same set twice running, so one that restarted between
        // two rounds (another place in the order) is not counted twice.
        let mut last_round: Vec<u64> = Vec::new();
        loop {
            let answers = self.probe_all().await;
            if let Some(url) = answers.iter().find_map(|a| match a {
                Answer::Member(url) => Some(url.clone()),
                Answer::Waiting(..) => None,
            }) {
                tracing::info!(via = %url, "found a member of the cluster");
                return Ok(Found::Join(url));
            }
            // Every waiting node once, this one included (a seed may be us).
            let mut waiting: BTreeMap<u64, Waiting> = BTreeMap::new();
            waiting.insert(me.boot_id, me.clone());
            for a in answers {
                if let Answer::Waiting(w, url) = a {
                    if w.bootstrap_expect != expect {
                        if warned_expect.insert(w.boot_id) {
                            tracing::warn!(
                                peer = %url,
                                theirs = w.bootstrap_expect,
                                ours = expect,
                                "a seed waits with a different bootstrap_expect; it is not counted"
                            );
                        }
                        continue;
                    }
                    waiting.insert(w.boot_id, w);
                }
            }
            let first = waiting.values().min_by_key(|w| w.order()).map(|w| w.boot_id);
            let seen: Vec<u64> = waiting.keys().copied().collect();
            let steady = std::mem::replace(&mut last_round, seen.clone()) == seen;
            if expect > 0 && waiting.len() >= expect && first == Some(me.boot_id) && steady {
                tracing::info!(
                    waiting = waiting.len(),
                    bootstrap_expect = expect,
                    "this node comes first of the nodes waiting: bootstrapping the cluster"
                );
                return Ok(Found::Bootstrap);
            }
            if round.is_multiple_of(20) {
                tracing::info!(
                    waiting = waiting.len(),
                    bootstrap_expect = expect,
                    "no cluster among the seeds yet; waiting for {}",
                    if expect == 0 { "one to join".to_string() } else { format!("{expect} nodes") }
                );
            }
            round += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// One `GET /health` per address every seed resolves to now.
    async fn probe_all(&self) -> Vec<Answer> {
        let mut urls = Vec::new();
        for seed in &self.cfg.cluster.seeds {
            urls.extend(self.resolve(seed).await);
        }
        urls.sort();
        urls.dedup();
        let probes = urls.into_iter().map(|url| async move {
            let resp = self.client.get(format!("{url}/health")).timeout(Duration::from_secs(2)).send().await;
            let v: serde_json::Value = match resp {
                Ok(r) if r.status().is_success() => r.json().await.ok()?,
                Ok(r) => {
                    tracing::debug!(%url, status = %r.status(), "seed answered an error");
                    return None;
                }
                Err(e) => {
                    tracing::debug!(%url, error = %e, "seed not reached");
                    return None;
                }
            };
            if v["status"] == DISCOVERING {
                let w: Waiting = serde_json::from_value(v).ok()?;
                return Some(Answer::Waiting(w, url));
            }
            // A node serving the API is in a cluster (it bootstrapped or
            // joined before it served); `none` is one that was removed.
            let member = v["raft_addr"].as_str().is_some_and(|a| !a.is_empty()) && v["role"] != "none";
            member.then_some(Answer::Member(url))
        });
        futures::future::join_all(probes).await.into_iter().flatten().collect()
    }

    /// The base URLs a seed names now: one per address its host resolves
    /// to; by name when it resolves to one (so TLS can check the name).
    async fn resolve(&self, seed: &str) -> Vec<String> {
        let tls = self.cfg.security.tls.is_enabled();
        let (scheme, hostport) = match seed.split_once("://") {
            Some((scheme, rest)) => (scheme, rest.trim_end_matches('/')),
            None => (if tls { "https" } else { "http" }, seed),
        };
        let Some((host, port)) = hostport.rsplit_once(':') else { return Vec::new() };
        let Ok(port) = port.parse::<u16>() else { return Vec::new() };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<std::net::SocketAddr> = match tokio::net::lookup_host((bare, port)).await {
            Ok(a) => a.collect(),
            Err(e) => {
                tracing::debug!(%seed, error = %e, "seed does not resolve (yet)");
                return Vec::new();
            }
        };
        match addrs.len() {
            0 => Vec::new(),
            1 => vec![format!("{scheme}://{hostport}")],
            _ => addrs.iter().map(|a| format!("{scheme}://{a}")).collect(),
        }
    }
}

/// This data dir's boot id: random once, then kept (`<data-dir>/boot_id`),
/// so a node that restarts while the others look keeps its place in the
/// order.
pub(super) fn boot_id(data_dir: &std::path::Path) -> anyhow::Result<u64> {
    use anyhow::Context;
    let file = data_dir.join("boot_id");
    if let Ok(s) = std::fs::read_to_string(&file)
        && let Ok(id) = s.trim().parse::<u64>()
    {
        return Ok(id);
    }
    let id = rand::random::<u64>() >> 1;
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    std::fs::write(&file, id.to_string()).with_context(|| format!("writing {}", file.display()))?;
    Ok(id)
}

enum Answer {
    Member(String),
    Waiting(Waiting, String),
}

fn answer_router(answer: tokio::sync::watch::Receiver<serde_json::Value>) -> Router {
    let ready = answer.clone();
    Router::new()
        .route("/health", axum::routing::get(move || async move { axum::Json(answer.borrow().clone()) }))
        .route(
            "/health/ready",
            axum::routing::get(
                move || async move { (StatusCode::SERVICE_UNAVAILABLE, axum::Json(ready.borrow().clone())) },
            ),
        )
        .fallback(|| async {
            crate::error::ApiError::Unavailable(
                "this node is starting (or looking for its cluster) and serves nothing else yet".into(),
            )
            .into_response()
        })
        // No keep-alive: a peer's pooled connection would go on reaching
        // this answer after the node has found its cluster and serves the API.
        .layer(axum::middleware::map_response(|mut r: axum::response::Response| async move {
            r.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
            r
        }))
}
