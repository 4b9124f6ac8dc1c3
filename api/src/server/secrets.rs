//! The cluster secret and what is derived from it (token keys, the Raft
//! transport token), and the exposure check of the listeners.

use std::path::Path;

use anyhow::{Context, bail};
use synod_config::Config;

use super::join::NODE_ID_FILE;

/// The CA a node trusts when it calls other nodes over HTTPS.
pub fn trusted_ca(cfg: &Config) -> Option<&Path> {
    cfg.security.tls.ca.as_deref().or(cfg.security.cluster_tls.ca.as_deref())
}

/// File in the data dir that holds a generated cluster secret.
const SECRET_FILE: &str = "cluster-secret";

/// The token keys: HS256 with `security.jwt_secret`, else the secret this
/// node generated when it bootstrapped the cluster (`<data-dir>/cluster-secret`).
/// Every node of a cluster needs the same secret, so a node that joins a
/// secured cluster must be given it. Also answers the secret material, from
/// which the Raft transport token is derived.
pub(super) fn cluster_keys(cfg: &Config) -> anyhow::Result<(crate::auth::TokenKeys, Vec<u8>)> {
    let ttl = cfg.security.token_ttl.get();
    if cfg.security.jwt_algorithm != "HS256" {
        let Some(path) = &cfg.security.jwt_secret else {
            bail!(
                "security.jwt_algorithm {} needs security.jwt_secret: the path of the PEM private key",
                cfg.security.jwt_algorithm
            );
        };
        let pem = std::fs::read(path).with_context(|| format!("reading security.jwt_secret {path}"))?;
        let keys = crate::auth::TokenKeys::from_pem(&cfg.security.jwt_algorithm, &pem, ttl)
            .map_err(|e| anyhow::anyhow!("security.jwt_secret {path}: {e}"))?;
        return Ok((keys, pem));
    }
    let hs = |secret: &[u8]| (crate::auth::TokenKeys::hs256(secret, ttl), secret.to_vec());
    if let Some(s) = &cfg.security.jwt_secret {
        if s.len() < 16 {
            bail!("security.jwt_secret must have at least 16 bytes");
        }
        return Ok(hs(s.as_bytes()));
    }
    let file = cfg.node.data_dir.join(SECRET_FILE);
    if let Ok(s) = std::fs::read_to_string(&file) {
        return Ok(hs(s.trim().as_bytes()));
    }
    let fresh = !cfg.node.data_dir.join(NODE_ID_FILE).exists();
    if !cfg.security.enabled || (cfg.node.join.is_none() && cfg.cluster.seeds.is_empty() && fresh) {
        let secret = crate::auth::random_token(32);
        if cfg.security.enabled {
            std::fs::create_dir_all(&cfg.node.data_dir)?;
            crate::service::identity::write_private(&file, secret.as_bytes())
                .with_context(|| format!("writing {}", file.display()))?;
        }
        return Ok(hs(secret.as_bytes()));
    }
    if !cfg.cluster.seeds.is_empty() {
        bail!(
            "nodes that find their cluster through cluster.seeds must all be given the same secret: set \
             security.jwt_secret (or SYNOD_SECURITY_JWT_SECRET) to the same 16 or more random bytes on each"
        );
    }
    bail!(
        "this node needs the cluster's secret: set security.jwt_secret (or SYNOD_SECURITY_JWT_SECRET) to the \
         contents of {SECRET_FILE} in the data dir of the node that bootstrapped the cluster"
    )
}

/// The token every Raft RPC carries: a hash of the cluster secret, so only
/// nodes given the secret can talk Raft to each other (none with security off).
pub(super) fn transport_token(cfg: &Config, material: &[u8]) -> Option<String> {
    cfg.security.enabled.then(|| transport_token_of(material))
}

/// The Raft transport token of the cluster whose secret is `material`.
pub fn transport_token_of(material: &[u8]) -> String {
    let mut input = b"synod raft transport v1\0".to_vec();
    input.extend_from_slice(material);
    crate::auth::sha256(&input).iter().map(|b| format!("{b:02x}")).collect()
}

/// Refuses `security.enabled: false` on a listener off loopback, and warns
/// loudly when a listener off loopback carries credentials in clear text:
/// REST/gRPC without `security.tls` (passwords, tokens, API keys), or the
/// Raft transport without `security.cluster_tls` (the cluster's transport
/// token and every replicated write).
pub(super) fn check_exposure(cfg: &Config) -> anyhow::Result<()> {
    let n = &cfg.node;
    let open: Vec<String> =
        [("node.http_addr", n.http_addr), ("node.grpc_addr", n.grpc_addr), ("node.raft_addr", n.raft_addr)]
            .iter()
            .filter(|(_, a)| !a.ip().is_loopback())
            .map(|(name, a)| format!("{name} {a}"))
            .collect();
    if !cfg.security.enabled {
        if !open.is_empty() {
            bail!(
                "security.enabled is false, which lets anyone who reaches a port act as admin; it is refused off                  loopback ({}). Listen on 127.0.0.1 or turn security on",
                open.join(", ")
            );
        }
        tracing::warn!("security.enabled is false: for local development only");
        return Ok(());
    }
    let mut clear = Vec::new();
    if !cfg.security.tls.is_enabled() && (!n.http_addr.ip().is_loopback() || !n.grpc_addr.ip().is_loopback()) {
        clear.push("REST and gRPC listen off loopback without security.tls: passwords, tokens and API keys cross the network in clear text");
    }
    if !cfg.security.cluster_tls.is_enabled() && !n.raft_addr.ip().is_loopback() {
        clear.push("the Raft transport listens off loopback without security.cluster_tls: whoever can sniff it learns the cluster's transport token and every replicated write");
    }
    for warning in clear {
        eprintln!("WARNING: {warning}");
        tracing::warn!("{warning}");
    }
    Ok(())
}
