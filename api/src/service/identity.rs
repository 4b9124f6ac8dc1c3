//! Identity in the service layer: login, tenants, users and API keys (who
//! is calling, and the audit trail, are [`super::authn`]'s).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use synod_store::pb::{self, command::Kind, command_result::Outcome};

use super::authn::{LOGIN_WINDOW_MS, audit};
use crate::auth::{self, AuthContext, DEFAULT_TENANT, Role};
use crate::error::{ApiError, Result};
use crate::service::{Node, command};
// ---- login

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub grant_type: Option<String>,
    pub username: String,
    pub password: String,
    /// OAuth2 clients may send a scope; it is accepted and ignored.
    pub scope: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LoginResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
}

/// Who the caller is (`GET /whoami`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WhoAmI {
    pub subject: String,
    pub tenant: String,
    pub role: String,
}

pub fn do_whoami(ctx: &AuthContext) -> WhoAmI {
    WhoAmI { subject: ctx.subject.clone(), tenant: ctx.tenant.clone(), role: ctx.role.as_str().to_owned() }
}

/// The OAuth2 password grant. `client` (the peer address) is rate-limited
/// alongside the user name.
pub async fn do_login(node: &Node, req: LoginRequest, client: &str) -> Result<LoginResponse> {
    if req.username.is_empty() || req.password.is_empty() {
        return Err(ApiError::InvalidArgument("username and password are required".into()));
    }
    if let Some(g) = req.grant_type.as_deref()
        && g != "password"
    {
        return Err(ApiError::InvalidArgument(format!("unsupported grant_type {g:?}; use password")));
    }
    if !synod_store::identity::valid_name(&req.username) || req.password.len() > 1024 {
        return Err(ApiError::Unauthenticated("wrong user name or password".into()));
    }
    let sec = &node.security;
    if let Err(wait) = sec.check_login_from(client) {
        audit("login_rate_limited", &req.username, client);
        return Err(ApiError::RateLimited {
            message: "too many login attempts from this address".into(),
            retry_after_s: wait,
        });
    }
    // A user created, changed or locked out on another node a moment ago is
    // seen here: logins are rare, one round trip to the leader is cheap.
    node.raft.read_barrier().await?;
    let user = node.raft.store.get_user(&req.username)?;
    let now = node.raft.cluster_now_ms();
    // Failures counted by the whole cluster: while over the limit even the
    // right password is refused, so guessing gains nothing.
    if let Some(u) = &user {
        let window_end = u.failed_logins_since_ms.saturating_add(LOGIN_WINDOW_MS);
        if u.failed_logins >= sec.logins_per_minute() && now < window_end {
            audit("login_rate_limited", &req.username, client);
            return Err(ApiError::RateLimited {
                message: format!("too many failed logins for {}; retry later", req.username),
                retry_after_s: (window_end - now).div_ceil(1000).max(1),
            });
        }
    }
    // Check a hash even for an unknown user, so timing does not tell who exists.
    let hash = match &user {
        Some(u) => u.password_hash.clone(),
        None => dummy_hash()?,
    };
    let password = req.password.clone();
    let ok = argon2_task(move || auth::verify_password(&hash, &password)).await?;
    let known = user.is_some();
    let Some(user) = user.filter(|_| ok) else {
        audit("login_failed", &req.username, client);
        if known {
            let failure = pb::RecordLoginFailure { name: req.username.clone(), window_ms: LOGIN_WINDOW_MS };
            if let Err(e) = node.propose(Kind::RecordLoginFailure(failure)).await {
                tracing::warn!(error = %e, user = %req.username, "recording a failed login");
            }
        }
        return Err(ApiError::Unauthenticated("wrong user name or password".into()));
    };
    let role = Role::from_pb(user.role).ok_or_else(|| ApiError::Internal("user without a role".into()))?;
    let token = node.security.keys.issue_for(
        &user.name,
        &user.tenant,
        role,
        now / 1000,
        Some((user.user_id, user.token_generation)),
    )?;
    audit("login", &user.name, client);
    Ok(LoginResponse { access_token: token, token_type: "bearer".into(), expires_in: node.security.keys.ttl.as_secs() })
}

/// Runs an Argon2 hash or check on the blocking pool, at most one per core
/// at a time (each takes ~19 MiB and tens of milliseconds).
async fn argon2_task<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let slots = SLOTS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2))
    });
    let _permit = slots.acquire().await.map_err(|e| ApiError::Internal(format!("argon2 slots: {e}")))?;
    tokio::task::spawn_blocking(f).await.map_err(|e| ApiError::Internal(format!("password hashing: {e}")))
}

/// An Argon2id hash of a random password nobody knows, made once.
fn dummy_hash() -> Result<String> {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if let Some(h) = HASH.get() {
        return Ok(h.clone());
    }
    let h = auth::hash_password(&auth::random_token(16))?;
    Ok(HASH.get_or_init(|| h).clone())
}

// ---- tenants

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TenantView {
    pub name: String,
    pub created_at_ms: u64,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantRequest {
    pub name: String,
}

pub async fn do_create_tenant(ctx: &AuthContext, node: &Node, req: TenantRequest) -> Result<TenantView> {
    auth::check_tenant_name(&req.name)?;
    match node.propose(Kind::PutTenant(pb::PutTenant { name: req.name.clone() })).await?.0 {
        Outcome::Tenant(t) => {
            audit("tenant_created", &ctx.subject, &t.name);
            Ok(TenantView { name: t.name, created_at_ms: t.created_at_ms })
        }
        other => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

pub fn do_list_tenants(_ctx: &AuthContext, node: &Node) -> Result<Vec<TenantView>> {
    Ok(node
        .raft
        .store
        .list_tenants()?
        .into_iter()
        .map(|t| TenantView { name: t.name, created_at_ms: t.created_at_ms })
        .collect())
}

// ---- users

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserRequest {
    pub username: String,
    pub password: String,
    /// The admin's own tenant (or the one it names) when absent.
    pub tenant: Option<String>,
    pub role: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserView {
    pub username: String,
    pub tenant: String,
    pub role: String,
    pub created_at_ms: u64,
}

fn user_view(u: pb::UserRecord) -> UserView {
    UserView {
        username: u.name,
        tenant: u.tenant,
        role: Role::from_pb(u.role).map(|r| r.as_str()).unwrap_or("unknown").to_string(),
        created_at_ms: u.created_at_ms,
    }
}

/// Creates a user. The tenant is created with it if it does not exist yet.
pub async fn do_create_user(ctx: &AuthContext, node: &Node, req: UserRequest) -> Result<UserView> {
    if !synod_store::identity::valid_name(&req.username) {
        return Err(ApiError::InvalidArgument(format!(
            "user name {:?}: 1 to 64 ASCII letters, digits, '-', '_' or '.'",
            req.username
        )));
    }
    if req.password.len() < 8 || req.password.len() > 1024 {
        return Err(ApiError::InvalidArgument("a password has 8 to 1024 bytes".into()));
    }
    let role = Role::parse(&req.role)?;
    let tenant = req.tenant.clone().unwrap_or_else(|| ctx.tenant.clone());
    auth::check_tenant_name(&tenant)?;
    create_user(node, &req.username, &req.password, &tenant, role, Creation::New).await.inspect(|u| {
        audit("user_created", &ctx.subject, &format!("{} in {} as {}", u.username, u.tenant, u.role));
    })
}

/// How [`create_user`] creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creation {
    /// A new user; refused if the name is taken.
    New,
    /// The cluster's first admin: refused once one was ever created.
    FirstAdmin,
}

/// Creates a user, creating its tenant first.
pub async fn create_user(
    node: &Node,
    name: &str,
    password: &str,
    tenant: &str,
    role: Role,
    how: Creation,
) -> Result<UserView> {
    node.propose(Kind::PutTenant(pb::PutTenant { name: tenant.to_string() })).await?;
    let password = password.to_string();
    let hash = argon2_task(move || auth::hash_password(&password)).await??;
    let user = pb::UserRecord {
        name: name.to_string(),
        tenant: tenant.to_string(),
        role: role.to_pb() as i32,
        password_hash: hash,
        ..Default::default()
    };
    let put = pb::PutUser {
        user: Some(user),
        replace: false,
        revoke_tokens: false,
        revoke_api_keys: false,
        bootstrap: how == Creation::FirstAdmin,
    };
    match node.propose(Kind::PutUser(put)).await?.0 {
        Outcome::User(u) => Ok(user_view(u)),
        other => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    pub password: Option<String>,
    pub role: Option<String>,
    pub tenant: Option<String>,
}

/// Changes a user's password, role or tenant (what the request names).
pub async fn do_update_user(ctx: &AuthContext, node: &Node, name: &str, req: UserUpdate) -> Result<UserView> {
    let mut user =
        node.raft.store.get_user(name)?.ok_or_else(|| ApiError::NotFound(format!("user {name} not found")))?;
    let new_password = req.password.is_some();
    if let Some(p) = req.password {
        if p.len() < 8 || p.len() > 1024 {
            return Err(ApiError::InvalidArgument("a password has 8 to 1024 bytes".into()));
        }
        user.password_hash = argon2_task(move || auth::hash_password(&p)).await??;
    }
    if let Some(r) = req.role {
        user.role = Role::parse(&r)?.to_pb() as i32;
    }
    if let Some(t) = req.tenant {
        auth::check_tenant_name(&t)?;
        node.propose(Kind::PutTenant(pb::PutTenant { name: t.clone() })).await?;
        user.tenant = t;
    }
    // Tokens issued before the change stop working; with a new password,
    // the user's API keys too.
    let put = pb::PutUser {
        user: Some(user),
        replace: true,
        revoke_tokens: true,
        revoke_api_keys: new_password,
        bootstrap: false,
    };
    match node.propose(Kind::PutUser(put)).await?.0 {
        Outcome::User(u) => {
            let v = user_view(u);
            audit("user_updated", &ctx.subject, &format!("{} in {} as {}", v.username, v.tenant, v.role));
            Ok(v)
        }
        other => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

pub fn do_list_users(_ctx: &AuthContext, node: &Node) -> Result<Vec<UserView>> {
    Ok(node.raft.store.list_users()?.into_iter().map(user_view).collect())
}

pub async fn do_delete_user(ctx: &AuthContext, node: &Node, name: &str) -> Result<()> {
    node.propose(Kind::DeleteUser(pb::DeleteUser { name: name.to_string() })).await?;
    audit("user_deleted", &ctx.subject, name);
    Ok(())
}

// ---- API keys

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyRequest {
    pub name: Option<String>,
    /// The caller's own role when absent; never above it.
    pub role: Option<String>,
    /// Seconds until it expires; never when absent.
    pub expires_in: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub tenant: String,
    pub role: String,
    pub owner: String,
    pub created_at_ms: u64,
    pub expires_at_ms: Option<u64>,
    pub revoked_at_ms: Option<u64>,
    pub last_used_ms: Option<u64>,
    /// The key itself: only in the answer that created it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

fn key_view(k: pb::ApiKeyRecord, key: Option<String>) -> ApiKeyView {
    let nonzero = |v: u64| Some(v).filter(|v| *v != 0);
    ApiKeyView {
        role: Role::from_pb(k.role).map(|r| r.as_str()).unwrap_or("unknown").to_string(),
        id: k.id,
        name: k.name,
        tenant: k.tenant,
        owner: k.owner,
        created_at_ms: k.created_at_ms,
        expires_at_ms: nonzero(k.expires_at_ms),
        revoked_at_ms: nonzero(k.revoked_at_ms),
        last_used_ms: nonzero(k.last_used_ms),
        key,
    }
}

pub(crate) fn rank(r: Role) -> u8 {
    match r {
        Role::Reader => 0,
        Role::User => 1,
        Role::Admin => 2,
    }
}

/// Creates an API key in the caller's tenant, with at most the caller's role.
pub async fn do_create_api_key(ctx: &AuthContext, node: &Node, req: ApiKeyRequest) -> Result<ApiKeyView> {
    if ctx.subject.starts_with("apikey:") {
        return Err(ApiError::PermissionDenied("an API key cannot create API keys; log in as a user".into()));
    }
    if ctx.role == Role::Reader {
        return Err(ApiError::PermissionDenied(format!("{} is a reader; readers cannot create API keys", ctx.subject)));
    }
    let role = match req.role.as_deref() {
        None => ctx.role,
        Some(r) => Role::parse(r)?,
    };
    if rank(role) > rank(ctx.role) {
        return Err(ApiError::PermissionDenied(format!(
            "a {} cannot create a key with role {}",
            ctx.role.as_str(),
            role.as_str()
        )));
    }
    let name = req.name.unwrap_or_default();
    if name.len() > 128 {
        return Err(ApiError::InvalidArgument("an API key name has at most 128 bytes".into()));
    }
    // The expiry is the leader's stamp plus this (apply computes it).
    let cap_s = node.cfg.security.api_key_max_ttl.get().as_secs();
    let expires_in_ms = match req.expires_in {
        None | Some(0) => cap_s * 1000,
        Some(s) if s > 10 * 365 * 86_400 => {
            return Err(ApiError::InvalidArgument("expires_in is at most ten years (in seconds)".into()));
        }
        Some(s) if cap_s > 0 && s > cap_s => {
            return Err(ApiError::InvalidArgument(format!(
                "expires_in {s} s is longer than this cluster allows (security.api_key_max_ttl: {cap_s} s)"
            )));
        }
        Some(s) => s * 1000,
    };
    let (id, full, hash) = auth::new_api_key();
    let rec = pb::ApiKeyRecord {
        id,
        tenant: ctx.tenant.clone(),
        role: role.to_pb() as i32,
        owner: ctx.subject.clone(),
        name,
        secret_sha256: hash,
        ..Default::default()
    };
    match node.propose(Kind::PutApiKey(pb::PutApiKey { key: Some(rec), expires_in_ms })).await?.0 {
        Outcome::ApiKey(k) => {
            audit("apikey_created", &ctx.subject, &format!("{} in {} as {}", k.id, k.tenant, role.as_str()));
            Ok(key_view(k, Some(full)))
        }
        other => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

/// The caller's tenant's keys, without their secrets.
pub fn do_list_api_keys(ctx: &AuthContext, node: &Node) -> Result<Vec<ApiKeyView>> {
    Ok(node.raft.store.list_api_keys(&ctx.tenant)?.into_iter().map(|k| key_view(k, None)).collect())
}

/// Revokes a key of the caller's tenant: an admin any, others their own.
pub async fn do_revoke_api_key(ctx: &AuthContext, node: &Node, id: &str) -> Result<ApiKeyView> {
    let missing = || ApiError::NotFound(format!("API key {id} not found"));
    let rec = node.raft.store.get_api_key(id)?.filter(|k| k.tenant == ctx.tenant).ok_or_else(missing)?;
    if ctx.role != Role::Admin && rec.owner != ctx.subject {
        return Err(missing());
    }
    match node.propose(Kind::RevokeApiKey(pb::RevokeApiKey { tenant: ctx.tenant.clone(), id: id.to_string() })).await?.0
    {
        Outcome::ApiKey(k) => {
            audit("apikey_revoked", &ctx.subject, id);
            Ok(key_view(k, None))
        }
        other => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

/// Sends the last-used times this node saw (at most every `every`).
pub async fn flush_key_uses(node: std::sync::Arc<Node>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let uses: Vec<pb::ApiKeyUse> =
            std::mem::take(&mut *node.key_uses.lock().expect("key use lock is never poisoned"))
                .into_iter()
                .map(|(id, at_ms)| pb::ApiKeyUse { id, at_ms })
                .collect();
        if uses.is_empty() {
            continue;
        }
        if let Err(e) = node.raft.write(&command(Kind::TouchApiKeys(pb::TouchApiKeys { uses }))).await {
            tracing::warn!(error = %e, "recording API key use");
        }
    }
}

/// The first admin, on the node that bootstrapped the cluster: password
/// from SYNOD_ADMIN_PASSWORD, or generated, printed once and written with
/// mode 0600 to `<data-dir>/admin-password`.
pub async fn bootstrap_admin(node: &Node) -> anyhow::Result<()> {
    // Once per cluster: a deleted first admin stays deleted.
    if node.raft.store.first_admin()?.is_some() {
        return Ok(());
    }
    let file = node.cfg.node.data_dir.join("admin-password");
    let (password, generated) = match std::env::var("SYNOD_ADMIN_PASSWORD") {
        Ok(p) if p.len() >= 8 => (p, false),
        Ok(p) if !p.is_empty() => anyhow::bail!("SYNOD_ADMIN_PASSWORD must have at least 8 bytes"),
        // A password written by an attempt that did not finish is reused.
        _ => match std::fs::read_to_string(&file) {
            Ok(p) => (p, false),
            Err(_) => {
                let p = auth::random_token(18);
                // Written before the user exists, so it is never lost.
                write_private(&file, p.as_bytes())?;
                (p, true)
            }
        },
    };
    match create_user(node, "admin", &password, DEFAULT_TENANT, Role::Admin, Creation::FirstAdmin).await {
        Ok(_) => {}
        // Another attempt (or an older version's users) got there first.
        Err(_) if node.raft.store.first_admin()?.is_some() => return Ok(()),
        Err(e) => anyhow::bail!("creating the first admin: {e}"),
    }
    audit("user_created", "bootstrap", "admin in default as admin");
    if generated {
        // Printed once, on purpose: the operator's only other copy is the file.
        println!("synod: created user 'admin' with password {password} (also in {})", file.display());
    }
    Ok(())
}

/// Removes `<data-dir>/admin-password` once the password in it opens
/// nothing: the first admin changed it (as README asks) or was deleted.
/// Looks every `every`.
pub async fn retire_admin_password_file(node: std::sync::Arc<Node>, every: Duration) {
    let file = node.cfg.node.data_dir.join("admin-password");
    loop {
        tokio::time::sleep(every).await;
        if !file.exists() {
            continue;
        }
        // Empty: a cluster of an older version, whose first password is unknown.
        let Ok(Some(created_with)) = node.raft.store.first_admin() else { continue };
        if created_with.is_empty() {
            continue;
        }
        let Ok(admin) = node.raft.store.get_user("admin") else { continue };
        if admin.is_some_and(|u| u.password_hash.as_bytes() == created_with.as_slice()) {
            continue;
        }
        match std::fs::remove_file(&file) {
            Ok(()) => {
                tracing::info!(file = %file.display(), "the first admin's password was changed: its file is removed");
                audit("admin_password_file_removed", "node", &file.display().to_string());
            }
            Err(e) => tracing::warn!(file = %file.display(), error = %e, "removing the first admin's password file"),
        }
    }
}

/// Writes `bytes` to a new file readable by its owner only.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}
