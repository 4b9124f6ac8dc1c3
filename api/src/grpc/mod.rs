//! Public gRPC (`synod.v1`): thin adapters over [`crate::service`].
//! Request messages are destructured exhaustively, so a new field is a
//! compile error here until it is handled.

pub mod cluster;
pub mod external;
pub mod identity;
pub mod plugins;
pub mod standard;
pub mod tasks;
pub mod vectors;

use std::time::Instant;

use tonic::{Request, Response, Status};

use crate::auth::{AuthContext, TENANT_HEADER};
use crate::service;

/// The caller of `method`, from the `authorization` (Bearer) or `x-api-key`
/// metadata and `x-synod-tenant`, checked against the method's rule.
pub fn authorize<T>(node: &service::Node, req: &Request<T>, method: &str) -> Result<AuthContext, Status> {
    let rule =
        crate::ops::grpc_access(method).ok_or_else(|| Status::internal(format!("{method} has no access rule")))?;
    let md = req.metadata();
    let ctx = crate::service::authn::authenticate(
        node,
        md.get("authorization").map(|v| v.as_bytes()),
        md.get("x-api-key").map(|v| v.as_bytes()),
        md.get(TENANT_HEADER).map(|v| v.as_bytes()),
    )
    .and_then(|ctx| crate::ops::permit(&ctx, rule).map(|()| ctx));
    if let Err(e) = &ctx {
        crate::service::authn::audit_refused(e.http_status().as_u16(), method);
    }
    Ok(ctx?)
}

/// Runs one gRPC method: records its metrics and maps the error once.
pub(crate) async fn timed<T>(
    method: &'static str,
    f: impl std::future::Future<Output = crate::error::Result<T>>,
) -> Result<Response<T>, Status> {
    let started = Instant::now();
    let r = f.await;
    if let Err(e) = &r
        && method != "Identity.Login"
    {
        crate::service::authn::audit_refused(e.http_status().as_u16(), method);
    }
    crate::metrics::grpc_request(method, r.is_ok(), started.elapsed());
    r.map(Response::new).map_err(Status::from)
}
