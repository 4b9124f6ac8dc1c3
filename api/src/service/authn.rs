//! Who is calling: a request's credentials (a token, an API key) turned
//! into its [`AuthContext`], the rate limits on logins and tenants, and
//! the audit trail of what callers did and were refused.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::identity::rank;
use crate::auth::{self, AuthContext, Role, TokenKeys};
use crate::error::{ApiError, Result};
use crate::service::Node;

/// What a node needs to check callers: whether checks are on, the token
/// keys and the login rate limiter.
#[derive(Debug)]
pub struct Security {
    pub enabled: bool,
    pub keys: TokenKeys,
    /// Failed logins allowed per user and minute, counted in the user's
    /// replicated record (so on every node alike).
    logins_per_minute: u32,
    /// Login attempts per client address on this node (ten times the
    /// per-user rate: many users may share an address).
    addr_logins: RateLimiter,
    /// Requests per tenant on this node.
    tenant_requests: TokenBuckets,
}

impl Security {
    /// Counts a login attempt from `client`; Err(seconds to wait) when
    /// that address is over its limit.
    pub(crate) fn check_login_from(&self, client: &str) -> std::result::Result<(), u64> {
        self.addr_logins.check(client)
    }

    /// Failed logins allowed per user and minute, cluster-wide.
    pub(crate) fn logins_per_minute(&self) -> u32 {
        self.logins_per_minute
    }

    pub fn new(enabled: bool, keys: TokenKeys, logins_per_minute: u32, tenant_rps: u32) -> Security {
        let minute = Duration::from_secs(60);
        Security {
            enabled,
            keys,
            logins_per_minute: logins_per_minute.max(1),
            addr_logins: RateLimiter::new(logins_per_minute.saturating_mul(10), minute),
            tenant_requests: TokenBuckets::new(tenant_rps),
        }
    }
}

/// One token bucket per key, refilled at `rate` per second and holding at
/// most one second's worth; rate 0 means no limit.
#[derive(Debug)]
struct TokenBuckets {
    rate: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl TokenBuckets {
    fn new(rate: u32) -> TokenBuckets {
        TokenBuckets { rate: f64::from(rate), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes a token for `key`; Err(seconds until one is there) when empty.
    fn take(&self, key: &str) -> std::result::Result<(), u64> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().expect("token bucket lock is never poisoned");
        let now = Instant::now();
        if buckets.len() >= MAX_TRACKED {
            // Buckets idle for a second are full again: dropping them changes nothing.
            buckets.retain(|_, (_, at)| now.duration_since(*at) < Duration::from_secs(1));
            if buckets.len() >= MAX_TRACKED {
                buckets.clear();
            }
        }
        let (tokens, at) = buckets.entry(key.to_string()).or_insert((self.rate, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.rate);
        *at = now;
        if *tokens < 1.0 {
            return Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u64);
        }
        *tokens -= 1.0;
        Ok(())
    }
}

/// The window of the cluster-wide failed login count.
pub(crate) const LOGIN_WINDOW_MS: u64 = 60_000;

/// Most keys a limiter tracks; beyond that old entries are dropped.
const MAX_TRACKED: usize = 10_000;

/// At most `limit` events per key in a sliding `window` (fixed buckets).
#[derive(Debug)]
struct RateLimiter {
    limit: u32,
    window: Duration,
    seen: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    fn new(limit: u32, window: Duration) -> RateLimiter {
        RateLimiter { limit: limit.max(1), window, seen: Mutex::new(HashMap::new()) }
    }

    /// Counts one event for `key`; Err(seconds to wait) when over the limit.
    fn check(&self, key: &str) -> std::result::Result<(), u64> {
        let mut seen = self.seen.lock().expect("rate limiter lock is never poisoned");
        let now = Instant::now();
        if seen.len() >= MAX_TRACKED && !seen.contains_key(key) {
            seen.retain(|_, (start, _)| now.duration_since(*start) < self.window);
            if seen.len() >= MAX_TRACKED {
                // Still full: forget the keys that are not at their limit
                // (a limited key is never forgotten, so filling the table
                // lifts no limit).
                let limit = self.limit;
                seen.retain(|_, (_, n)| *n >= limit);
            }
            if seen.len() >= MAX_TRACKED {
                // Every tracked key is limited: new keys wait too.
                return Err(self.window.as_secs().max(1));
            }
        }
        let entry = seen.entry(key.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.limit {
            let wait = self.window.saturating_sub(now.duration_since(entry.0));
            return Err(wait.as_secs().max(1));
        }
        entry.1 += 1;
        Ok(())
    }
}

/// The log target of audit events. The log setup gives it its own layer,
/// which no log level or `SYNOD_LOG` filter silences.
pub const AUDIT_TARGET: &str = "synod::audit";

/// Logs an audit event (on [`AUDIT_TARGET`]), counts it in
/// `synod_audit_events_total{event}` and keeps it in this node's ring of
/// recent events (`GET /audit`).
pub fn audit(event: &'static str, who: &str, what: &str) {
    metrics::counter!("synod_audit_events_total", "event" => event).increment(1);
    tracing::info!(target: AUDIT_TARGET, event, who, what, "audit");
    RECENT.lock().unwrap_or_else(PoisonError::into_inner).push(event, who, what);
}

/// One audit event as `GET /audit` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// Numbers this node's events from 1 since it started.
    pub seq: u64,
    /// This node's wall clock when the event happened.
    pub at_ms: u64,
    pub event: String,
    pub who: String,
    pub what: String,
}

/// The newest audit events of this process, at most `capacity`.
struct AuditRing {
    capacity: usize,
    next_seq: u64,
    events: VecDeque<AuditEvent>,
}

impl AuditRing {
    fn push(&mut self, event: &str, who: &str, what: &str) {
        let at_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        self.next_seq += 1;
        self.events.push_back(AuditEvent {
            seq: self.next_seq,
            at_ms,
            event: event.to_owned(),
            who: clip(who),
            what: clip(what),
        });
        while self.events.len() > self.capacity {
            self.events.pop_front();
        }
    }
}

/// Longest `who` or `what` the ring keeps, in bytes: a failed login's user
/// name is the caller's to choose, and a thousand of them must not hold
/// the node's memory.
const AUDIT_FIELD_MAX: usize = 256;

fn clip(s: &str) -> String {
    if s.len() <= AUDIT_FIELD_MAX {
        return s.to_owned();
    }
    let mut end = AUDIT_FIELD_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// One ring per process: a process runs one node, and [`audit`] is called
/// from places that hold no node.
static RECENT: Mutex<AuditRing> = Mutex::new(AuditRing { capacity: 1000, next_seq: 0, events: VecDeque::new() });

/// Sets how many audit events the ring keeps (`observability.audit_events`).
pub fn keep_audit_events(capacity: usize) {
    let mut ring = RECENT.lock().unwrap_or_else(PoisonError::into_inner);
    ring.capacity = capacity;
    while ring.events.len() > capacity {
        ring.events.pop_front();
    }
}

/// At most `limit` of the newest events with `seq > after`, newest first.
fn recent_audit_events(after: u64, limit: usize) -> Vec<AuditEvent> {
    let ring = RECENT.lock().unwrap_or_else(PoisonError::into_inner);
    ring.events.iter().rev().take_while(|e| e.seq > after).take(limit).cloned().collect()
}

/// `GET /audit?after=SEQ&limit=N`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only events numbered above this (0: from the oldest kept).
    #[serde(default)]
    pub after: u64,
    /// At most this many, newest first: 1 to 1000, default 100.
    #[serde(default)]
    pub limit: Option<u32>,
}

/// The recent audit events of the node that answers.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditList {
    pub node_id: u64,
    /// Events this node keeps (`observability.audit_events`).
    pub capacity: usize,
    /// Newest first.
    pub events: Vec<AuditEvent>,
}

pub const AUDIT_MAX_LIMIT: u32 = 1000;

/// The audit events this node saw lately (admin only, by the table). Each
/// node keeps its own: a login is audited where it was made.
pub fn do_audit(node: &Node, q: AuditQuery) -> Result<AuditList> {
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > AUDIT_MAX_LIMIT {
        return Err(ApiError::InvalidArgument(format!("limit must be 1 to {AUDIT_MAX_LIMIT}, got {limit}")));
    }
    Ok(AuditList {
        node_id: node.id(),
        capacity: node.cfg.observability.audit_events,
        events: recent_audit_events(q.after, limit as usize),
    })
}

/// Audits a request refused for its credentials (401) or its role (403).
pub fn audit_refused(status: u16, route: &str) {
    match status {
        401 => audit("unauthenticated", "-", route),
        403 => audit("permission_denied", "-", route),
        _ => {}
    }
}

// ---- credentials of a request

/// The caller of a request that carried these headers (already lowercase
/// names): `Authorization: Bearer <jwt>`, else `X-API-Key`. With security
/// off every caller is a trusted admin. An admin may name the tenant it
/// acts in with the tenant header; another role may only name its own.
pub fn authenticate(
    node: &Node,
    bearer: Option<&[u8]>,
    api_key: Option<&[u8]>,
    tenant: Option<&[u8]>,
) -> Result<AuthContext> {
    let ctx = caller(node, bearer, api_key, tenant)?;
    if let Err(retry_after_s) = node.security.tenant_requests.take(&ctx.tenant) {
        return Err(ApiError::RateLimited {
            message: format!("tenant {} is over security.tenant_requests_per_second on this node", ctx.tenant),
            retry_after_s,
        });
    }
    Ok(ctx)
}

fn caller(node: &Node, bearer: Option<&[u8]>, api_key: Option<&[u8]>, tenant: Option<&[u8]>) -> Result<AuthContext> {
    let sec = &node.security;
    if !sec.enabled {
        return AuthContext::from_header(tenant);
    }
    let mut ctx = match (bearer, api_key) {
        (Some(b), _) => {
            let token = std::str::from_utf8(b)
                .ok()
                .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                .ok_or_else(|| ApiError::Unauthenticated("Authorization must be 'Bearer <token>'".into()))?
                .trim();
            if token.starts_with(auth::API_KEY_PREFIX) {
                // An API key as the bearer: what OpenAI's client libraries
                // send (`api_key=...`), so they can call /v1/embeddings.
                api_key_caller(node, token)?
            } else {
                let v = sec.keys.verify_at(token, node.raft.cluster_now_ms() / 1000)?;
                // Every token is a user's: nodes call each other over the
                // cluster channel, never with a token.
                current_user_token(node, &v)?;
                v.ctx
            }
        }
        (None, Some(k)) => api_key_caller(node, std::str::from_utf8(k).unwrap_or(""))?,
        (None, None) => {
            return Err(ApiError::Unauthenticated(
                "credentials required: Authorization: Bearer <token> (from POST /login) or X-API-Key".into(),
            ));
        }
    };
    if let Some(t) = tenant {
        let named = AuthContext::from_header(Some(t))?.tenant;
        if ctx.role == Role::Admin {
            ctx.tenant = named;
        } else if named != ctx.tenant {
            return Err(ApiError::PermissionDenied(format!(
                "{} acts in tenant {} only; only an admin names another tenant",
                ctx.subject, ctx.tenant
            )));
        }
    }
    Ok(ctx)
}

/// A user's token stays good only while its user exists (the same user:
/// one created again under the name has another id) and has not changed
/// (password, role, tenant) since it was issued: its generation is the
/// user's current one. (Tokens of older builds carry neither; only a user
/// of an older build, without an id, takes them, judged by issue time.)
fn current_user_token(node: &Node, v: &auth::Verified) -> Result<()> {
    let gone = || ApiError::Unauthenticated("token of a deleted user".into());
    let user = node.raft.store.get_user(&v.ctx.subject)?.ok_or_else(gone)?;
    if v.uid.unwrap_or(0) != user.user_id {
        return Err(gone());
    }
    let revoked = match v.generation {
        Some(g) => g < user.token_generation,
        None => v.iat.saturating_mul(1000) <= user.tokens_not_before_ms,
    };
    if revoked {
        return Err(ApiError::Unauthenticated("token issued before the user last changed; log in again".into()));
    }
    Ok(())
}

fn api_key_caller(node: &Node, key: &str) -> Result<AuthContext> {
    let r = api_key_context(node, key);
    if let Err(e) = &r {
        let id = auth::split_api_key(key).map_or("malformed", |(id, _)| id);
        audit("apikey_refused", id, &e.to_string());
    }
    r
}

fn api_key_context(node: &Node, key: &str) -> Result<AuthContext> {
    let bad = || ApiError::Unauthenticated("invalid API key".into());
    let (id, secret) = auth::split_api_key(key).ok_or_else(bad)?;
    let rec = node.raft.store.get_api_key(id)?.ok_or_else(bad)?;
    if !auth::constant_time_eq(&auth::sha256(secret.as_bytes()), &rec.secret_sha256) {
        return Err(bad());
    }
    let now = node.raft.cluster_now_ms();
    if rec.revoked_at_ms != 0 {
        return Err(ApiError::Unauthenticated("API key revoked".into()));
    }
    if rec.expires_at_ms != 0 && rec.expires_at_ms <= now {
        return Err(ApiError::Unauthenticated("API key expired".into()));
    }
    // A key is worth no more than its owner now: a deleted owner's keys
    // stop, a demoted owner's keys are demoted, a moved owner's stay behind.
    let owner = node
        .raft
        .store
        .get_user(&rec.owner)?
        .filter(|u| u.user_id == rec.owner_id)
        .ok_or_else(|| ApiError::Unauthenticated("API key of a deleted user".into()))?;
    let owner_role = Role::from_pb(owner.role).ok_or_else(bad)?;
    if owner_role != Role::Admin && owner.tenant != rec.tenant {
        return Err(ApiError::Unauthenticated("API key of a user who left its tenant".into()));
    }
    let key_role = Role::from_pb(rec.role).ok_or_else(bad)?;
    let role = if rank(owner_role) < rank(key_role) { owner_role } else { key_role };
    node.key_uses.lock().expect("key use lock is never poisoned").insert(rec.id.clone(), now);
    Ok(AuthContext { subject: format!("apikey:{}", rec.id), tenant: rec.tenant, role })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_ring_clips_long_fields_at_a_char_boundary() {
        assert_eq!(clip("admin"), "admin");
        let long = "é".repeat(200); // 400 bytes
        let c = clip(&long);
        assert!(c.len() <= AUDIT_FIELD_MAX + '…'.len_utf8() && c.ends_with('…'), "{}", c.len());
        assert!(c.trim_end_matches('…').chars().all(|ch| ch == 'é'));
    }

    #[test]
    fn a_full_login_table_forgets_no_limited_address() {
        let limiter = RateLimiter::new(2, Duration::from_secs(60));
        assert!(limiter.check("attacker").is_ok());
        assert!(limiter.check("attacker").is_ok());
        assert!(limiter.check("attacker").is_err(), "limited after two");
        // Fill the table with fresh addresses, and more.
        for i in 0..MAX_TRACKED + 10 {
            let _ = limiter.check(&format!("10.0.{}.{}", i / 256, i % 256));
        }
        assert!(limiter.check("attacker").is_err(), "filling the table lifted the limit");
        // Control: an address seen once, then crowded out, is not limited.
        assert!(limiter.check("newcomer").is_ok());
    }
}
