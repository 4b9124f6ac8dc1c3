//! TLS: rustls (with aws-lc-rs, the one crypto provider) for REST, public
//! gRPC and node-to-node calls, and `synod certs init` for a development CA.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::crypto::aws_lc_rs;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Makes aws-lc-rs the process's rustls provider (idempotent).
pub fn install_provider() {
    let _ = aws_lc_rs::default_provider().install_default();
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

pub fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(&read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", path.display()))?;
    if certs.is_empty() {
        bail!("{} holds no certificate", path.display());
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(&read(path)?).with_context(|| format!("{} is not a PEM private key", path.display()))
}

/// The REST listener's rustls config.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(load_certs(cert)?, load_key(key)?)
        .context("the TLS certificate and key do not match")?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A client config trusting the CA certificates in `ca`.
pub fn client_config(ca: &Path) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca)? {
        roots.add(c).with_context(|| format!("{} holds an unusable CA certificate", ca.display()))?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An HTTP client for `https://` URLs trusting `ca` (or plain HTTP without).
pub fn http_client(ca: Option<&Path>, timeout: std::time::Duration) -> anyhow::Result<reqwest::Client> {
    install_provider();
    let b = reqwest::Client::builder().timeout(timeout);
    let b = match ca {
        Some(ca) => b.use_preconfigured_tls(client_config(ca)?),
        None => b,
    };
    Ok(b.build()?)
}

/// Serves `router` over TLS on `listener` until `stop` resolves. Each
/// request carries its peer address (`ConnectInfo`), as over plain HTTP.
pub async fn serve_https(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    tls: Arc<rustls::ServerConfig>,
    stop: impl std::future::Future<Output = ()>,
) {
    serve_until(&listener, router, Some(tls), stop).await
}

/// Serves `router` on a listener it only borrows (over TLS when `tls` is
/// given) until `stop` resolves, then stops accepting; the listener stays
/// open for whoever serves it next (the discovery answer before the API).
/// Connections already open finish on their own.
pub async fn serve_until(
    listener: &tokio::net::TcpListener,
    router: axum::Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tower::ServiceExt;
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut stop => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection");
                    continue;
                }
            },
        };
        // Answers go out when written, not when the last segment is acked.
        let _ = tcp.set_nodelay(true);
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let svc = router.map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(axum::extract::ConnectInfo::<SocketAddr>(peer));
                req
            });
            let svc = hyper_util::service::TowerToHyperService::new(svc);
            let server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let Some(acceptor) = acceptor else {
                let _ = server.serve_connection_with_upgrades(TokioIo::new(tcp), svc).await;
                return;
            };
            let stream = match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, %peer, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let _ = server.serve_connection_with_upgrades(TokioIo::new(stream), svc).await;
        });
    }
}

/// Writes a development CA and `nodes` node certificates (each valid for
/// client and server use, for `localhost`, 127.0.0.1, ::1, `node<i>` and
/// the extra `hosts`) into `dir`: `ca.pem`, `ca.key`, `node<i>.pem`,
/// `node<i>.key`. Keys are written with mode 0600.
pub fn certs_init(dir: &Path, nodes: usize, hosts: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
    if nodes == 0 || nodes > 100 {
        bail!("--nodes must be within 1..=100");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    let mut write = |name: String, contents: String, private: bool| -> anyhow::Result<()> {
        let path = dir.join(name);
        if path.exists() {
            bail!("{} exists; certs init never overwrites", path.display());
        }
        if private {
            crate::service::identity::write_private(&path, contents.as_bytes())?;
        } else {
            std::fs::write(&path, contents)?;
        }
        written.push(path);
        Ok(())
    };
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "Synod development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    write("ca.pem".into(), ca.pem(), false)?;
    write("ca.key".into(), issuer.key().serialize_pem(), true)?;
    for i in 1..=nodes {
        let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into(), format!("node{i}")];
        names.extend(hosts.iter().cloned());
        let mut params = CertificateParams::new(names)?;
        params.distinguished_name.push(DnType::CommonName, format!("synod node{i}"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        write(format!("node{i}.pem"), cert.pem(), false)?;
        write(format!("node{i}.key"), key.serialize_pem(), true)?;
    }
    Ok(written)
}
