//! `synod-jepsen`: runs chaos tests against real `synod` processes.
//!
//! ```text
//! synod-jepsen test --workload queue --nemesis kill,partition --nodes 3 --time-limit 60 --seed 7
//! synod-jepsen matrix short      # what `make test` runs (~4 min on 2 cores)
//! synod-jepsen matrix long       # 5 nodes, every nemesis alone and all together (~36 min)
//! synod-jepsen matrix soak       # 30 min of steady load: memory and disk stay bounded
//! synod-jepsen check DIR         # check a saved run's history again
//! ```
//!
//! Each run writes a folder (history, results, timeline, node logs); the
//! last line printed is `N passed, N failed`, and the exit code is 1 if
//! any run failed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use synod_jepsen::nemesis::Nemesis;
use synod_jepsen::run::{Opts, RunOutcome, Workload, run};

#[derive(Parser)]
#[command(name = "synod-jepsen", about = "Chaos tests against real synod processes")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// The synod binary (default: `synod` beside this program, i.e. the
    /// same cargo profile).
    #[arg(long, env = "SYNOD_BIN")]
    bin: Option<PathBuf>,
    /// Where run folders go.
    #[arg(long, default_value = "jepsen-runs")]
    out: PathBuf,
    /// The schedule's seed (default: from the clock, printed).
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(Subcommand)]
enum Cmd {
    /// One run.
    Test {
        #[arg(long, default_value = "queue")]
        workload: String,
        /// Comma-separated: kill, pause, partition, membership, snapshot,
        /// crash, clock, disk (or none).
        #[arg(long, default_value = "kill,pause,partition")]
        nemesis: String,
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Seconds of workload under faults, before heal and drain.
        #[arg(long, default_value_t = 60)]
        time_limit: u64,
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// The register and set workloads' reads: linearizable, leader or
        /// local (local reads are not linearizable: the checker should say
        /// so).
        #[arg(long, default_value = "linearizable")]
        read_consistency: String,
        #[command(flatten)]
        common: Common,
    },
    /// A fixed set of runs: `short` (make test), `long` or `soak`.
    Matrix {
        which: String,
        #[command(flatten)]
        common: Common,
    },
    /// Checks a saved run folder's history again.
    Check { dir: PathBuf },
}

fn parse_nemeses(s: &str) -> Result<Vec<Nemesis>, String> {
    if s == "none" || s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',').map(|n| n.trim().parse()).collect()
}

fn default_bin() -> PathBuf {
    std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join("synod"))).unwrap_or_else(|| "synod".into())
}

fn seed_of(c: &Common) -> u64 {
    c.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs())
    })
}

/// (workload, nemeses, nodes, seconds)
type Plan = (Workload, &'static str, usize, u64);

const ALL: &str = "kill,pause,partition,membership,snapshot,crash,clock,disk";

fn matrix(which: &str) -> Result<Vec<Plan>, String> {
    use Workload::{Queue, Register, Set};
    match which {
        "short" => Ok(vec![
            (Queue, "kill", 3, 30),
            (Queue, "partition", 3, 30),
            (Queue, "pause", 3, 30),
            (Queue, "clock", 3, 30),
            (Register, "partition", 3, 30),
            (Queue, "membership,snapshot", 3, 30),
            (Register, "disk", 3, 30),
            (Set, "kill,crash", 3, 30),
        ]),
        "long" => {
            let mut plans = Vec::new();
            for w in [Queue, Register] {
                for n in ["kill", "pause", "partition", "membership", "snapshot", "crash", "clock", "disk"] {
                    plans.push((w, n, 5, 60));
                }
                // Eight nemeses take turns: four minutes give each about
                // four turns (a crash counts only when its failpoint fired).
                plans.push((w, ALL, 5, 240));
            }
            plans.push((Set, ALL, 5, 240));
            Ok(plans)
        }
        // 30 minutes of steady queue load, no faults, a 30 s retention:
        // memory and disk must stop growing (see synod_jepsen::soak).
        "soak" => Ok(vec![(Queue, "none", 3, 1800)]),
        _ => Err(format!("unknown matrix {which:?} (expected short, long or soak)")),
    }
}

fn print_outcome(o: &RunOutcome, dir: &std::path::Path) {
    let verdict = if o.valid { "PASS" } else { "FAIL" };
    println!("{verdict} {} ({})", o.name, dir.display());
    println!("    {}", o.results);
    for e in o.errors.iter().take(20) {
        println!("    error: {e}");
    }
    if o.errors.len() > 20 {
        println!("    ... and {} more errors", o.errors.len() - 20);
    }
}

async fn run_plans(plans: Vec<Opts>) -> ExitCode {
    let (mut passed, mut failed) = (0, 0);
    for o in plans {
        println!("RUN  {} (seed {}, {} s)", o.name(), o.seed, o.time_limit.as_secs());
        let out = run(&o).await;
        print_outcome(&out, &o.dir);
        if out.valid { passed += 1 } else { failed += 1 }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<Vec<Opts>, String> = match cli.cmd {
        Cmd::Check { dir } => {
            return match synod_jepsen::run::load(&dir) {
                Ok(h) => {
                    let nodes = h.ops.iter().filter(|o| o.f == "leader").filter_map(|o| o.value["node"].as_u64());
                    let nodes = nodes.collect::<std::collections::BTreeSet<_>>().len();
                    let soak = h.ops.iter().any(|o| o.f == "soak_sample");
                    let mut errors = if h.ops.iter().any(|o| o.f == "submit") {
                        let expect = synod_jepsen::queue::Expect {
                            retention_ms: soak.then_some(synod_jepsen::soak::SOAK_RETENTION_MS),
                            ..Default::default()
                        };
                        synod_jepsen::queue::check_with(&h, expect).errors
                    } else if h.ops.iter().any(|o| o.f == "add") {
                        synod_jepsen::set::check(&h, nodes).errors
                    } else {
                        synod_jepsen::register::check(&h).errors
                    };
                    let samples = synod_jepsen::soak::samples_of(&h);
                    if !samples.is_empty() {
                        let run_s = samples.iter().map(|s| s.at_s).fold(0.0, f64::max);
                        let (soak_errors, summary) = synod_jepsen::soak::check(&samples, run_s);
                        println!("soak: {summary}");
                        errors.extend(soak_errors);
                    }
                    for e in &errors {
                        println!("error: {e}");
                    }
                    let ok = errors.is_empty();
                    println!("{} passed, {} failed", usize::from(ok), usize::from(!ok));
                    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
                }
                Err(e) => {
                    eprintln!("error: {}: {e}", dir.display());
                    ExitCode::from(2)
                }
            };
        }
        Cmd::Test { workload, nemesis, nodes, time_limit, clients, read_consistency, common } => (|| {
            let workload: Workload = workload.parse()?;
            let nemeses = parse_nemeses(&nemesis)?;
            if !(1..=7).contains(&nodes) {
                return Err(format!("--nodes {nodes} is out of range 1..=7"));
            }
            let seed = seed_of(&common);
            let mut o = Opts {
                bin: common.bin.clone().unwrap_or_else(default_bin),
                workload,
                nemeses,
                nodes,
                time_limit: Duration::from_secs(time_limit),
                seed,
                clients: clients.max(1),
                read_consistency: read_consistency.clone(),
                dir: PathBuf::new(),
                soak: false,
            };
            o.dir = common.out.join(o.name());
            Ok(vec![o])
        })(),
        Cmd::Matrix { which, common } => matrix(&which).and_then(|plans| {
            let seed = seed_of(&common);
            plans
                .into_iter()
                .enumerate()
                .map(|(i, (workload, nemesis, nodes, secs))| {
                    let mut o = Opts {
                        bin: common.bin.clone().unwrap_or_else(default_bin),
                        workload,
                        nemeses: parse_nemeses(nemesis)?,
                        nodes,
                        time_limit: Duration::from_secs(secs),
                        seed: seed.wrapping_add(i as u64),
                        clients: 4,
                        read_consistency: "linearizable".into(),
                        dir: PathBuf::new(),
                        soak: which == "soak",
                    };
                    o.dir = common.out.join(o.name());
                    Ok(o)
                })
                .collect()
        }),
    };
    match result {
        Ok(plans) => {
            if let Some(o) = plans.first()
                && !o.bin.exists()
            {
                eprintln!("error: no synod binary at {} (build it, or pass --bin)", o.bin.display());
                return ExitCode::from(2);
            }
            run_plans(plans).await
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
