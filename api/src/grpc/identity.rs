//! Public gRPC `synod.v1.Identity`: thin adapters over [`crate::service::identity`].
//! Request messages are destructured exhaustively.

use tonic::{Request, Response, Status};

use crate::grpc::{authorize, timed};
use crate::pb::identity_server::Identity;
use crate::pb::{self, *};
use crate::service::SharedNode;
use crate::service::identity::{self, ApiKeyRequest, ApiKeyView, LoginRequest, TenantRequest, UserRequest, UserView};

pub struct IdentityGrpc {
    node: SharedNode,
}

impl IdentityGrpc {
    pub fn new(node: SharedNode) -> Self {
        IdentityGrpc { node }
    }
}

fn user(u: UserView) -> pb::User {
    pb::User { username: u.username, tenant: u.tenant, role: u.role, created_at_ms: u.created_at_ms }
}

fn key(k: ApiKeyView) -> pb::ApiKey {
    pb::ApiKey {
        id: k.id,
        name: k.name,
        tenant: k.tenant,
        role: k.role,
        owner: k.owner,
        created_at_ms: k.created_at_ms,
        expires_at_ms: k.expires_at_ms.unwrap_or(0),
        revoked_at_ms: k.revoked_at_ms.unwrap_or(0),
        last_used_ms: k.last_used_ms.unwrap_or(0),
        key: k.key.unwrap_or_default(),
    }
}

fn nonempty(s: String) -> Option<String> {
    Some(s).filter(|s| !s.is_empty())
}

#[tonic::async_trait]
impl Identity for IdentityGrpc {
    async fn login(&self, req: Request<pb::LoginRequest>) -> Result<Response<LoginReply>, Status> {
        let client = req.remote_addr().map(|a| a.ip().to_string()).unwrap_or_else(|| "unknown".into());
        let pb::LoginRequest { username, password } = req.into_inner();
        timed("Identity.Login", async {
            let r = LoginRequest { grant_type: None, username, password, scope: None };
            let out = identity::do_login(&self.node, r, &client).await?;
            Ok(LoginReply { access_token: out.access_token, token_type: out.token_type, expires_in: out.expires_in })
        })
        .await
    }

    async fn who_am_i(&self, req: Request<pb::WhoAmIRequest>) -> Result<Response<pb::WhoAmIReply>, Status> {
        let ctx = authorize(&self.node, &req, "Identity.WhoAmI")?;
        let pb::WhoAmIRequest {} = req.into_inner();
        timed("Identity.WhoAmI", async {
            let w = identity::do_whoami(&ctx);
            Ok(pb::WhoAmIReply { subject: w.subject, tenant: w.tenant, role: w.role })
        })
        .await
    }

    async fn audit(&self, req: Request<pb::AuditRequest>) -> Result<Response<pb::AuditReply>, Status> {
        let _ctx = authorize(&self.node, &req, "Identity.Audit")?;
        let pb::AuditRequest { after, limit } = req.into_inner();
        timed("Identity.Audit", async {
            let q = crate::service::authn::AuditQuery { after, limit: (limit != 0).then_some(limit) };
            let a = crate::service::authn::do_audit(&self.node, q)?;
            Ok(pb::AuditReply {
                node_id: a.node_id,
                capacity: a.capacity as u64,
                events: a
                    .events
                    .into_iter()
                    .map(|e| pb::AuditEvent { seq: e.seq, at_ms: e.at_ms, event: e.event, who: e.who, what: e.what })
                    .collect(),
            })
        })
        .await
    }

    async fn create_user(&self, req: Request<CreateUserRequest>) -> Result<Response<pb::User>, Status> {
        let ctx = authorize(&self.node, &req, "Identity.CreateUser")?;
        let CreateUserRequest { username, password, tenant, role } = req.into_inner();
        timed("Identity.CreateUser", async {
            let r = UserRequest { username, password, tenant: nonempty(tenant), role };
            Ok(user(identity::do_create_user(&ctx, &self.node, r).await?))
        })
        .await
    }

    async fn list_users(&self, req: Request<ListUsersRequest>) -> Result<Response<UserList>, Status> {
        let ctx = authorize(&self.node, &req, "Identity.ListUsers")?;
        let ListUsersRequest {} = req.into_inner();
        timed("Identity.ListUsers", async {
            Ok(UserList { users: identity::do_list_users(&ctx, &self.node)?.into_iter().map(user).collect() })
        })
        .await
    }

    async fn update_user(&self, req: Request<UpdateUserRequest>) -> Result<Response<pb::User>, Status> {
        let ctx = authorize(&self.node, &req, "Identity.UpdateUser")?;
        let UpdateUserRequest { username, password, role, tenant } = req.into_inner();
        timed("Identity.UpdateUser", async {
            let r = identity::UserUpdate { password, role, tenant };
            Ok(user(identity::do_update_user(&ctx, &self.node, &username, r).await?))
        })
        .await
    }

    async fn delete_user(&self, req: Request<DeleteUserRequest>) -> Result<Response<DeleteUserReply>, Status> {
        let ctx = authorize(&self.node, &req, "Identity.DeleteUser")?;
        let DeleteUserRequest { username } = req.into_inner();
        timed("Identity.DeleteUser", async {
            identity::do_delete_user(&ctx, &self.node, &username).await?;
            Ok(DeleteUserReply {})
        })
        .await
    }

    async fn create_tenant(&self, req: Request<CreateTenantRequest>) -> Result<Response<pb::Tenant>, Status> {
        let ctx = authorize(&self.node, &req, "Identity.CreateTenant")?;
        let CreateTenantRequest { name } = req.into_inner();
        timed("Identity.CreateTenant", async {
            let t = identity::do_create_tenant(&ctx, &self.node, TenantRequest { name }).await?;
            Ok(pb::Tenant { name: t.name, created_at_ms: t.created_at_ms })
        })
        .await
    }

    async fn list_tenants(&self, req: Request<ListTenantsRequest>) -> Result<Response<TenantList>, Status> {
        let ctx = authorize(&self.node, &req, "Identity.ListTenants")?;
        let ListTenantsRequest {} = req.into_inner();
        timed("Identity.ListTenants", async {
            let tenants = identity::do_list_tenants(&ctx, &self.node)?
                .into_iter()
                .map(|t| pb::Tenant { name: t.name, created_at_ms: t.created_at_ms })
                .collect();
            Ok(TenantList { tenants })
        })
        .await
    }

    async fn create_api_key(&self, req: Request<CreateApiKeyRequest>) -> Result<Response<pb::ApiKey>, Status> {
        let ctx = authorize(&self.node, &req, "Identity.CreateApiKey")?;
        let CreateApiKeyRequest { name, role, expires_in } = req.into_inner();
        timed("Identity.CreateApiKey", async {
            let r = ApiKeyRequest { name: nonempty(name), role: nonempty(role), expires_in: Some(expires_in) };
            Ok(key(identity::do_create_api_key(&ctx, &self.node, r).await?))
        })
        .await
    }

    async fn list_api_keys(&self, req: Request<ListApiKeysRequest>) -> Result<Response<ApiKeyList>, Status> {
        let ctx = authorize(&self.node, &req, "Identity.ListApiKeys")?;
        let ListApiKeysRequest {} = req.into_inner();
        timed("Identity.ListApiKeys", async {
            Ok(ApiKeyList { keys: identity::do_list_api_keys(&ctx, &self.node)?.into_iter().map(key).collect() })
        })
        .await
    }

    async fn revoke_api_key(&self, req: Request<RevokeApiKeyRequest>) -> Result<Response<pb::ApiKey>, Status> {
        let ctx = authorize(&self.node, &req, "Identity.RevokeApiKey")?;
        let RevokeApiKeyRequest { id } = req.into_inner();
        timed("Identity.RevokeApiKey", async { Ok(key(identity::do_revoke_api_key(&ctx, &self.node, &id).await?)) })
            .await
    }
}
