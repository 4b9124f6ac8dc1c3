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
    let key = user_key(&user.name);
    match ctx.get_msg::<UserRecord>(&key, "user record")? {
        Some(_) if !c.replace => {
            return Ok(rejected(RejectCode::AlreadyDone, format!("user {} already exists", user.name)));
        }
        Some(old) => {
            user.created_at_ms = old.created_at_ms;
            // Revocations only ever move forward, whatever record the
            // proposer read before.
            user.token_generation = old.token_generation;
            user.tokens_not_before_ms = user.tokens_not_before_ms.max(old.tokens_not_before_ms);
        }
        // Replacing a user that is gone (deleted meanwhile) must not revive it.
        None if c.replace => return Ok(rejected(RejectCode::NotFound, format!("user {} does not exist", user.name))),
        None => user.created_at_ms = now,
    }
    user.updated_at_ms = now;
    if c.revoke_tokens {
        user.token_generation += 1;
        user.tokens_not_before_ms = now;
    }
    ctx.put(key, user.encode_to_vec());
    Ok(CommandResult { outcome: Some(Outcome::User(user)) })
}

pub(crate) fn delete_user(ctx: &mut BatchCtx<'_>, c: pb::DeleteUser) -> Result<CommandResult> {
    let key = user_key(&c.name);
    if ctx.get(&key)?.is_none() {
        return Ok(rejected(RejectCode::NotFound, format!("user {} does not exist", c.name)));
    }
    ctx.delete(key);
    Ok(ok())
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
