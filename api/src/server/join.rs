//! A node that is not a member yet: its id (from the data dir, the flag,
//! or allocated by the cluster) and its requests to the cluster it joins.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use synod_config::Config;

/// File in the data dir that holds this node's id.
pub(super) const NODE_ID_FILE: &str = "node_id";

/// Retries `f` every 500 ms until it succeeds or `within` passes.
pub(super) async fn retry<T, F, Fut>(what: &str, within: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            // The cluster said no for a reason that waiting does not change.
            Err(e) if is_refusal(&e) => return Err(e.context(format!("{what} was refused"))),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "{what} failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.context(format!("{what} did not succeed within {within:?}"))),
        }
    }
}

fn is_refusal(e: &anyhow::Error) -> bool {
    use crate::error::ApiError;
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<ApiError>(),
            Some(ApiError::FailedPrecondition { .. } | ApiError::PermissionDenied(_) | ApiError::InvalidArgument(_))
        )
    })
}

fn join_base(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}

/// A node that is not a member yet, asking the cluster `--join` names:
/// over the cluster channel, never with a token (see [`crate::service::leader_ops`]).
pub(super) struct Joiner {
    pub(super) join: String,
    pub(super) client: reqwest::Client,
    pub(super) peers: synod_raft::Peers,
    pub(super) sealer: crate::service::leader_ops::Sealer,
}

impl Joiner {
    /// The Raft address of the member `--join` names, and the cluster's
    /// time there: its `/health` says.
    async fn member(&self) -> anyhow::Result<(String, u64)> {
        let url = format!("{}/health", join_base(&self.join));
        let v: serde_json::Value = self.client.get(&url).send().await?.error_for_status()?.json().await?;
        let addr = v["raft_addr"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .with_context(|| format!("{url} names no raft_addr (is it a Synod node of this version?)"))?;
        Ok((addr, v["cluster_time_ms"].as_u64().unwrap_or_else(synod_raft::wall_ms)))
    }

    pub(super) async fn ask(
        &self,
        op: &crate::service::leader_ops::LeaderOp,
    ) -> anyhow::Result<crate::service::leader_ops::LeaderReply> {
        // Dated on the cluster's clock, not this machine's, which may be off.
        let (addr, now) = self.member().await?;
        crate::service::leader_ops::send_as_joiner(&self.peers, &self.sealer, &addr, now, op, Duration::from_secs(15))
            .await
            .map_err(|e| anyhow::Error::new(e).context(format!("asking {addr}")))
    }
}

/// The node id: from the data dir, else `--node-id`, else allocated by the
/// cluster we join, else 1 for a new cluster.
pub(super) async fn resolve_node_id(cfg: &Config, joiner: Option<&Joiner>) -> anyhow::Result<u64> {
    let dir = &cfg.node.data_dir;
    let file = dir.join(NODE_ID_FILE);
    if let Ok(s) = std::fs::read_to_string(&file) {
        let stored: u64 = s.trim().parse().with_context(|| format!("{} is damaged: {s:?}", file.display()))?;
        if let Some(given) = cfg.node.id
            && given != stored
        {
            bail!("--node-id {given} differs from the id {stored} this data dir ({}) belongs to", dir.display());
        }
        return Ok(stored);
    }
    let id = match (cfg.node.id, joiner) {
        (Some(0), _) => bail!("node id 0 is reserved"),
        (Some(id), _) => id,
        (None, Some(joiner)) => {
            let op = crate::service::leader_ops::LeaderOp::AllocateNodeId;
            match retry("allocating a node id", Duration::from_secs(60), || joiner.ask(&op)).await? {
                crate::service::leader_ops::LeaderReply::NodeId(id) => id,
                other => bail!("the cluster answered {other:?} to a node id request"),
            }
        }
        (None, None) => 1,
    };
    write_durably(&file, id.to_string().as_bytes()).with_context(|| format!("writing {}", file.display()))?;
    Ok(id)
}

fn write_durably(path: &Path, data: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
