//! `synod-bench scaling`: throughput and latency against load and size,
//! written as a CSV and drawn as SVG charts (issue 19, part 4).
//!
//! - clients: committed label writes and task submits through the leader
//!   at each client count, on a cluster of each size;
//! - stored tasks: task submits at 64 clients as queued tasks accumulate
//!   (`sleep` tasks of 10 minutes: the workers hold a few, the rest wait);
//! - stored points: searches at 8 clients (recall aside: random unit
//!   vectors, so no run is easier than another) and upserts as the
//!   collection grows, on one node, each step measured once every point
//!   is in the graph.
//!
//! Every point is one run of [`crate::cluster::load`] for `--seconds`: the
//! rate of successful operations and the p50 and p99 of their latencies.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use synod_testkit::LocalCluster;

use crate::cluster::{load, percentile};

pub struct Params {
    pub out: PathBuf,
    pub clients: Vec<usize>,
    pub nodes: Vec<usize>,
    pub seconds: u64,
    /// Queued tasks at the last step of the stored-tasks sweep (0: skip it).
    pub tasks: u64,
    /// Points at the last step of the stored-points sweep (0: skip it).
    pub points: u64,
    /// Steps of each stored-data sweep after the empty one.
    pub steps: u64,
    pub dim: usize,
    pub dir: Option<PathBuf>,
    /// Draw the charts of this CSV (one this command wrote); measure nothing.
    pub from: Option<PathBuf>,
}

/// One measured point of one series.
struct Row {
    /// clients, stored tasks or stored points: the chart it belongs to.
    axis: &'static str,
    series: String,
    x: f64,
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

impl Row {
    fn new(axis: &'static str, series: String, x: f64, (lat, errors, secs): (Vec<f64>, u64, f64)) -> Row {
        let row = Row {
            axis,
            series,
            x,
            per_s: lat.len() as f64 / secs,
            p50_ms: percentile(&lat, 0.5),
            p99_ms: percentile(&lat, 0.99),
            errors,
        };
        println!(
            "scaling: {}: {} at {}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
            row.axis, row.series, row.x, row.per_s, row.p50_ms, row.p99_ms, row.errors
        );
        row
    }
}

/// A cluster of `n` voters (`cluster.voters`), node 0 bootstrapping;
/// `extra` for every node.
async fn cluster(root: &Path, n: usize, extra: &[String]) -> anyhow::Result<LocalCluster> {
    let mut extra = extra.to_vec();
    extra.extend(["--set".to_string(), format!("cluster.voters={n}")]);
    let extra = &extra[..];
    let mut c = crate::local_cluster(root)?;
    c.add_node(None, extra)?;
    c.wait_ready(0, Duration::from_secs(30)).await?;
    for _ in 1..n {
        c.add_node(Some(0), extra)?;
    }
    c.wait_voters(0, n, Duration::from_secs(60)).await?;
    for i in 0..n {
        c.wait_ready(i, Duration::from_secs(30)).await?;
    }
    Ok(c)
}

fn http(c: &LocalCluster, clients: usize) -> anyhow::Result<reqwest::Client> {
    Ok(c.client_builder()?.pool_max_idle_per_host(clients.max(1)).timeout(Duration::from_secs(30)).build()?)
}

async fn writes(c: &LocalCluster, leader: usize, n: usize, seconds: u64) -> anyhow::Result<(Vec<f64>, u64, f64)> {
    let record = c.node_id(leader).await?;
    let (http, url) = (http(c, n)?, format!("{}/cluster/nodes/{record}/labels", c.nodes[leader].url()));
    Ok(load(n, seconds, move |client, i| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let body = json!({"client": client.to_string(), "seq": i.to_string()});
            matches!(http.put(&url).json(&body).send().await, Ok(r) if r.status().is_success())
        }
    })
    .await)
}

/// A task that stays queued: the workers hold a few for 10 minutes.
fn parked() -> Value {
    json!({"type": "sleep", "payload": {"ms": 600_000}})
}

async fn submits(
    c: &LocalCluster,
    leader: usize,
    n: usize,
    seconds: u64,
    task: Value,
) -> anyhow::Result<(Vec<f64>, u64, f64)> {
    let (http, url) = (http(c, n)?, format!("{}/tasks/submit", c.nodes[leader].url()));
    Ok(load(n, seconds, move |_, _| {
        let (http, url, body) = (http.clone(), url.clone(), task.clone());
        async move { matches!(http.post(&url).json(&body).send().await, Ok(r) if r.status().is_success()) }
    })
    .await)
}

pub async fn run(p: Params) -> anyhow::Result<()> {
    std::fs::create_dir_all(&p.out)?;
    let rows = match &p.from {
        Some(csv) => read_csv(csv)?,
        None => measure(&p).await?,
    };
    if p.from.is_none() {
        let csv = p.out.join("scaling.csv");
        let mut text = String::from("axis,series,x,per_s,p50_ms,p99_ms,errors\n");
        for r in &rows {
            writeln!(
                text,
                "{},\"{}\",{},{:.1},{:.3},{:.3},{}",
                r.axis,
                r.series.replace('"', "\"\""),
                r.x,
                r.per_s,
                r.p50_ms,
                r.p99_ms,
                r.errors
            )?;
        }
        std::fs::write(&csv, text)?;
        println!("scaling: wrote {}", csv.display());
    }
    for (axis, file, log_x) in [
        ("clients", "clients.svg", true),
        ("stored tasks", "stored-tasks.svg", false),
        ("stored points", "stored-points.svg", false),
    ] {
        let mine: Vec<&Row> = rows.iter().filter(|r| r.axis == axis).collect();
        if mine.is_empty() {
            continue;
        }
        let path = p.out.join(file);
        std::fs::write(&path, chart(axis, &mine, log_x))?;
        println!("scaling: wrote {}", path.display());
    }
    Ok(())
}

/// The fields of a CSV line; a field in double quotes may hold commas
/// and doubled quotes.
fn csv_fields(line: &str) -> Vec<String> {
    let (mut out, mut field, mut quoted, mut chars) = (Vec::new(), String::new(), false, line.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    out.push(field);
    out
}

/// The rows of a CSV [`run`] wrote.
fn read_csv(path: &Path) -> anyhow::Result<Vec<Row>> {
    let text = std::fs::read_to_string(path)?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f = csv_fields(line);
        let f: Vec<&str> = f.iter().map(String::as_str).collect();
        let [axis, series, x, per_s, p50, p99, errors] = f[..] else {
            anyhow::bail!("{}:{}: not 7 fields", path.display(), i + 1);
        };
        let axis = match axis {
            "clients" => "clients",
            "stored tasks" => "stored tasks",
            "stored points" => "stored points",
            other => anyhow::bail!("{}:{}: unknown axis {other:?}", path.display(), i + 1),
        };
        let num = |s: &str| s.parse::<f64>().map_err(|e| anyhow::anyhow!("{}:{}: {s:?}: {e}", path.display(), i + 1));
        rows.push(Row {
            axis,
            series: series.to_string(),
            x: num(x)?,
            per_s: num(per_s)?,
            p50_ms: num(p50)?,
            p99_ms: num(p99)?,
            errors: num(errors)? as u64,
        });
    }
    Ok(rows)
}

async fn measure(p: &Params) -> anyhow::Result<Vec<Row>> {
    let (root, _guard) = crate::work_dir(p.dir.clone())?;
    let mut rows = Vec::new();

    // 1. Clients, at each cluster size.
    for &n in &p.nodes {
        let c = cluster(&root.join(format!("clients-{n}")), n, &[]).await?;
        let leader = c.wait_for("a leader", Duration::from_secs(10), || c.leader_index(0)).await?;
        for &k in &p.clients {
            rows.push(Row::new(
                "clients",
                format!("writes, {n} nodes"),
                k as f64,
                writes(&c, leader, k, p.seconds).await?,
            ));
            let echo = json!({"type": "echo", "payload": {"n": 1}});
            let m = submits(&c, leader, k, p.seconds, echo).await?;
            rows.push(Row::new("clients", format!("task submits, {n} nodes"), k as f64, m));
        }
    }

    // 2. Stored tasks: 3 nodes; queued tasks of a type no worker takes.
    if p.tasks > 0 {
        // The tenant's queue may hold more than the default million.
        let quota = ["--set".to_string(), "security.tenant_max_queued_tasks=1000000000".to_string()];
        let c = cluster(&root.join("tasks"), 3, &quota).await?;
        let leader = c.wait_for("a leader", Duration::from_secs(10), || c.leader_index(0)).await?;
        let (http, base) = (http(&c, 64)?, c.nodes[leader].url());
        let mut stored = 0u64;
        for step in 0..=p.steps {
            let target = p.tasks * step / p.steps.max(1);
            stored += fill_tasks(&http, &base, target.saturating_sub(stored)).await?;
            // Measured: 64 clients submitting; what they add counts from here on.
            let m = submits(&c, leader, 64, p.seconds, parked()).await?;
            let added = m.0.len() as u64;
            rows.push(Row::new("stored tasks", "task submits, 64 clients".into(), stored as f64, m));
            stored += added;
        }
    }

    // 3. Stored points: one node, one collection of random unit vectors.
    if p.points > 0 {
        // Searches of an empty collection run past the default tenant rate
        // limit; what is measured here is the search, not the limit.
        let unlimited = ["--set".to_string(), "security.tenant_requests_per_second=0".to_string()];
        let c = cluster(&root.join("points"), 1, &unlimited).await?;
        let (http, base) = (http(&c, 8)?, c.nodes[0].url());
        let r = http.post(format!("{base}/collections")).json(&json!({"name": "s", "dimension": p.dim})).send().await?;
        anyhow::ensure!(r.status().is_success(), "create collection: {}", r.text().await?);
        let mut stored = 0u64;
        for step in 0..=p.steps {
            let target = p.points * step / p.steps.max(1);
            stored = fill_points(&http, &base, p.dim, stored, target).await?;
            crate::vectors::wait_indexed(&c, &http, &base).await?;
            let queries: std::sync::Arc<Vec<Value>> = std::sync::Arc::new(
                (0..1000u64)
                    .map(|i| synod_api::service::vector_form::encode(&unit(p.dim, 1 << 40 | i)).into())
                    .collect(),
            );
            let (h, url) = (http.clone(), format!("{base}/vector/search"));
            let m = load(8, p.seconds, move |client, i| {
                let (http, url, queries) = (h.clone(), url.clone(), queries.clone());
                async move {
                    let q = &queries[(client * 131 + i as usize) % queries.len()];
                    let body = json!({"collection": "s", "vector": q, "top_k": 10, "ef": 64});
                    matches!(http.post(&url).json(&body).send().await, Ok(r) if r.status().is_success())
                }
            })
            .await;
            rows.push(Row::new("stored points", "searches (top 10, ef 64), 8 clients".into(), stored as f64, m));
        }
    }

    Ok(rows)
}

/// Submits `n` queued tasks in batches of 1,000; returns how many.
async fn fill_tasks(http: &reqwest::Client, base: &str, n: u64) -> anyhow::Result<u64> {
    let mut done = 0;
    while done < n {
        let size = (n - done).min(1000);
        let tasks: Vec<Value> = (0..size).map(|_| parked()).collect();
        let r = http.post(format!("{base}/tasks/submit")).json(&json!({"tasks": tasks})).send().await?;
        anyhow::ensure!(r.status().is_success(), "batch submit: {}", r.text().await?);
        done += size;
    }
    Ok(done)
}

/// A deterministic unit vector.
fn unit(dim: usize, seed: u64) -> Vec<f32> {
    let mut v = synod_store::vector_search::random_vectors(1, dim, seed).remove(0);
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// Upserts points `from..to` in batches of 500 (base64 vectors); returns `to`.
async fn fill_points(http: &reqwest::Client, base: &str, dim: usize, from: u64, to: u64) -> anyhow::Result<u64> {
    let mut at = from;
    while at < to {
        let end = to.min(at + 500);
        let points: Vec<Value> = (at..end)
            .map(|i| json!({"id": i, "vector": synod_api::service::vector_form::encode(&unit(dim, i))}))
            .collect();
        let r = http.post(format!("{base}/collections/s/points")).json(&json!({"points": points})).send().await?;
        anyhow::ensure!(r.status().is_success(), "upsert: {}", r.text().await?);
        at = end;
    }
    Ok(to)
}

/// Two panels side by side, throughput and p99, one line per series.
fn chart(axis: &str, rows: &[&Row], log_x: bool) -> String {
    const W: f64 = 460.0;
    const H: f64 = 300.0;
    const PAD: f64 = 56.0;
    const COLOURS: [&str; 6] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
    let mut series: Vec<&str> = Vec::new();
    for r in rows {
        if !series.contains(&r.series.as_str()) {
            series.push(&r.series);
        }
    }
    let fx = |x: f64| if log_x { x.max(1.0).log2() } else { x };
    let (x0, x1) = rows.iter().fold((f64::MAX, f64::MIN), |(a, b), r| (a.min(fx(r.x)), b.max(fx(r.x))));
    let span = if x1 > x0 { x1 - x0 } else { 1.0 };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        2.0 * W,
        H + 20.0 * series.len() as f64 + 10.0
    );
    type Panel = (&'static str, fn(&Row) -> f64);
    let panels: [Panel; 2] = [("per second", |r| r.per_s), ("p99 ms", |r| r.p99_ms)];
    for (pi, (label, value)) in panels.iter().enumerate() {
        let ox = pi as f64 * W;
        let ymax = rows.iter().map(|r| value(r)).filter(|v| v.is_finite()).fold(0.0, f64::max).max(1e-9) * 1.1;
        let px = |x: f64| ox + PAD + (fx(x) - x0) / span * (W - 1.5 * PAD);
        let py = |y: f64| H - PAD + -(y / ymax) * (H - 1.5 * PAD);
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"16\" font-size=\"13\">{label} vs {axis}</text>\n\
             <line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
             <line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>",
            ox + PAD,
            ox + PAD,
            H - PAD,
            ox + W - PAD / 2.0,
            H - PAD,
            ox + PAD,
            H - PAD,
            ox + PAD,
            PAD / 2.0
        );
        for t in 0..=4 {
            let y = ymax / 1.1 * t as f64 / 4.0;
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#ddd\"/>",
                ox + PAD - 4.0,
                py(y) + 4.0,
                tick(y),
                ox + PAD,
                py(y),
                ox + W - PAD / 2.0,
                py(y)
            );
        }
        let mut xs: Vec<f64> = rows.iter().map(|r| r.x).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        for x in xs {
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                px(x),
                H - PAD + 14.0,
                tick(x)
            );
        }
        let _ =
            writeln!(svg, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{axis}</text>", ox + W / 2.0, H - PAD + 30.0);
        for (si, s) in series.iter().enumerate() {
            let pts: Vec<String> = rows
                .iter()
                .filter(|r| r.series == *s && value(r).is_finite())
                .map(|r| format!("{:.1},{:.1}", px(r.x), py(value(r))))
                .collect();
            let colour = COLOURS[si % COLOURS.len()];
            let _ = writeln!(
                svg,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
                pts.join(" ")
            );
            for p in &pts {
                let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(svg, "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{colour}\"/>");
            }
        }
    }
    for (si, s) in series.iter().enumerate() {
        let y = H + 14.0 + 20.0 * si as f64;
        let colour = COLOURS[si % COLOURS.len()];
        let _ = writeln!(
            svg,
            "<rect x=\"{PAD}\" y=\"{}\" width=\"14\" height=\"4\" fill=\"{colour}\"/><text x=\"{}\" y=\"{y}\">{}</text>",
            y - 6.0,
            PAD + 20.0,
            s.replace('&', "&amp;").replace('<', "&lt;")
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// A short axis label: 1.2k, 3M, 0.5.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.3}", v / 1e6).trim_end_matches('0').trim_end_matches('.').to_string() + "M"
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3).replace(".0k", "k")
    } else if a >= 10.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
