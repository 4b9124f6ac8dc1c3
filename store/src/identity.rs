//! Tenants, users and API keys: who may call Synod, and in which tenant.
//!
//! Secrets never reach apply(): the proposing node hashes passwords
//! (Argon2id) and API key secrets (SHA-256) and sends only the hashes.
//! Names are checked here too, so a bad command changes nothing whatever
//! node proposed it.

use prost::Message;
use rocksdb::{Direction, IteratorMode};

use crate::Store;
use crate::db::bounded;
use crate::error::{Error, Result};
use crate::pb::{
    self, ApiKeyRecord, CommandResult, RejectCode, Role, TenantRecord, UserRecord, command_result::Outcome,
};
use crate::schema::*;
use crate::state_machine::{BatchCtx, ok, rejected};

/// Tenant and user names: 1 to 64 bytes of ASCII letters, digits, `-`,
/// `_` and `.`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn valid_role(r: i32) -> bool {
    matches!(Role::try_from(r), Ok(Role::Admin | Role::User | Role::Reader))
}

pub(crate) fn put_tenant(ctx: &mut BatchCtx<'_>, c: pb::PutTenant, now: u64) -> Result<CommandResult> {
    if !valid_name(&c.name) || !c.name.as_bytes()[0].is_ascii_alphanumeric() {
        return Ok(rejected(RejectCode::Invalid, format!("invalid tenant name {:?}", c.name)));
    }
    let key = tenant_key(&c.name);
    let rec = match ctx.get_msg::<TenantRecord>(&key, "tenant record")? {
        Some(rec) => rec,
        None => {
            let rec = TenantRecord { name: c.name, created_at_ms: now };
            ctx.put(key, rec.encode_to_vec());
            rec
        }
    };
    Ok(CommandResult { outcome: Some(Outcome::Tenant(rec)) })
}

pub(crate) fn put_user(ctx: &mut BatchCtx<'_>, c: pb::PutUser, now: u64) -> Result<CommandResult> {
    let Some(mut user) = c.user else {
        return Ok(rejected(RejectCode::Invalid, "put user without a user"));
    };
    if !valid_name(&user.name) || !valid_name(&user.tenant) || !valid_role(user.role) || user.password_hash.is_empty() {
        return Ok(rejected(RejectCode::Invalid, "a user needs a valid name, tenant, role and password hash"));
    }
    if ctx.get(&tenant_key(&user.tenant))?.is_none() {
        return Ok(rejected(RejectCode::NotFound, format!("tenant {} does not exist", user.tenant)));
    }
    if c.bootstrap {
        if c.replace {
            return Ok(rejected(RejectCode::Invalid, "the first admin is created, never replaced"));
        }
        if ctx.get(KEY_FIRST_ADMIN)?.is_some() {
            return Ok(rejected(RejectCode::AlreadyDone, "the cluster's first admin was created before"));
        }
        // A cluster of an older version has users but no marker: it needs
        // no first admin; mark it so, and never create one again.
        if !ctx.scan_prefix_first(PREFIX_USER, 1)?.is_empty() {
            ctx.put(KEY_FIRST_ADMIN.to_vec(), Vec::new());
            return Ok(rejected(RejectCode::AlreadyDone, "the cluster has users; no first admin is needed"));
        }
        ctx.put(KEY_FIRST_ADMIN.to_vec(), user.password_hash.clone().into_bytes());
    }
    let key = user_key(&user.name);
    match ctx.get_msg::<UserRecord>(&key, "user record")? {
        Some(_) if !c.replace => {
            return Ok(rejected(RejectCode::AlreadyDone, format!("user {} already exists", user.name)));
        }
        Some(old) => {
            user.created_at_ms = old.created_at_ms;
            user.user_id = old.user_id;
            // Revocations only ever move forward, whatever record the
            // proposer read before.
            user.token_generation = old.token_generation;
            user.tokens_not_before_ms = user.tokens_not_before_ms.max(old.tokens_not_before_ms);
        }
        // Replacing a user that is gone (deleted meanwhile) must not revive it.
        None if c.replace => return Ok(rejected(RejectCode::NotFound, format!("user {} does not exist", user.name))),
        None => {
            user.created_at_ms = now;
            user.user_id = next_user_id(ctx)?;
            // Nothing issued before the user existed is theirs.
            user.token_generation = 0;
            user.tokens_not_before_ms = now;
            user.failed_logins = 0;
            user.failed_logins_since_ms = 0;
        }
    }
    user.updated_at_ms = now;
    if c.revoke_tokens {
        user.token_generation += 1;
        user.tokens_not_before_ms = now;
    }
    if c.revoke_api_keys {
        revoke_keys_of(ctx, &user, now)?;
    }
    ctx.put(key, user.encode_to_vec());
    Ok(CommandResult { outcome: Some(Outcome::User(user)) })
}

fn next_user_id(ctx: &mut BatchCtx<'_>) -> Result<u64> {
    let cur = match ctx.get(KEY_USER_ID_SEQ)? {
        None => 0,
        Some(b) => {
            u64::from_be_bytes(b.as_slice().try_into().map_err(|_| Error::corrupt("user id sequence", "not 8 bytes"))?)
        }
    };
    let next = cur + 1;
    ctx.put(KEY_USER_ID_SEQ.to_vec(), next.to_be_bytes().to_vec());
    Ok(next)
}

/// Revokes (as of `now`) every API key `user` owns, in whatever tenant.
fn revoke_keys_of(ctx: &mut BatchCtx<'_>, user: &UserRecord, now: u64) -> Result<()> {
    for (k, tenant) in ctx.scan_prefix(PREFIX_APIKEY_ID)? {
        let id = String::from_utf8_lossy(&k[PREFIX_APIKEY_ID.len()..]).into_owned();
        let key = apikey_key(&String::from_utf8_lossy(&tenant), &id);
        let Some(mut rec) = ctx.get_msg::<ApiKeyRecord>(&key, "api key record")? else { continue };
        if rec.owner == user.name && rec.owner_id == user.user_id && rec.revoked_at_ms == 0 {
            rec.revoked_at_ms = now.max(1);
            ctx.put(key, rec.encode_to_vec());
        }
    }
    Ok(())
}

/// Deletes a user and revokes its API keys.
pub(crate) fn delete_user(ctx: &mut BatchCtx<'_>, c: pb::DeleteUser, now: u64) -> Result<CommandResult> {
    let key = user_key(&c.name);
    let Some(user) = ctx.get_msg::<UserRecord>(&key, "user record")? else {
        return Ok(rejected(RejectCode::NotFound, format!("user {} does not exist", c.name)));
    };
    revoke_keys_of(ctx, &user, now)?;
    ctx.delete(key);
    Ok(ok())
}

/// Counts a failed login of an existing user (an unknown name changes
/// nothing, so failures cannot grow the state).
pub(crate) fn record_login_failure(
    ctx: &mut BatchCtx<'_>,
    c: pb::RecordLoginFailure,
    now: u64,
) -> Result<CommandResult> {
    let key = user_key(&c.name);
    let Some(mut user) = ctx.get_msg::<UserRecord>(&key, "user record")? else {
        return Ok(rejected(RejectCode::NotFound, format!("user {} does not exist", c.name)));
    };
    if user.failed_logins == 0 || now.saturating_sub(user.failed_logins_since_ms) >= c.window_ms {
        user.failed_logins = 1;
        user.failed_logins_since_ms = now;
    } else {
        user.failed_logins = user.failed_logins.saturating_add(1);
    }
    ctx.put(key, user.encode_to_vec());
    Ok(CommandResult { outcome: Some(Outcome::User(user)) })
}

/// A UTC day in ms: tenants' external usage is counted per day.
pub const DAY_MS: u64 = 86_400_000;

/// Adds a call's use to the tenant's usage of the day of `now` (the
/// entry's leader stamp); the first use of a new day starts it from zero.
pub(crate) fn record_external_usage(
    ctx: &mut BatchCtx<'_>,
    c: pb::RecordExternalUsage,
    now: u64,
) -> Result<CommandResult> {
    if !valid_name(&c.tenant) || c.provider.is_empty() || c.provider.len() > 128 {
        return Ok(rejected(RejectCode::Invalid, "external usage needs a tenant and a provider"));
    }
    let key = external_usage_key(&c.tenant, &c.provider);
    let day = now / DAY_MS;
    let mut usage = ctx.get_msg::<pb::ExternalUsage>(&key, "external usage")?.unwrap_or_default();
    if usage.day != day {
        usage = pb::ExternalUsage { tenant: c.tenant, provider: c.provider, day, calls: 0, tokens: 0 };
    }
    usage.calls = usage.calls.saturating_add(c.calls);
    usage.tokens = usage.tokens.saturating_add(c.tokens);
    ctx.put(key, usage.encode_to_vec());
    Ok(ok())
}

impl Store {
    /// A tenant's use of an external provider on the day of `now_ms`
    /// (zero when its record is of an earlier day).
    pub fn external_usage(&self, tenant: &str, provider: &str, now_ms: u64) -> Result<pb::ExternalUsage> {
        let key = external_usage_key(tenant, provider);
        let day = now_ms / DAY_MS;
        let fresh = pb::ExternalUsage { tenant: tenant.into(), provider: provider.into(), day, calls: 0, tokens: 0 };
        match self.get(CF_SM_DATA, &key)? {
            Some(v) => {
                let u = pb::ExternalUsage::decode(v.as_slice()).map_err(|e| Error::corrupt("external usage", e))?;
                Ok(if u.day == day { u } else { fresh })
            }
            None => Ok(fresh),
        }
    }
}

pub(crate) fn put_api_key(ctx: &mut BatchCtx<'_>, c: pb::PutApiKey, now: u64) -> Result<CommandResult> {
    let Some(mut key) = c.key else {
        return Ok(rejected(RejectCode::Invalid, "put api key without a key"));
    };
    if !valid_name(&key.id) || !valid_name(&key.tenant) || !valid_role(key.role) || key.secret_sha256.len() != 32 {
        return Ok(rejected(RejectCode::Invalid, "an API key needs an id, a tenant, a role and a 32-byte hash"));
    }
    if ctx.get(&tenant_key(&key.tenant))?.is_none() {
        return Ok(rejected(RejectCode::NotFound, format!("tenant {} does not exist", key.tenant)));
    }
    if ctx.get(&apikey_id_key(&key.id))?.is_some() {
        return Ok(rejected(RejectCode::AlreadyDone, format!("API key {} already exists", key.id)));
    }
    key.created_at_ms = now;
    if c.expires_in_ms > 0 {
        key.expires_at_ms = now.saturating_add(c.expires_in_ms);
    }
    key.revoked_at_ms = 0;
    key.last_used_ms = 0;
    key.owner_id = ctx.get_msg::<UserRecord>(&user_key(&key.owner), "user record")?.map_or(0, |u| u.user_id);
    ctx.put(apikey_id_key(&key.id), key.tenant.clone().into_bytes());
    ctx.put(apikey_key(&key.tenant, &key.id), key.encode_to_vec());
    Ok(CommandResult { outcome: Some(Outcome::ApiKey(key)) })
}

pub(crate) fn revoke_api_key(ctx: &mut BatchCtx<'_>, c: pb::RevokeApiKey, now: u64) -> Result<CommandResult> {
    let k = apikey_key(&c.tenant, &c.id);
    let Some(mut key) = ctx.get_msg::<ApiKeyRecord>(&k, "api key record")? else {
        return Ok(rejected(RejectCode::NotFound, format!("API key {} not found", c.id)));
    };
    if key.revoked_at_ms == 0 {
        key.revoked_at_ms = now.max(1);
        ctx.put(k, key.encode_to_vec());
    }
    Ok(CommandResult { outcome: Some(Outcome::ApiKey(key)) })
}

pub(crate) fn touch_api_keys(ctx: &mut BatchCtx<'_>, c: pb::TouchApiKeys) -> Result<CommandResult> {
    for u in c.uses {
        let Some(tenant) = ctx.get(&apikey_id_key(&u.id))? else { continue };
        let k = apikey_key(&String::from_utf8_lossy(&tenant), &u.id);
        if let Some(mut key) = ctx.get_msg::<ApiKeyRecord>(&k, "api key record")?
            && u.at_ms > key.last_used_ms
        {
            key.last_used_ms = u.at_ms;
            ctx.put(k, key.encode_to_vec());
        }
    }
    Ok(ok())
}

impl Store {
    /// Every record under `prefix` in sm_data, decoded.
    pub(crate) fn scan<M: Message + Default>(&self, prefix: &[u8], what: &'static str) -> Result<Vec<M>> {
        let mut out = Vec::new();
        let _read = self.read_gate();
        for item in self.db.iterator_cf_opt(
            self.cf(CF_SM_DATA),
            bounded(prefix),
            IteratorMode::From(prefix, Direction::Forward),
        ) {
            let (_, v) = item.map_err(Error::rocks("scan identity records"))?;
            out.push(M::decode(&*v).map_err(|e| Error::corrupt(what, e))?);
        }
        Ok(out)
    }

    pub(crate) fn get_decoded<M: Message + Default>(&self, key: &[u8], what: &'static str) -> Result<Option<M>> {
        match self.get(CF_SM_DATA, key)? {
            None => Ok(None),
            Some(v) => M::decode(v.as_slice()).map(Some).map_err(|e| Error::corrupt(what, e)),
        }
    }

    pub fn get_tenant(&self, name: &str) -> Result<Option<TenantRecord>> {
        self.get_decoded(&tenant_key(name), "tenant record")
    }

    pub fn list_tenants(&self) -> Result<Vec<TenantRecord>> {
        self.scan(PREFIX_TENANT, "tenant record")
    }

    pub fn get_user(&self, name: &str) -> Result<Option<UserRecord>> {
        self.get_decoded(&user_key(name), "user record")
    }

    /// The password hash the cluster's first admin was created with, once
    /// it was (empty when the cluster needed none); `None` before.
    pub fn first_admin(&self) -> Result<Option<Vec<u8>>> {
        self.get(CF_SM_DATA, KEY_FIRST_ADMIN)
    }

    /// Whether any user exists.
    pub fn has_users(&self) -> Result<bool> {
        let _read = self.read_gate();
        let mut it = self.db.iterator_cf_opt(
            self.cf(CF_SM_DATA),
            bounded(PREFIX_USER),
            IteratorMode::From(PREFIX_USER, Direction::Forward),
        );
        match it.next() {
            None => Ok(false),
            Some(item) => item.map(|_| true).map_err(Error::rocks("scan users")),
        }
    }

    pub fn list_users(&self) -> Result<Vec<UserRecord>> {
        self.scan(PREFIX_USER, "user record")
    }

    /// An API key by id, whatever its tenant.
    pub fn get_api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        let Some(tenant) = self.get(CF_SM_DATA, &apikey_id_key(id))? else { return Ok(None) };
        self.get_decoded(&apikey_key(&String::from_utf8_lossy(&tenant), id), "api key record")
    }

    pub fn list_api_keys(&self, tenant: &str) -> Result<Vec<ApiKeyRecord>> {
        self.scan(&apikey_prefix(tenant), "api key record")
    }
}
