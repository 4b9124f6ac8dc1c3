//! Who is calling: the [`AuthContext`] every tenant-scoped service function
//! takes first.
//!
//! Until authentication lands (issue 4) every caller is trusted and names
//! its tenant itself: the `X-Synod-Tenant` header on REST, the
//! `x-synod-tenant` metadata key on gRPC, `--tenant` on the CLI; without
//! one it acts in [`DEFAULT_TENANT`]. Once tokens exist, the tenant and role
//! come from the credential, and the header stays only as the way an admin
//! names the tenant it acts on.

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

/// Tenant names: 1 to 64 bytes of ASCII letters, digits, `-`, `_` and `.`.
pub fn check_tenant_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidArgument(format!("tenant {name:?}: 1 to 64 ASCII letters, digits, '-', '_' or '.'")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names() {
        for good in ["default", "team-a", "a.b_c", "X9"] {
            assert!(check_tenant_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a/b", "a\0b", "ümlaut", "sp ace", &"x".repeat(65)] {
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
}
