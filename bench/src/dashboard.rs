//! `synod-bench dashboard`: the server time of every dashboard page on a
//! node that holds many tasks and points. Each page is timed as the
//! requests the page makes (api/dashboard/app.js), one after another, so a
//! page's time is the sum of its requests' times.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::percentile;

/// One request a page makes: method, path, body.
type Request = (&'static str, String, Option<Value>);

pub struct Params {
    pub tasks: usize,
    pub points: usize,
    pub dim: usize,
    pub rounds: usize,
    pub dir: Option<PathBuf>,
}

/// A deterministic pseudo-random vector (no rand dependency).
/// Components with four decimals, so a point's JSON stays short.
pub(crate) fn vector(i: usize, dim: usize) -> Vec<f64> {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..dim)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 20_000) as f64 / 10_000.0 - 1.0
        })
        .collect()
}

pub(crate) async fn must(r: reqwest::Result<reqwest::Response>, what: &str) -> anyhow::Result<Value> {
    let r = r?;
    let code = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(code.is_success(), "{what}: {code} {v}");
    Ok(v)
}

pub async fn run(p: Params) -> anyhow::Result<()> {
    let (root, _guard) = crate::work_dir(p.dir)?;
    let mut c = crate::local_cluster(&root)?;
    c.add_node(None, &["--set".into(), "observability.history_interval=1s".into()])?;
    c.wait_ready(0, Duration::from_secs(60)).await?;
    let base = c.nodes[0].url();
    let http = c.client_builder()?.timeout(Duration::from_secs(120)).build()?;

    load(&c, &http, &base, p.tasks, p.points, p.dim).await?;

    let first = must(http.get(format!("{base}/tasks?limit=1")).send().await, "list").await?;
    let task_id = first["tasks"][0]["id"].as_str().unwrap_or_default().to_owned();
    let query = json!({"collection": "docs", "vector": vector(7, p.dim), "top_k": 10});
    let pages: Vec<(&str, Vec<Request>)> = vec![
        (
            "overview",
            vec![
                ("GET", "/cluster/status".into(), None),
                ("GET", "/cluster/nodes?consistency=leader".into(), None),
                ("GET", "/metrics/history".into(), None),
            ],
        ),
        ("nodes", vec![("GET", "/cluster/nodes?consistency=leader".into(), None)]),
        ("tasks", vec![("GET", "/tasks?limit=25".into(), None), ("GET", "/plugins/list".into(), None)]),
        ("tasks, state=queued (none)", vec![("GET", "/tasks?limit=25&state=queued".into(), None)]),
        ("tasks, state=succeeded", vec![("GET", "/tasks?limit=25&state=succeeded".into(), None)]),
        ("tasks, state=failed (none)", vec![("GET", "/tasks?limit=25&state=failed".into(), None)]),
        ("tasks, type=echo", vec![("GET", "/tasks?limit=25&type=echo".into(), None)]),
        (
            "task detail",
            vec![("GET", format!("/tasks/{task_id}/status"), None), ("GET", format!("/tasks/{task_id}/result"), None)],
        ),
        ("plugins", vec![("GET", "/plugins/list".into(), None)]),
        ("collections", vec![("GET", "/collections".into(), None)]),
        ("collections, search", vec![("POST", "/vector/search".into(), Some(query))]),
        (
            "access",
            vec![("GET", "/apikeys".into(), None), ("GET", "/users".into(), None), ("GET", "/tenants".into(), None)],
        ),
        ("audit", vec![("GET", "/audit?limit=200".into(), None)]),
    ];
    println!(
        "dashboard page times on one node: {} tasks, {} points of {} dims, {} rounds",
        p.tasks, p.points, p.dim, p.rounds
    );
    println!("{:<28} {:>9} {:>9}  (ms: the page's requests one after another)", "page", "p50", "max");
    for (page, calls) in &pages {
        let mut times = Vec::new();
        for _ in 0..p.rounds {
            let t0 = Instant::now();
            for (method, path, body) in calls {
                let mut rb = http.request(method.parse()?, format!("{base}{path}"));
                if let Some(b) = body {
                    rb = rb.json(b);
                }
                must(rb.send().await, path).await?;
            }
            times.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!("{page:<28} {:>9.2} {:>9.2}", percentile(&times, 0.5), times[times.len() - 1]);
    }
    Ok(())
}

/// Loads one node (`base`) with `tasks` echo tasks and `points` points of
/// `dim` dimensions in collection `docs`, and waits until it is at rest:
/// every task ended and every point in a graph.
pub(crate) async fn load(
    c: &synod_testkit::LocalCluster,
    http: &reqwest::Client,
    base: &str,
    tasks: usize,
    points: usize,
    dim: usize,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut done = 0;
    while done < tasks {
        let n = (tasks - done).min(1000);
        let batch: Vec<Value> = (done..done + n).map(|i| json!({"type": "echo", "payload": {"i": i}})).collect();
        must(http.post(format!("{base}/tasks/submit")).json(&json!({ "tasks": batch })).send().await, "submit").await?;
        done += n;
    }
    eprintln!("{} tasks submitted in {:.1} s", tasks, started.elapsed().as_secs_f64());
    let started = Instant::now();
    must(
        http.post(format!("{base}/collections")).json(&json!({"name": "docs", "dimension": dim})).send().await,
        "collection",
    )
    .await?;
    let per_request = (1_500_000 / (dim * 12 + 64)).clamp(1, 1000);
    let mut done = 0;
    while done < points {
        let n = (points - done).min(per_request);
        let points: Vec<Value> = (done..done + n)
            .map(|i| json!({"id": i, "vector": vector(i, dim), "metadata": {"group": i % 100}}))
            .collect();
        must(
            http.post(format!("{base}/collections/docs/points")).json(&json!({ "points": points })).send().await,
            "upsert",
        )
        .await?;
        done += n;
    }
    eprintln!("{} points of {} dimensions stored in {:.1} s", points, dim, started.elapsed().as_secs_f64());
    // Timed at rest: every task ended and every point in a graph, as a
    // node holding this much usually is.
    let started = Instant::now();
    c.wait_for("the tasks to end and the index to be built", Duration::from_secs(1800), || {
        let (http, base) = (http.clone(), base.to_string());
        async move {
            let pending = crate::cluster::count_states(&http, &base, &["queued", "assigned", "running"]).await?;
            let coll: Value = http.get(format!("{base}/collections/docs")).send().await.ok()?.json().await.ok()?;
            (pending == 0 && coll["index_stats"]["growing"] == 0).then_some(())
        }
    })
    .await?;
    eprintln!("at rest after {:.1} s more", started.elapsed().as_secs_f64());
    Ok(())
}
