//! Rules a parsed config must meet: ranges, orderings between fields, and
//! settings that only make sense together. The first broken rule is
//! reported, naming every key it involves.

use std::collections::BTreeSet;

use crate::Config;
use crate::error::{ConfigError, Result};
use crate::units::{ByteSize, Dur};

const JWT_ALGORITHMS: [&str; 3] = ["HS256", "EdDSA", "RS256"];
const CONSISTENCY_LEVELS: [&str; 3] = ["linearizable", "leader", "local"];
const MAX_SNAPSHOT_CHUNK: ByteSize = ByteSize::mib(64);

fn rule(ok: bool, key: &str, message: impl FnOnce() -> String) -> Result<()> {
    if ok { Ok(()) } else { Err(ConfigError::Validation { key: key.to_owned(), message: message() }) }
}

fn positive_dur(d: Dur, key: &str) -> Result<()> {
    rule(!d.get().is_zero(), key, || format!("{key} must be greater than 0"))
}

fn positive_size(s: ByteSize, key: &str) -> Result<()> {
    rule(s.as_u64() > 0, key, || format!("{key} must be greater than 0"))
}

fn at_least(n: usize, min: usize, key: &str) -> Result<()> {
    rule(n >= min, key, || format!("{key} must be at least {min} (got {n})"))
}

fn greater(a: Dur, a_key: &str, b: Dur, b_key: &str) -> Result<()> {
    rule(a > b, a_key, || format!("{a_key} ({a}) must be greater than {b_key} ({b})"))
}

fn one_of(value: &str, allowed: &[&str], key: &str) -> Result<()> {
    rule(allowed.contains(&value), key, || format!("{key} must be one of {} (got {value:?})", allowed.join(", ")))
}

fn fraction(x: f64, key: &str) -> Result<()> {
    rule((0.0..=1.0).contains(&x), key, || format!("{key} must be within 0..=1 (got {x})"))
}

fn http_url(url: &str, key: &str) -> Result<()> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    rule(rest.is_some_and(|r| !r.is_empty()), key, || format!("{key} must be an http:// or https:// URL (got {url:?})"))
}

/// `host:port`, where host is a name, an IPv4 address or `[IPv6]`.
fn host_port(addr: &str, key: &str) -> Result<()> {
    let ok = addr.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !host.contains(|c: char| c.is_whitespace() || c == '/') && port.parse::<u16>().is_ok()
    });
    rule(ok, key, || format!("{key} must be host:port, e.g. 10.0.0.1:7700 (got {addr:?})"))
}

/// Which of the named optional settings are set, for "set together" rules.
fn set_together(fields: &[(&str, bool)]) -> Result<()> {
    let set: Vec<&str> = fields.iter().filter(|f| f.1).map(|f| f.0).collect();
    let names: Vec<&str> = fields.iter().map(|f| f.0).collect();
    rule(set.is_empty() || set.len() == fields.len(), names[0], || {
        format!("{} must be set together (only {} set)", names.join(", "), set.join(", "))
    })
}

pub(crate) fn validate(c: &Config) -> Result<()> {
    let n = &c.node;
    rule(!n.data_dir.as_os_str().is_empty(), "node.data_dir", || "node.data_dir must not be empty".to_owned())?;
    for (addr, key) in [
        (&n.advertise_http, "node.advertise_http"),
        (&n.advertise_grpc, "node.advertise_grpc"),
        (&n.advertise_raft, "node.advertise_raft"),
    ] {
        if let Some(addr) = addr {
            host_port(addr, key)?;
        }
    }
    if let Some(join) = &n.join {
        http_url(join, "node.join")?;
    }
    positive_size(n.max_body_size, "node.max_body_size")?;

    let cl = &c.cluster;
    rule((1..=7).contains(&cl.voters), "cluster.voters", || {
        format!("cluster.voters must be 1..=7 (got {})", cl.voters)
    })?;
    positive_dur(cl.heartbeat_interval, "cluster.heartbeat_interval")?;
    greater(
        cl.election_timeout_min,
        "cluster.election_timeout_min",
        cl.heartbeat_interval,
        "cluster.heartbeat_interval",
    )?;
    greater(
        cl.election_timeout_max,
        "cluster.election_timeout_max",
        cl.election_timeout_min,
        "cluster.election_timeout_min",
    )?;
    positive_dur(cl.node_heartbeat_interval, "cluster.node_heartbeat_interval")?;
    greater(cl.suspect_after, "cluster.suspect_after", cl.node_heartbeat_interval, "cluster.node_heartbeat_interval")?;
    greater(cl.dead_after, "cluster.dead_after", cl.suspect_after, "cluster.suspect_after")?;
    rule(cl.snapshot_logs_threshold > 0, "cluster.snapshot_logs_threshold", || {
        "cluster.snapshot_logs_threshold must be greater than 0".to_owned()
    })?;
    rule(
        cl.snapshot_chunk_size.as_u64() > 0 && cl.snapshot_chunk_size <= MAX_SNAPSHOT_CHUNK,
        "cluster.snapshot_chunk_size",
        || format!("cluster.snapshot_chunk_size must be 1B..={MAX_SNAPSHOT_CHUNK} (got {})", cl.snapshot_chunk_size),
    )?;
    positive_dur(cl.write_timeout, "cluster.write_timeout")?;
    for (id, addr) in &cl.peer_addr_overrides {
        host_port(addr, &format!("cluster.peer_addr_overrides.{id}"))?;
    }
    for seed in &cl.seeds {
        if let Some((_, rest)) = seed.split_once("://") {
            http_url(seed, "cluster.seeds")?;
            host_port(rest.trim_end_matches('/'), "cluster.seeds")?;
        } else {
            host_port(seed, "cluster.seeds")?;
        }
    }
    rule(cl.bootstrap_expect == 0 || !cl.seeds.is_empty(), "cluster.bootstrap_expect", || {
        "cluster.bootstrap_expect needs cluster.seeds: the addresses where the nodes find each other".to_owned()
    })?;
    rule(n.join.is_none() || cl.seeds.is_empty(), "cluster.seeds", || {
        "node.join and cluster.seeds are two ways to find a cluster: set one of them".to_owned()
    })?;

    let st = &c.storage;
    positive_size(st.write_buffer_size, "storage.write_buffer_size")?;
    positive_size(st.max_payload_size, "storage.max_payload_size")?;

    let se = &c.security;
    one_of(&se.jwt_algorithm, &JWT_ALGORITHMS, "security.jwt_algorithm")?;
    if let Some(secret) = &se.jwt_secret {
        rule(!secret.is_empty(), "security.jwt_secret", || {
            "security.jwt_secret must not be empty (leave it unset instead)".to_owned()
        })?;
    }
    positive_dur(se.token_ttl, "security.token_ttl")?;
    set_together(&[("security.tls.cert", se.tls.cert.is_some()), ("security.tls.key", se.tls.key.is_some())])?;
    set_together(&[
        ("security.cluster_tls.ca", se.cluster_tls.ca.is_some()),
        ("security.cluster_tls.cert", se.cluster_tls.cert.is_some()),
        ("security.cluster_tls.key", se.cluster_tls.key.is_some()),
    ])?;

    let sc = &c.scaling;
    at_least(sc.max_workers, 1, "scaling.max_workers")?;
    rule((1..=16).contains(&sc.prefetch), "scaling.prefetch", || {
        format!("scaling.prefetch must be 1 to 16 (got {})", sc.prefetch)
    })?;
    rule(sc.min_workers <= sc.max_workers, "scaling.min_workers", || {
        format!("scaling.min_workers ({}) must be at most scaling.max_workers ({})", sc.min_workers, sc.max_workers)
    })?;
    at_least(sc.scale_up_queue_depth, 1, "scaling.scale_up_queue_depth")?;
    at_least(sc.min_nodes, 1, "scaling.min_nodes")?;
    rule(sc.min_nodes <= sc.max_nodes, "scaling.min_nodes", || {
        format!("scaling.min_nodes ({}) must be at most scaling.max_nodes ({})", sc.min_nodes, sc.max_nodes)
    })?;
    rule(sc.hook.as_ref().is_none_or(|h| !h.trim().is_empty()), "scaling.hook", || {
        "scaling.hook must not be empty".to_string()
    })?;
    fraction(sc.cpu_high, "scaling.cpu_high")?;
    rule(sc.task_lease.get() >= std::time::Duration::from_secs(3), "scaling.task_lease", || {
        format!("scaling.task_lease ({}) must be at least 3s", sc.task_lease)
    })?;

    let v = &c.vector_db;
    at_least(v.max_dimension, 1, "vector_db.max_dimension")?;
    at_least(v.hnsw_m, 2, "vector_db.hnsw_m")?;
    at_least(v.hnsw_ef_construction, 1, "vector_db.hnsw_ef_construction")?;
    at_least(v.hnsw_ef, 1, "vector_db.hnsw_ef")?;
    at_least(v.max_batch, 1, "vector_db.max_batch")?;
    at_least(v.segment_size, 1, "vector_db.segment_size")?;
    fraction(v.compaction_tombstone_ratio, "vector_db.compaction_tombstone_ratio")?;
    one_of(&v.default_consistency, &CONSISTENCY_LEVELS, "vector_db.default_consistency")?;

    let p = &c.plugins;
    rule(!p.default_model.is_empty() && p.default_model.len() <= 64, "plugins.default_model", || {
        "plugins.default_model must be 1 to 64 characters".to_owned()
    })?;
    at_least(p.embed_batch_max_texts, 1, "plugins.embed_batch_max_texts")?;
    rule(p.embeddings_max_inputs > 0, "plugins.embeddings_max_inputs", || {
        "plugins.embeddings_max_inputs must be greater than 0".to_owned()
    })?;
    rule(p.embed_batch_max_wait.get() <= std::time::Duration::from_secs(1), "plugins.embed_batch_max_wait", || {
        "plugins.embed_batch_max_wait must be at most 1s".to_owned()
    })?;
    positive_size(p.wasm_max_module_size, "plugins.wasm_max_module_size")?;
    rule(p.wasm_fuel > 0, "plugins.wasm_fuel", || "plugins.wasm_fuel must be greater than 0".to_owned())?;
    positive_size(p.wasm_max_memory, "plugins.wasm_max_memory")?;
    positive_size(p.wasm_max_output, "plugins.wasm_max_output")?;
    rule(p.subprocess_max_workers > 0, "plugins.subprocess_max_workers", || {
        "plugins.subprocess_max_workers must be greater than 0".to_owned()
    })?;
    positive_size(p.subprocess_max_output, "plugins.subprocess_max_output")?;
    positive_dur(p.wasm_max_timeout, "plugins.wasm_max_timeout")?;
    for perm in &p.wasm_allowed_permissions {
        rule(perm == "clock", "plugins.wasm_allowed_permissions", || {
            format!("plugins.wasm_allowed_permissions: unknown permission {perm:?} (known: clock)")
        })?;
    }
    let mut names = BTreeSet::new();
    for (i, plugin) in p.subprocess.iter().enumerate() {
        let at = format!("plugins.subprocess[{i}]");
        let name_key = format!("{at}.name");
        rule(!plugin.name.is_empty(), &name_key, || format!("{name_key} must not be empty"))?;
        rule(names.insert(plugin.name.as_str()), &name_key, || {
            format!("{name_key}: plugin name {:?} is used twice", plugin.name)
        })?;
        let command_key = format!("{at}.command");
        rule(!plugin.command.is_empty(), &command_key, || format!("{command_key} must not be empty"))?;
        positive_dur(plugin.timeout, &format!("{at}.timeout"))?;
        let workers_key = format!("{at}.workers");
        rule((1..=p.subprocess_max_workers).contains(&plugin.workers), &workers_key, || {
            format!("{workers_key} must be 1 to plugins.subprocess_max_workers ({})", p.subprocess_max_workers)
        })?;
    }

    for (name, p) in &c.external.providers {
        let at = format!("external.providers.{name}");
        rule(
            !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)),
            &at,
            || format!("{at}: a provider name is 1 to 64 letters, digits, '-', '_' or '.'"),
        )?;
        http_url(&p.base_url, &format!("{at}.base_url"))?;
        positive_dur(p.timeout, &format!("{at}.timeout"))?;
        positive_dur(p.queue_wait, &format!("{at}.queue_wait"))?;
        positive_dur(p.retry_backoff, &format!("{at}.retry_backoff"))?;
        positive_dur(p.retry_max_backoff, &format!("{at}.retry_max_backoff"))?;
        positive_dur(p.breaker_window, &format!("{at}.breaker_window"))?;
        positive_dur(p.breaker_cooldown, &format!("{at}.breaker_cooldown"))?;
        let key = format!("{at}.max_concurrency");
        rule(p.max_concurrency > 0, &key, || format!("{key} must be greater than 0"))?;
        let key = format!("{at}.breaker_half_open_probes");
        rule(p.breaker_half_open_probes > 0, &key, || format!("{key} must be greater than 0"))?;
        let key = format!("{at}.breaker_error_rate_percent");
        rule(p.breaker_error_rate_percent <= 100, &key, || format!("{key} must be 0 to 100"))?;
        let key = format!("{at}.breaker_failure_threshold");
        rule(p.breaker_failure_threshold > 0 || p.breaker_error_rate_percent > 0, &key, || {
            format!("{at}: set breaker_failure_threshold or breaker_error_rate_percent, or the breaker never opens")
        })?;
        let key = format!("{at}.api_key_env");
        rule(!(p.api_key_env.is_some() && p.api_key_file.is_some()), &key, || {
            format!("{at}: give api_key_env or api_key_file, not both")
        })?;
    }

    let o = &c.observability;
    rule(!o.log_level.trim().is_empty(), "observability.log_level", || {
        "observability.log_level must not be empty".to_owned()
    })?;
    Ok(())
}
