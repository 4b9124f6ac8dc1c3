//! `synod.v1.Cluster`: status, the registry, labels, membership, draining.

use tonic::{Request, Response, Status};

use super::{authorize, timed};
use crate::pb::cluster_server::Cluster;
use crate::pb::{self, AddLearnerRequest, NodeRef, RemoveRequest, SetLabelsRequest, StatusRequest};
use crate::service::cluster::{JoinRequest, RegistryEntryView};
use crate::service::{self, Consistency, SharedNode};

pub struct ClusterGrpc {
    node: SharedNode,
}

impl ClusterGrpc {
    pub fn new(node: SharedNode) -> Self {
        ClusterGrpc { node }
    }
}

fn entry(v: RegistryEntryView) -> pb::RegistryEntry {
    let RegistryEntryView {
        id,
        role,
        liveness,
        raft_addr,
        http_addr,
        grpc_addr,
        version,
        labels,
        capacity,
        task_types,
        capabilities,
        cpu_load,
        draining,
        registered_at_ms,
        last_heartbeat_ms,
        last_heartbeat_age_ms: _,
        applied_index,
        lag,
        record_version,
    } = v;
    pb::RegistryEntry {
        id,
        role,
        liveness,
        raft_addr,
        http_addr,
        grpc_addr,
        version,
        labels,
        cpus: capacity.cpus,
        memory_bytes: capacity.memory_bytes,
        worker_slots: capacity.worker_slots,
        registered_at_ms,
        last_heartbeat_ms,
        applied_index,
        lag,
        record_version,
        draining,
        cpu_load,
        task_types,
        capabilities,
    }
}

fn reply(r: service::cluster::MembershipReply) -> pb::MembershipReply {
    pb::MembershipReply { log_index: r.log_index, message: r.message }
}

#[tonic::async_trait]
impl Cluster for ClusterGrpc {
    async fn status(&self, req: Request<StatusRequest>) -> Result<Response<pb::ClusterStatus>, Status> {
        let ctx = authorize(&self.node, &req, "Cluster.Status")?;
        let StatusRequest {} = req.into_inner();
        timed("Status", async {
            let s = service::cluster::do_cluster_status(&ctx, &self.node)?;
            Ok(pb::ClusterStatus {
                node_id: s.node_id,
                leader_id: s.leader_id,
                term: s.term,
                commit_index: s.commit_index,
                applied_index: s.applied_index,
                last_log_index: s.last_log_index,
                membership_joint: s.membership_joint,
                nodes: s
                    .nodes
                    .into_iter()
                    .map(|n| pb::NodeStatus {
                        id: n.id,
                        role: n.role,
                        raft_addr: n.raft_addr,
                        http_addr: n.http_addr,
                        grpc_addr: n.grpc_addr,
                        liveness: n.liveness,
                        applied_index: n.applied_index,
                        matched_index: n.matched_index.unwrap_or(0),
                    })
                    .collect(),
            })
        })
        .await
    }

    async fn digest(&self, req: Request<StatusRequest>) -> Result<Response<pb::StateDigest>, Status> {
        let ctx = authorize(&self.node, &req, "Cluster.Digest")?;
        let StatusRequest {} = req.into_inner();
        timed("Digest", async {
            let d = service::cluster::do_state_digest(&ctx, &self.node)?;
            Ok(pb::StateDigest { node_id: d.node_id, applied_index: d.applied_index, digest: d.digest })
        })
        .await
    }

    type BackupStream = tokio_stream::wrappers::ReceiverStream<Result<pb::BackupChunk, Status>>;

    async fn backup(&self, req: Request<StatusRequest>) -> Result<Response<Self::BackupStream>, Status> {
        let ctx = authorize(&self.node, &req, "Cluster.Backup")?;
        let StatusRequest {} = req.into_inner();
        let b = service::backup::do_backup(&ctx, &self.node).await.map_err(Status::from)?;
        let mut file =
            tokio::fs::File::open(&b.file).await.map_err(|e| Status::internal(format!("backup file: {e}")))?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let _keep = b.file;
            let a = b.about;
            let mut about = Some(pb::BackupAbout {
                node_id: a.node_id,
                applied_index: a.applied_index,
                digest: a.digest,
                bytes: a.bytes,
                records: a.records,
            });
            loop {
                let mut buf = vec![0u8; 256 * 1024];
                let n = match file.read(&mut buf).await {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.send(Err(Status::internal(format!("reading the backup: {e}")))).await;
                        return;
                    }
                };
                if n == 0 && about.is_none() {
                    return;
                }
                buf.truncate(n);
                if tx.send(Ok(pb::BackupChunk { about: about.take(), data: buf })).await.is_err() || n == 0 {
                    return;
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn metrics_history(
        &self,
        req: Request<pb::MetricsHistoryRequest>,
    ) -> Result<Response<pb::MetricsHistoryReply>, Status> {
        let ctx = authorize(&self.node, &req, "Cluster.MetricsHistory")?;
        let pb::MetricsHistoryRequest { since_ms } = req.into_inner();
        timed("MetricsHistory", async {
            let h = service::history::do_metrics_history(&ctx, &self.node, since_ms)?;
            let samples_json = serde_json::to_string(&h.samples)
                .map_err(|e| crate::error::ApiError::Internal(format!("encoding samples: {e}")))?;
            Ok(pb::MetricsHistoryReply { interval_s: h.interval_s, capacity: h.capacity as u32, samples_json })
        })
        .await
    }

    async fn registry(&self, req: Request<pb::RegistryRequest>) -> Result<Response<pb::RegistryResponse>, Status> {
        let ctx = authorize(&self.node, &req, "Cluster.Registry")?;
        let pb::RegistryRequest { consistency } = req.into_inner();
        timed("Registry", async {
            let c = Consistency::parse(Some(&consistency))?;
            let v = service::cluster::do_list_registry(&ctx, &self.node, c).await?;
            Ok(pb::RegistryResponse { nodes: v.nodes.into_iter().map(entry).collect() })
        })
        .await
    }

    async fn get_node(&self, req: Request<NodeRef>) -> Result<Response<pb::RegistryEntry>, Status> {
        let ctx = authorize(&self.node, &req, "Cluster.GetNode")?;
        let NodeRef { id, consistency, .. } = req.into_inner();
        timed("GetNode", async {
            let c = Consistency::parse(Some(&consistency))?;
            Ok(entry(service::cluster::do_get_node(&ctx, &self.node, id, c).await?))
        })
        .await
    }

    async fn set_labels(&self, req: Request<SetLabelsRequest>) -> Result<Response<pb::RegistryEntry>, Status> {
        let ctx = authorize(&self.node, &req, "Cluster.SetLabels")?;
        let SetLabelsRequest { id, labels, if_match } = req.into_inner();
        timed("SetLabels", async {
            Ok(entry(service::cluster::do_set_labels(&ctx, &self.node, id, labels, if_match).await?))
        })
        .await
    }

    async fn add_learner(&self, req: Request<AddLearnerRequest>) -> Result<Response<pb::MembershipReply>, Status> {
        let ctx = authorize(&self.node, &req, "Cluster.AddLearner")?;
        let AddLearnerRequest { id, raft_addr, http_addr, grpc_addr } = req.into_inner();
        timed("AddLearner", async {
            Ok(reply(
                service::cluster::do_add_learner(
                    &ctx,
                    &self.node,
                    JoinRequest { id, raft_addr, http_addr, grpc_addr, incarnation: 0 },
                )
                .await?,
            ))
        })
        .await
    }

    async fn promote(&self, req: Request<NodeRef>) -> Result<Response<pb::MembershipReply>, Status> {
        let ctx = authorize(&self.node, &req, "Cluster.Promote")?;
        let NodeRef { id, .. } = req.into_inner();
        timed("Promote", async { Ok(reply(service::cluster::do_promote(&ctx, &self.node, id).await?)) }).await
    }

    async fn demote(&self, req: Request<NodeRef>) -> Result<Response<pb::MembershipReply>, Status> {
        let ctx = authorize(&self.node, &req, "Cluster.Demote")?;
        let NodeRef { id, force, .. } = req.into_inner();
        timed("Demote", async { Ok(reply(service::cluster::do_demote(&ctx, &self.node, id, force).await?)) }).await
    }

    async fn remove(&self, req: Request<RemoveRequest>) -> Result<Response<pb::MembershipReply>, Status> {
        let ctx = authorize(&self.node, &req, "Cluster.Remove")?;
        let RemoveRequest { id, force } = req.into_inner();
        timed("Remove", async { Ok(reply(service::cluster::do_remove(&ctx, &self.node, id, force).await?)) }).await
    }

    async fn transfer_leader(&self, req: Request<NodeRef>) -> Result<Response<pb::MembershipReply>, Status> {
        let ctx = authorize(&self.node, &req, "Cluster.TransferLeader")?;
        let NodeRef { id, .. } = req.into_inner();
        timed("TransferLeader", async { Ok(reply(service::cluster::do_transfer_leader(&ctx, &self.node, id).await?)) })
            .await
    }

    async fn drain(&self, req: Request<NodeRef>) -> Result<Response<pb::RegistryEntry>, Status> {
        let ctx = authorize(&self.node, &req, "Cluster.Drain")?;
        let NodeRef { id, .. } = req.into_inner();
        timed("Drain", async { Ok(entry(service::cluster::do_set_draining(&ctx, &self.node, id, true).await?)) }).await
    }

    async fn undrain(&self, req: Request<NodeRef>) -> Result<Response<pb::RegistryEntry>, Status> {
        let ctx = authorize(&self.node, &req, "Cluster.Undrain")?;
        let NodeRef { id, .. } = req.into_inner();
        timed("Undrain", async { Ok(entry(service::cluster::do_set_draining(&ctx, &self.node, id, false).await?)) })
            .await
    }
}
