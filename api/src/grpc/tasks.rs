//! Public gRPC `synod.v1.Tasks`: thin adapters over [`crate::service::tasks`].
//! Request messages are destructured exhaustively.

use std::time::Duration;

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::error::ApiError;
use crate::grpc::{authorize, timed};
use crate::pb::tasks_server::Tasks;
use crate::pb::{self, ListTasksRequest, ResultRequest, SubmitBatchRequest, SubmitTaskRequest, TaskId};
use crate::service::SharedNode;
use crate::service::tasks::{self, BackoffRequest, ListQuery, SubmitRequest, TaskView};

pub struct TasksGrpc {
    node: SharedNode,
}

impl TasksGrpc {
    pub fn new(node: SharedNode) -> Self {
        TasksGrpc { node }
    }
}

fn request(r: SubmitTaskRequest) -> Result<SubmitRequest, ApiError> {
    let SubmitTaskRequest {
        r#type,
        payload_json,
        priority,
        idempotency_key,
        max_attempts,
        timeout_ms,
        labels,
        backoff,
    } = r;
    let payload = if payload_json.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&payload_json)
            .map_err(|e| ApiError::InvalidArgument(format!("payload_json is not JSON: {e}")))?
    };
    Ok(SubmitRequest {
        task_type: r#type,
        payload,
        priority: priority.unwrap_or(crate::service::tasks::DEFAULT_PRIORITY),
        idempotency_key,
        max_attempts,
        timeout_ms,
        labels,
        backoff: backoff.map(|b| BackoffRequest {
            initial_ms: b.initial_ms,
            // proto3 sends an unset double as 0.0, which no policy can
            // mean (the multiplier is 1..=100): it is the default, as on REST.
            multiplier: if b.multiplier == 0.0 {
                crate::service::tasks::DEFAULT_BACKOFF_MULTIPLIER
            } else {
                b.multiplier
            },
            max_ms: b.max_ms,
        }),
    })
}

fn task(v: TaskView) -> pb::Task {
    pb::Task {
        id: v.id,
        tenant: v.tenant,
        r#type: v.task_type,
        state: v.state,
        priority: v.priority,
        idempotency_key: v.idempotency_key.unwrap_or_default(),
        max_attempts: v.max_attempts,
        timeout_ms: v.timeout_ms,
        labels: v.labels,
        created_at_ms: v.created_at_ms,
        updated_at_ms: v.updated_at_ms,
        node_id: v.node_id.unwrap_or(0),
        lease_epoch: v.lease_epoch,
        attempts: v
            .attempts
            .into_iter()
            .map(|a| pb::TaskAttempt {
                node_id: a.node_id,
                epoch: a.epoch,
                assigned_at_ms: a.assigned_at_ms,
                started_at_ms: a.started_at_ms.unwrap_or(0),
                ended_at_ms: a.ended_at_ms.unwrap_or(0),
                error: a.error.unwrap_or_default(),
                lost: a.lost,
            })
            .collect(),
        cancel_requested: v.cancel_requested,
        error: v.error.unwrap_or_default(),
        payload_json: v.payload.to_string(),
    }
}

fn reply(r: tasks::SubmitResponse) -> pb::SubmitTaskReply {
    pb::SubmitTaskReply { id: r.id, state: r.state, duplicate: r.duplicate }
}

#[tonic::async_trait]
impl Tasks for TasksGrpc {
    async fn submit(&self, req: Request<SubmitTaskRequest>) -> Result<Response<pb::SubmitTaskReply>, Status> {
        let ctx = authorize(&self.node, &req, "Tasks.Submit")?;
        let r = req.into_inner();
        timed("Tasks.Submit", async {
            let mut out = tasks::do_submit_tasks(&ctx, &self.node, vec![request(r)?]).await?;
            Ok(reply(out.pop().expect("one request gives one answer")))
        })
        .await
    }

    async fn submit_batch(&self, req: Request<SubmitBatchRequest>) -> Result<Response<pb::SubmitBatchReply>, Status> {
        let ctx = authorize(&self.node, &req, "Tasks.SubmitBatch")?;
        let SubmitBatchRequest { tasks: items } = req.into_inner();
        timed("Tasks.SubmitBatch", async {
            let reqs = items.into_iter().map(request).collect::<Result<Vec<_>, _>>()?;
            let out = tasks::do_submit_tasks(&ctx, &self.node, reqs).await?;
            Ok(pb::SubmitBatchReply { tasks: out.into_iter().map(reply).collect() })
        })
        .await
    }

    async fn status(&self, req: Request<TaskId>) -> Result<Response<pb::Task>, Status> {
        let ctx = authorize(&self.node, &req, "Tasks.Status")?;
        let TaskId { id } = req.into_inner();
        timed("Tasks.Status", async { Ok(task(tasks::do_task_status(&ctx, &self.node, &id).await?)) }).await
    }

    async fn result(&self, req: Request<ResultRequest>) -> Result<Response<pb::TaskResult>, Status> {
        let ctx = authorize(&self.node, &req, "Tasks.Result")?;
        let ResultRequest { id, wait_ms } = req.into_inner();
        timed("Tasks.Result", async {
            let v = tasks::do_task_result(&ctx, &self.node, &id, Duration::from_millis(wait_ms)).await?;
            Ok(pb::TaskResult {
                id: v.id,
                state: v.state,
                finished: v.finished,
                result_json: v.result.map(|r| r.to_string()).unwrap_or_default(),
                error: v.error.unwrap_or_default(),
            })
        })
        .await
    }

    async fn list(&self, req: Request<ListTasksRequest>) -> Result<Response<pb::TaskList>, Status> {
        let ctx = authorize(&self.node, &req, "Tasks.List")?;
        let ListTasksRequest { state, r#type, limit, cursor, payloads } = req.into_inner();
        timed("Tasks.List", async {
            let q = ListQuery {
                state: Some(state).filter(|s| !s.is_empty()),
                task_type: Some(r#type).filter(|s| !s.is_empty()),
                limit: Some(limit as usize).filter(|l| *l != 0),
                cursor: Some(cursor).filter(|s| !s.is_empty()),
                payloads,
            };
            let l = tasks::do_list_tasks(&ctx, &self.node, q)?;
            Ok(pb::TaskList {
                tasks: l.tasks.into_iter().map(task).collect(),
                next_cursor: l.next_cursor.unwrap_or_default(),
            })
        })
        .await
    }

    async fn cancel(&self, req: Request<TaskId>) -> Result<Response<pb::Task>, Status> {
        let ctx = authorize(&self.node, &req, "Tasks.Cancel")?;
        let TaskId { id } = req.into_inner();
        timed("Tasks.Cancel", async { Ok(task(tasks::do_cancel_task(&ctx, &self.node, &id).await?)) }).await
    }

    type WatchStream = ReceiverStream<Result<pb::Task, Status>>;

    async fn watch(&self, req: Request<TaskId>) -> Result<Response<Self::WatchStream>, Status> {
        let ctx = authorize(&self.node, &req, "Tasks.Watch")?;
        let credentials = req.metadata().clone();
        let TaskId { id } = req.into_inner();
        let slot = self.node.watch_slots.take(&ctx.tenant, self.node.cfg.node.max_watch_streams_per_tenant)?;
        // The first answer (or a not-found) comes before the stream starts.
        let first = tasks::do_task_status(&ctx, &self.node, &id).await.map_err(Status::from)?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let node = self.node.clone();
        tokio::spawn(async move {
            let _slot = slot;
            // The caller's credentials are checked again every minute: a
            // revoked key or a deleted user stops its streams too.
            let mut recheck = tokio::time::Instant::now() + RECHECK;
            let mut changes = node.raft.changes();
            let mut last = first.state.clone();
            let mut finished = is_finished(&last);
            if tx.send(Ok(task(first))).await.is_err() {
                return;
            }
            // A stream lives at most a day, and ends when its client goes.
            let expires = tokio::time::Instant::now() + Duration::from_secs(86_400);
            while !finished {
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep_until(expires) => return,
                    _ = changes.next(Duration::from_millis(200)) => {}
                }
                if tokio::time::Instant::now() >= recheck {
                    recheck = tokio::time::Instant::now() + RECHECK;
                    let again = Request::from_parts(credentials.clone(), Default::default(), ());
                    if let Err(e) = authorize(&node, &again, "Tasks.Watch") {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
                let v = match tasks::do_task_status(&ctx, &node, &id).await {
                    Ok(v) => v,
                    Err(e) => {
                        let _ = tx.send(Err(Status::from(e))).await;
                        return;
                    }
                };
                if v.state != last {
                    last = v.state.clone();
                    finished = is_finished(&last);
                    if tx.send(Ok(task(v))).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// How often a watch stream checks its caller's credentials again.
const RECHECK: Duration = Duration::from_secs(60);

fn is_finished(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "cancelled" | "dead_lettered")
}
