//! The server half of the internal transport.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;

use openraft::raft::TransferLeaderRequest;
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::codec::{decode, encode};
use crate::node::RaftNode;
use crate::pb::raft_service_server::RaftService;
use crate::pb::{Blob, Empty, ReadIndexReply, ReadIndexRequest, SnapshotChunk, WriteReply};
use crate::types::{Snapshot, SnapshotFile, SnapshotMeta, TypeConfig, Vote};

/// Metadata key carrying the leader's id on a "not leader" answer.
pub const LEADER_HINT: &str = "x-synod-leader";

pub struct RaftServiceImpl {
    node: RaftNode,
}

impl RaftServiceImpl {
    pub fn new(node: RaftNode) -> Self {
        RaftServiceImpl { node }
    }
}

fn bad(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

fn fatal(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("raft stopped: {e}"))
}

type Answers = Pin<Box<dyn Stream<Item = Result<Blob, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl RaftService for RaftServiceImpl {
    type AppendStreamStream = Answers;

    async fn append_stream(&self, req: Request<Streaming<Blob>>) -> Result<Response<Answers>, Status> {
        // Requests flow into openraft as they arrive; it answers each once
        // its entries are on disk, in order. A request that does not decode
        // (or a broken transport) ends the input: the answers to the
        // requests before it still go out, then the error.
        let failed: Arc<Mutex<Option<Status>>> = Arc::default();
        let failure = failed.clone();
        let input = req.into_inner().map_while(move |msg| {
            let decoded =
                msg.and_then(|b| decode::<AppendEntriesRequest<TypeConfig>>(&b.data, "append request").map_err(bad));
            match decoded {
                Ok(rpc) => Some(rpc),
                Err(status) => {
                    *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
                    None
                }
            }
        });
        let node = self.node.clone();
        let answers = self.node.raft.stream_append(input).map(move |res| match res {
            Ok(res) => {
                if !matches!(res, Err(openraft::raft::StreamAppendError::HigherVote(_))) {
                    node.touched_by_leader();
                }
                Ok(Blob { data: encode(&res) })
            }
            Err(e) => Err(fatal(e)),
        });
        let tail = futures::stream::once(async move { failed.lock().unwrap_or_else(|e| e.into_inner()).take() })
            .filter_map(|failure| failure.map(Err));
        Ok(Response::new(Box::pin(answers.chain(tail))))
    }

    async fn append_entries(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&req.into_inner().data, "append request").map_err(bad)?;
        let resp = self.node.raft.append_entries(rpc).await.map_err(fatal)?;
        if !matches!(resp, openraft::raft::AppendEntriesResponse::HigherVote(_)) {
            self.node.touched_by_leader();
        }
        Ok(Response::new(Blob { data: encode(&resp) }))
    }

    async fn vote(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc: VoteRequest<TypeConfig> = decode(&req.into_inner().data, "vote request").map_err(bad)?;
        let resp = self.node.raft.vote(rpc).await.map_err(fatal)?;
        Ok(Response::new(Blob { data: encode(&resp) }))
    }

    async fn pre_vote(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc: VoteRequest<TypeConfig> = decode(&req.into_inner().data, "pre-vote request").map_err(bad)?;
        let resp = self.node.raft.pre_vote(rpc).await.map_err(fatal)?;
        Ok(Response::new(Blob { data: encode(&resp) }))
    }

    async fn transfer_leader(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc: TransferLeaderRequest<TypeConfig> = decode(&req.into_inner().data, "transfer request").map_err(bad)?;
        let resp = self.node.raft.handle_transfer_leader(rpc).await.map_err(fatal)?;
        Ok(Response::new(Blob { data: encode(&resp) }))
    }

    async fn install_snapshot(&self, req: Request<Streaming<SnapshotChunk>>) -> Result<Response<Blob>, Status> {
        let mut stream = req.into_inner();
        let first = stream.next().await.ok_or_else(|| bad("empty snapshot stream"))??;
        let vote: Vote = decode(&first.vote, "snapshot vote").map_err(bad)?;
        let meta: SnapshotMeta = decode(&first.meta, "snapshot meta").map_err(bad)?;
        let path = self.node.sm.part_path("recv");
        // tokio's files write and fsync on the blocking pool.
        let mut file = tokio::fs::File::create(&path).await.map_err(|e| Status::internal(e.to_string()))?;
        let cleanup = |e: String| {
            let _ = std::fs::remove_file(&path);
            Status::internal(e)
        };
        let mut bytes = first.data.len();
        file.write_all(&first.data).await.map_err(|e| cleanup(e.to_string()))?;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| cleanup(e.to_string()))?;
            bytes += chunk.data.len();
            file.write_all(&chunk.data).await.map_err(|e| cleanup(e.to_string()))?;
        }
        file.sync_all().await.map_err(|e| cleanup(e.to_string()))?;
        drop(file);
        tracing::info!(bytes, last_log_id = ?meta.last_log_id, "snapshot received");
        // A damaged or cut file is refused here, as an error the sender
        // retries: installing it would fail inside the state machine, which
        // openraft treats as fatal to this node.
        let check = path.clone();
        let verified = tokio::task::spawn_blocking(move || synod_store::verify_snapshot(&check)).await;
        if let Some(why) = match verified {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(format!("checking it: {e}")),
        } {
            let _ = std::fs::remove_file(&path);
            tracing::warn!(bytes, error = %why, "received snapshot refused before install");
            return Err(Status::data_loss(format!("snapshot refused before install: {why}")));
        }
        let snapshot = Snapshot { meta, snapshot: SnapshotFile { path: path.clone() } };
        let resp = self.node.raft.install_full_snapshot(vote, snapshot).await.map_err(|e| cleanup(e.to_string()))?;
        self.node.touched_by_leader();
        if path.exists() {
            // Not installed (stale snapshot): the part file is ours to remove.
            let _ = std::fs::remove_file(&path);
        }
        Ok(Response::new(Blob { data: encode(&resp) }))
    }

    async fn client_write(&self, req: Request<Blob>) -> Result<Response<WriteReply>, Status> {
        let data = req.into_inner().data;
        match self.node.write_local(data).await {
            Ok(LocalWrite::Done { result, log_index }) => Ok(Response::new(WriteReply { result, log_index })),
            Ok(LocalWrite::NotLeader(leader)) => {
                let mut status = Status::failed_precondition("not leader");
                if let Some(l) = leader
                    && let Ok(v) = l.to_string().parse()
                {
                    status.metadata_mut().insert(LEADER_HINT, v);
                }
                Err(status)
            }
            Err(e) => Err(Status::aborted(format!("{}: {e}", e.kind()))),
        }
    }

    async fn ping(&self, _req: Request<Empty>) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }

    async fn leader_op(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        // Refused before the handler is set: a definite failure the sender retries.
        let Some(ops) = self.node.leader_ops.get().cloned() else {
            return Err(Status::failed_precondition("this node is starting: it takes no leader operations yet"));
        };
        Ok(Response::new(Blob { data: ops.handle(req.into_inner().data).await }))
    }

    async fn read_index(&self, req: Request<ReadIndexRequest>) -> Result<Response<ReadIndexReply>, Status> {
        match self.node.read_index_local(req.into_inner().lease).await {
            Ok(Some(read_index)) => Ok(Response::new(ReadIndexReply { read_index })),
            Ok(None) => Err(Status::failed_precondition("not leader")),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }
}

/// The outcome of a write attempted on this node's own Raft.
pub enum LocalWrite {
    Done {
        result: Vec<u8>,
        log_index: u64,
    },
    /// Not leader; the known leader, if any. Nothing was proposed.
    NotLeader(Option<u64>),
}
