//! The run's picture: one row per client with each operation drawn from
//! invocation to completion (its latency) in green (ok), red (failed) or
//! amber (indeterminate); fault windows shaded across the rows and named;
//! and at the bottom, per node, the leader it named over time.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::history::{History, Kind};
use crate::nemesis::NEMESIS;

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 90.0;
const ROW: f64 = 14.0;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn color(kind: Kind) -> &'static str {
    match kind {
        Kind::Ok => "#43a047",
        Kind::Fail => "#e53935",
        Kind::Info | Kind::Invoke => "#ffa000",
    }
}

const LEADER_COLORS: [&str; 7] = ["#1e88e5", "#8e24aa", "#00897b", "#f4511e", "#6d4c41", "#3949ab", "#c0ca33"];

/// `  leader 1 ■ leader 2 ■ ...` for the leaders the samples name.
fn leader_legend(h: &History) -> String {
    let mut ids: Vec<u64> =
        h.ops.iter().filter(|o| o.f == "leader").filter_map(|o| o.value["leader"].as_u64()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.iter()
        .map(|id| format!(r#" <tspan fill="{}">■</tspan> {id}"#, LEADER_COLORS[*id as usize % LEADER_COLORS.len()]))
        .collect::<Vec<_>>()
        .concat()
}

pub fn svg(h: &History, title: &str) -> String {
    let end = h.ops.iter().map(|o| o.time_ns).max().unwrap_or(1).max(1) as f64;
    let x = |t: u64| LEFT + (t as f64 / end) * (WIDTH - LEFT - 10.0);
    let clients: Vec<u64> = {
        let mut p: Vec<u64> = h.ops.iter().map(|o| o.process).filter(|p| *p < NEMESIS).collect();
        p.sort_unstable();
        p.dedup();
        p
    };
    let samplers: Vec<u64> = {
        let mut p: Vec<u64> = h.ops.iter().filter(|o| o.f == "leader").map(|o| o.process).collect();
        p.sort_unstable();
        p.dedup();
        p
    };
    let top = 40.0;
    let row_of: BTreeMap<u64, f64> = clients.iter().enumerate().map(|(i, p)| (*p, top + i as f64 * ROW)).collect();
    let fault_y = top + clients.len() as f64 * ROW + 6.0;
    // Fault names on three staggered lines, so neighbours do not overlap.
    let leader_top = fault_y + 3.0 * ROW + 10.0;
    let height = leader_top + samplers.len() as f64 * ROW + 30.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="monospace" font-size="10">"#
    );
    let _ = write!(s, r#"<text x="4" y="16" font-size="13">{}</text>"#, escape(title));
    let _ = write!(
        s,
        r##"<text x="4" y="30"><tspan fill="#43a047">■</tspan> ok <tspan fill="#e53935">■</tspan> failed <tspan fill="#ffa000">■</tspan> indeterminate · shaded: faults (hover for details) · bottom rows: the leader each node names:{} · {:.1} s</text>"##,
        leader_legend(h),
        end / 1e9
    );
    // Fault windows.
    let mut open: Option<(u64, String)> = None;
    let mut n = 0;
    for op in h.ops.iter().filter(|o| o.process == NEMESIS) {
        match op.kind {
            Kind::Invoke => {
                let label = format!("{} {} {}", op.f, op.value["shape"].as_str().unwrap_or(""), op.value["nodes"]);
                open = Some((op.time_ns, label));
            }
            _ => {
                if let Some((t0, label)) = open.take() {
                    let (x0, x1) = (x(t0), x(op.time_ns));
                    let line = fault_y + 10.0 + (n % 3) as f64 * ROW;
                    n += 1;
                    let _ = write!(
                        s,
                        r##"<rect x="{x0:.1}" y="{top}" width="{:.1}" height="{:.1}" fill="#9e9e9e" fill-opacity="0.18"><title>{}</title></rect><text x="{x0:.1}" y="{line:.1}"><title>{}</title>{}</text>"##,
                        (x1 - x0).max(1.0),
                        line - top,
                        escape(&label),
                        escape(&label),
                        escape(&op.f)
                    );
                }
            }
        }
    }
    let _ = write!(s, r#"<text x="4" y="{:.1}">faults</text>"#, fault_y + 10.0);
    // Operations.
    let mut invoked: BTreeMap<u64, u64> = BTreeMap::new();
    for op in h.ops.iter().filter(|o| o.process < NEMESIS) {
        let Some(y) = row_of.get(&op.process) else { continue };
        if op.kind == Kind::Invoke {
            invoked.insert(op.process, op.time_ns);
            continue;
        }
        let t0 = invoked.remove(&op.process).unwrap_or(op.time_ns);
        let (x0, x1) = (x(t0), x(op.time_ns));
        let tip = format!("{} {:?} {:.1} ms {}", op.f, op.kind, (op.time_ns - t0) as f64 / 1e6, op.value);
        let tip: String = tip.chars().take(200).collect();
        let _ = write!(
            s,
            r#"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}</title></rect>"#,
            (x1 - x0).max(1.0),
            ROW - 3.0,
            color(op.kind),
            escape(&tip)
        );
    }
    for (p, y) in &row_of {
        let _ = write!(s, r#"<text x="4" y="{:.1}">client {p}</text>"#, y + 9.0);
    }
    // Leaders.
    for (i, p) in samplers.iter().enumerate() {
        let y = leader_top + i as f64 * ROW;
        let samples: Vec<_> = h.ops.iter().filter(|o| o.process == *p && o.f == "leader").collect();
        let node = samples.first().map(|o| o.value["node"].clone()).unwrap_or_default();
        let _ = write!(s, r#"<text x="4" y="{:.1}">node {node}</text>"#, y + 9.0);
        for w in samples.windows(2) {
            let Some(leader) = w[0].value["leader"].as_u64() else { continue };
            let c = LEADER_COLORS[leader as usize % LEADER_COLORS.len()];
            let (x0, x1) = (x(w[0].time_ns), x(w[1].time_ns));
            let _ = write!(
                s,
                r#"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{c}"><title>leader {leader}</title></rect>"#,
                (x1 - x0).max(1.0),
                ROW - 3.0
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn operations_faults_and_leaders_are_drawn() {
        let mut h = History::default();
        h.push(1, Kind::Invoke, "submit", json!({"key": "a<b"}), 0);
        h.push(NEMESIS, Kind::Invoke, "kill", json!({"shape": "leader", "nodes": [1]}), 5);
        h.push(1, Kind::Info, "submit", json!({"key": "a<b"}), 10);
        h.push(NEMESIS, Kind::Ok, "kill", json!({"shape": "leader", "nodes": [1]}), 15);
        h.push(2_000_001, Kind::Ok, "leader", json!({"node": 1, "leader": 2}), 0);
        h.push(2_000_001, Kind::Ok, "leader", json!({"node": 1, "leader": 2}), 20);
        let svg = svg(&h, "t");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("kill leader [1]"), "{svg}");
        assert!(svg.contains("#ffa000") && svg.contains("a&lt;b"), "{svg}");
        assert!(svg.contains("leader 2") && svg.contains("client 1") && svg.contains("node 1"), "{svg}");
    }
}
