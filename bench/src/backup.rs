//! `synod-bench backup`: a three-node cluster holding TASKS tasks and
//! POINTS points is backed up with `synod backup` (the CLI, as an operator
//! runs it), the file restored with `synod restore`, and a new three-node
//! cluster started on it; prints the sizes and the time of each step.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Params {
    pub tasks: usize,
    pub points: usize,
    pub dim: usize,
    pub dir: Option<PathBuf>,
}

fn args() -> Vec<String> {
    ["observability.debug_endpoints=true"].iter().flat_map(|s| ["--set".to_string(), s.to_string()]).collect()
}

/// Runs the `synod` CLI; its stdout as JSON.
fn cli(args: &[&str], token: &str) -> anyhow::Result<Value> {
    let out = std::process::Command::new(crate::synod_bin()?).args(args).env("SYNOD_TOKEN", token).output()?;
    anyhow::ensure!(out.status.success(), "synod {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn du(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => du(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

pub async fn run(p: Params) -> anyhow::Result<()> {
    let (root, _guard) = crate::work_dir(p.dir)?;
    let mut src = crate::local_cluster(&root.join("source"))?;
    src.add_node(None, &args())?;
    src.wait_ready(0, Duration::from_secs(60)).await?;
    src.add_node(Some(0), &args())?;
    src.add_node(Some(0), &args())?;
    src.wait_voters(0, 3, Duration::from_secs(120)).await?;
    let base = src.nodes[0].url();
    let http = src.client_builder()?.timeout(Duration::from_secs(120)).build()?;
    crate::dashboard::load(&src, &http, &base, p.tasks, p.points, p.dim).await?;

    let file = root.join("cluster.synodbak");
    let t0 = Instant::now();
    let backup = cli(&["backup", &file.display().to_string(), "--addr", &src.nodes[1].url()], &src.admin_token)?;
    let backup_s = t0.elapsed().as_secs_f64();
    let bytes = backup["bytes"].as_u64().unwrap_or(0);
    let source_dir = du(&src.nodes[1].data_dir);
    drop(src);

    let mut dst = crate::local_cluster(&root.join("restored"))?;
    let first = dst.define_node(None, &args())?;
    let t0 = Instant::now();
    let restored = cli(
        &["restore", &file.display().to_string(), "--data-dir", &dst.nodes[first].data_dir.display().to_string()],
        "",
    )?;
    let restore_s = t0.elapsed().as_secs_f64();
    anyhow::ensure!(restored["digest"] == backup["digest"], "restored {restored} but backed up {backup}");
    let t0 = Instant::now();
    dst.start(first)?;
    dst.wait_ready(first, Duration::from_secs(600)).await?;
    let ready_s = t0.elapsed().as_secs_f64();
    dst.add_node(Some(first), &args())?;
    dst.add_node(Some(first), &args())?;
    dst.wait_voters(first, 3, Duration::from_secs(600)).await?;
    let digests = dst
        .wait_for("equal digests on the three restored nodes", Duration::from_secs(600), || async {
            let mut seen = Vec::new();
            for i in 0..3 {
                let (code, v) = dst.get(i, "/debug/digest").await.ok()?;
                (code == 200).then_some(())?;
                seen.push(v["digest"].as_str()?.to_string());
            }
            seen.windows(2).all(|w| w[0] == w[1]).then_some(())
        })
        .await;
    digests?;
    let joined_s = t0.elapsed().as_secs_f64();
    let (tasks, points) = dst
        .wait_for("the restored counts", Duration::from_secs(60), || async {
            let (_, c) = dst.get(2, "/collections/docs").await.ok()?;
            let count = crate::cluster::count_states(&dst.http, &dst.nodes[2].url(), &["succeeded"]).await?;
            Some((count, c["points"].as_u64()?))
        })
        .await?;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!("data: {} tasks, {} points of {} dimensions", p.tasks, p.points, p.dim);
    println!("source node data dir            {:>9.1} MiB", mib(source_dir));
    println!(
        "backup file                      {:>9.1} MiB  {} records, index {}",
        mib(bytes),
        backup["records"],
        backup["applied_index"]
    );
    println!("synod backup (3-node cluster)    {backup_s:>9.2} s  ({:.1} MiB/s)", mib(bytes) / backup_s);
    println!("synod restore                    {restore_s:>9.2} s  ({:.1} MiB/s)", mib(bytes) / restore_s);
    println!("restored node ready              {ready_s:>9.2} s");
    println!("+2 nodes joined, digests equal   {joined_s:>9.2} s  (from the first start)");
    println!("on the third restored node: {tasks} tasks succeeded, {points} points in docs");
    Ok(())
}
