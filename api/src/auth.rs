//! Who is calling: the [`AuthContext`] every tenant-scoped service function
//! takes first, and the credentials behind it: JWTs ([`TokenKeys`]),
//! password hashing (Argon2id) and API keys (only their SHA-256 is stored).
//!
//! The tenant and role come from the credential; the `X-Synod-Tenant`
//! header (gRPC `x-synod-tenant`, CLI `--tenant`) is how an admin names the
//! tenant it acts in. With `security.enabled: false` (loopback only) every
//! caller is a trusted admin of the tenant it names, [`DEFAULT_TENANT`]
//! without one.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use synod_store::pb;

use crate::error::{ApiError, Result};

/// The tenant of a caller that names none.
pub const DEFAULT_TENANT: &str = "default";

/// The header (REST) and metadata key (gRPC) that name the tenant.
pub const TENANT_HEADER: &str = "x-synod-tenant";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every tenant and cluster operations.
    Admin,
    /// Read and write within its tenant.
    User,
    /// Read only within its tenant.
    Reader,
}

/// The caller of a service function: whom it acts for and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthContext {
    pub subject: String,
    pub tenant: String,
    pub role: Role,
}

impl AuthContext {
    /// A trusted caller acting in `tenant` (no authentication yet).
    pub fn trusted(tenant: &str) -> Result<AuthContext> {
        check_tenant_name(tenant)?;
        Ok(AuthContext { subject: "anonymous".into(), tenant: tenant.to_string(), role: Role::Admin })
    }

    /// The context of a request that carried `header` (the tenant header's
    /// value, if any).
    pub fn from_header(header: Option<&[u8]>) -> Result<AuthContext> {
        match header {
            None => AuthContext::trusted(DEFAULT_TENANT),
            Some(raw) => {
                let name = std::str::from_utf8(raw)
                    .map_err(|_| ApiError::InvalidArgument(format!("{TENANT_HEADER} is not UTF-8")))?;
                AuthContext::trusted(name)
            }
        }
    }
}

/// Tenant names: 1 to 64 bytes of ASCII letters, digits, `-`, `_` and `.`,
/// starting with a letter or digit.
pub fn check_tenant_name(name: &str) -> Result<()> {
    let ok = name.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidArgument(format!(
            "tenant {name:?}: 1 to 64 ASCII letters, digits, '-', '_' or '.', starting with a letter or digit"
        )))
    }
}

// ---- credentials: JWTs, passwords, API keys

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Reader => "reader",
        }
    }

    pub fn parse(s: &str) -> Result<Role> {
        match s {
            "admin" => Ok(Role::Admin),
            "user" => Ok(Role::User),
            "reader" => Ok(Role::Reader),
            other => Err(ApiError::InvalidArgument(format!("unknown role {other:?} (admin, user or reader)"))),
        }
    }

    pub fn to_pb(self) -> pb::Role {
        match self {
            Role::Admin => pb::Role::Admin,
            Role::User => pb::Role::User,
            Role::Reader => pb::Role::Reader,
        }
    }

    pub fn from_pb(r: i32) -> Option<Role> {
        match pb::Role::try_from(r).ok()? {
            pb::Role::Admin => Some(Role::Admin),
            pb::Role::User => Some(Role::User),
            pb::Role::Reader => Some(Role::Reader),
            pb::Role::Unspecified => None,
        }
    }
}

/// What a Synod JWT carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub tenant: String,
    pub role: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    /// A user token's `token_generation` at issue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// The `user_id` of the user it was issued to: a user created again
    /// under the same name has another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u64>,
}

/// What a valid token says.
#[derive(Debug, Clone)]
pub struct Verified {
    pub ctx: AuthContext,
    /// Issue time, seconds since the epoch.
    pub iat: u64,
    pub generation: Option<u64>,
    pub uid: Option<u64>,
}

/// The cluster's token keys. The algorithm is fixed here, from config;
/// a token's own `alg` header is never trusted to choose it.
pub struct TokenKeys {
    alg: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub ttl: Duration,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys").field("alg", &self.alg).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl TokenKeys {
    /// HS256 keys from the cluster secret.
    pub fn hs256(secret: &[u8], ttl: Duration) -> TokenKeys {
        TokenKeys {
            alg: Algorithm::HS256,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ttl,
        }
    }

    /// EdDSA (Ed25519) or RS256 keys from a PEM private key (PKCS#8, or
    /// PKCS#1 for RSA); the public half is derived from it.
    pub fn from_pem(alg: &str, pem: &[u8], ttl: Duration) -> std::result::Result<TokenKeys, String> {
        use aws_lc_rs::signature::KeyPair;
        use rustls_pki_types::PrivateKeyDer;
        use rustls_pki_types::pem::PemObject;
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|e| format!("not a PEM private key: {e}"))?;
        let raw = der.secret_der();
        match alg {
            "EdDSA" => {
                let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(raw)
                    .map_err(|e| format!("not an Ed25519 PKCS#8 key: {e}"))?;
                Ok(TokenKeys {
                    alg: Algorithm::EdDSA,
                    encoding: EncodingKey::from_ed_pem(pem).map_err(|e| e.to_string())?,
                    decoding: DecodingKey::from_ed_der(pair.public_key().as_ref()),
                    ttl,
                })
            }
            "RS256" => {
                let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(raw)
                    .or_else(|_| aws_lc_rs::rsa::KeyPair::from_der(raw))
                    .map_err(|e| format!("not an RSA private key: {e}"))?;
                Ok(TokenKeys {
                    alg: Algorithm::RS256,
                    encoding: EncodingKey::from_rsa_pem(pem).map_err(|e| e.to_string())?,
                    decoding: DecodingKey::from_rsa_der(pair.public_key().as_ref()),
                    ttl,
                })
            }
            other => Err(format!("no key pair algorithm {other:?} (EdDSA or RS256)")),
        }
    }

    /// A signed token for `sub` acting in `tenant` with `role`, valid for
    /// the configured lifetime from `now_s` (seconds since the epoch),
    /// without a user id or generation (the form of older versions; a user
    /// with an id refuses it).
    pub fn issue(&self, sub: &str, tenant: &str, role: Role, now_s: u64) -> Result<String> {
        self.issue_for(sub, tenant, role, now_s, None)
    }

    /// As [`TokenKeys::issue`], for user `sub` of `user_id` whose
    /// `token_generation` is `generation`: the token is void once the
    /// user's tokens are revoked, or the user is deleted.
    pub fn issue_for(
        &self,
        sub: &str,
        tenant: &str,
        role: Role,
        now_s: u64,
        user: Option<(u64, u64)>,
    ) -> Result<String> {
        let claims = Claims {
            sub: sub.to_string(),
            tenant: tenant.to_string(),
            role: role.as_str().to_string(),
            iat: now_s,
            exp: now_s + self.ttl.as_secs(),
            jti: random_token(12),
            generation: user.map(|(_, g)| g),
            uid: user.map(|(id, _)| id),
        };
        jsonwebtoken::encode(&Header::new(self.alg), &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(format!("signing a token: {e}")))
    }

    /// The caller a token names, if its signature, algorithm and expiry
    /// (on this machine's clock) hold.
    pub fn verify(&self, token: &str) -> Result<AuthContext> {
        self.verify_at(token, crate::service::now_ms() / 1000).map(|v| v.ctx)
    }

    /// As [`TokenKeys::verify`], with expiry judged at `now_s` (the
    /// cluster's timeline, which tokens are issued on), 5 s of leeway.
    pub fn verify_at(&self, token: &str, now_s: u64) -> Result<Verified> {
        let mut v = Validation::new(self.alg);
        v.validate_exp = false;
        v.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .map_err(|e| ApiError::Unauthenticated(format!("invalid token: {e}")))?;
        let c = data.claims;
        if c.exp.saturating_add(5) < now_s {
            return Err(ApiError::Unauthenticated("invalid token: ExpiredSignature".into()));
        }
        let role = Role::parse(&c.role).map_err(|_| ApiError::Unauthenticated("invalid token: unknown role".into()))?;
        check_tenant_name(&c.tenant).map_err(|_| ApiError::Unauthenticated("invalid token: bad tenant".into()))?;
        Ok(Verified {
            ctx: AuthContext { subject: c.sub, tenant: c.tenant, role },
            iat: c.iat,
            generation: c.generation,
            uid: c.uid,
        })
    }
}

/// A week-long token of the cluster's first admin (user id 1, its tokens
/// of generation 0: until its password changes), signed with the cluster
/// secret: what the test kit's clusters and the benchmarks call with.
pub fn first_admin_token(secret: &[u8]) -> Result<String> {
    let keys = TokenKeys::hs256(secret, Duration::from_secs(7 * 86_400));
    let now_s = crate::service::now_ms() / 1000;
    keys.issue_for("admin", DEFAULT_TENANT, Role::Admin, now_s, Some((1, 0)))
}

/// `n` random bytes, base64url without padding.
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::rng().fill_bytes(&mut buf);
    B64.encode(buf)
}

/// An Argon2id PHC string of `password` with a fresh salt. Slow on
/// purpose: call it off the async threads.
pub fn hash_password(password: &str) -> Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let salt = SaltString::encode_b64(&bytes).map_err(|e| ApiError::Internal(format!("password salt: {e}")))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(format!("hashing a password: {e}")))
}

/// Whether `password` matches the PHC string `hash`. Slow on purpose.
pub fn verify_password(hash: &str, password: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash).is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// Prefix of every API key: `sk_<id>_<secret>`.
pub const API_KEY_PREFIX: &str = "sk_";

/// A new API key: (id, the full key shown once, SHA-256 of its secret).
pub fn new_api_key() -> (String, String, Vec<u8>) {
    let id = random_hex(8);
    let secret = random_token(32);
    let full = format!("{API_KEY_PREFIX}{id}_{secret}");
    (id, full, sha256(secret.as_bytes()))
}

fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// (id, secret) of a presented API key.
pub fn split_api_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(API_KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}

pub fn sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

/// Equality in time independent of where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names() {
        for good in ["default", "team-a", "a.b_c", "X9"] {
            assert!(check_tenant_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a/b", "a\0b", "ümlaut", "sp ace", "_sys", &"x".repeat(65)] {
            assert!(check_tenant_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn header_names_the_tenant() {
        assert_eq!(AuthContext::from_header(None).unwrap().tenant, DEFAULT_TENANT);
        assert_eq!(AuthContext::from_header(Some(b"team-a")).unwrap().tenant, "team-a");
        assert!(AuthContext::from_header(Some(b"\xff")).is_err());
        assert!(AuthContext::from_header(Some(b"a/b")).is_err());
    }

    #[test]
    fn tokens_round_trip_and_refuse_tampering_other_keys_and_alg_none() {
        let keys = TokenKeys::hs256(b"0123456789abcdef0123456789abcdef", Duration::from_secs(60));
        let now = crate::service::now_ms() / 1000;
        let t = keys.issue("ann", "acme", Role::User, now).unwrap();
        let ctx = keys.verify(&t).unwrap();
        assert_eq!((ctx.subject.as_str(), ctx.tenant.as_str(), ctx.role), ("ann", "acme", Role::User));

        let other = TokenKeys::hs256(b"another secret, same length.....", Duration::from_secs(60));
        assert!(other.verify(&t).is_err(), "signed with another key");
        let expired = keys.issue("ann", "acme", Role::User, now - 3600).unwrap();
        assert!(keys.verify(&expired).is_err(), "expired");
        // Tampered payload: the admin role swapped in, signature kept.
        let parts: Vec<&str> = t.split('.').collect();
        let mut claims: serde_json::Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        claims["role"] = "admin".into();
        let forged = format!("{}.{}.{}", parts[0], B64.encode(claims.to_string()), parts[2]);
        assert!(keys.verify(&forged).is_err(), "tampered");
        // alg none, no signature.
        let none = format!("{}.{}.", B64.encode(r#"{"alg":"none","typ":"JWT"}"#), parts[1]);
        assert!(keys.verify(&none).is_err(), "alg none");
        assert!(keys.verify("garbage").is_err());
    }

    #[test]
    fn ed25519_and_rsa_keys_sign_and_verify_and_are_not_interchangeable() {
        let now = crate::service::now_ms() / 1000;
        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap().serialize_pem();
        let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap().serialize_pem();
        let ttl = Duration::from_secs(60);
        let ed_keys = TokenKeys::from_pem("EdDSA", ed.as_bytes(), ttl).unwrap();
        let rsa_keys = TokenKeys::from_pem("RS256", rsa.as_bytes(), ttl).unwrap();
        for keys in [&ed_keys, &rsa_keys] {
            let t = keys.issue("ann", "acme", Role::Reader, now).unwrap();
            assert_eq!(keys.verify(&t).unwrap().role, Role::Reader);
        }
        let t = ed_keys.issue("ann", "acme", Role::Admin, now).unwrap();
        assert!(rsa_keys.verify(&t).is_err(), "an EdDSA token is no RS256 token");
        let hs = TokenKeys::hs256(b"0123456789abcdef0123456789abcdef", ttl);
        assert!(ed_keys.verify(&hs.issue("ann", "acme", Role::Admin, now).unwrap()).is_err(), "algorithm confusion");
        assert!(TokenKeys::from_pem("EdDSA", rsa.as_bytes(), ttl).is_err());
        assert!(TokenKeys::from_pem("HS512", ed.as_bytes(), ttl).is_err());
    }

    #[test]
    fn passwords_and_api_keys() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password(&h, "s3cret"));
        assert!(!verify_password(&h, "s3cret!"));
        assert!(!verify_password("not a hash", "s3cret"));

        let (id, full, hash) = new_api_key();
        let (got_id, secret) = split_api_key(&full).unwrap();
        assert_eq!(got_id, id);
        assert!(constant_time_eq(&sha256(secret.as_bytes()), &hash));
        assert!(!constant_time_eq(&sha256(b"guess"), &hash));
        for bad in ["", "sk_", "sk_abc", "sk__x", "pk_abc_def"] {
            assert!(split_api_key(bad).is_none(), "{bad}");
        }
    }
}
