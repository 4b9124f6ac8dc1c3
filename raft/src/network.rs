//! The client half of the internal transport: openraft's network traits
//! over tonic, one lazily connected channel per peer.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use openraft::OptionalSend;
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, stream_append_sequential, v2::RaftNetworkV2};
use openraft::raft::StreamAppendResult;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse};
use openraft::raft::{TransferLeaderRequest, TransferLeaderResponse};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::codec::{decode, encode};
use crate::pb::raft_service_client::RaftServiceClient;
use crate::pb::{Blob, SnapshotChunk};
use crate::types::{Snapshot, SynodNode, TypeConfig, Vote};

pub type Client = RaftServiceClient<InterceptedService<Channel, TransportToken>>;

/// Metadata key of the transport token.
pub const TOKEN_HEADER: &str = "x-synod-cluster";

/// The shared token every internal RPC carries, derived from the cluster
/// secret by the caller of [`crate::RaftNode::start`]: without it, anyone
/// who reaches the Raft port could propose commands (users, keys) around
/// the API's checks. `None` (security off) sends and checks nothing.
#[derive(Clone, Default)]
pub struct TransportToken(Option<MetadataValue<Ascii>>);

impl TransportToken {
    pub fn new(token: Option<&str>) -> Result<TransportToken, String> {
        token
            .map(|t| t.parse::<MetadataValue<Ascii>>().map_err(|e| format!("transport token: {e}")))
            .transpose()
            .map(TransportToken)
    }

    fn matches(&self, got: Option<&MetadataValue<Ascii>>) -> bool {
        match (&self.0, got) {
            (None, _) => true,
            (Some(want), Some(got)) => {
                let (a, b) = (want.as_bytes(), got.as_bytes());
                a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
            }
            (Some(_), None) => false,
        }
    }
}

impl Interceptor for TransportToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            req.metadata_mut().insert(TOKEN_HEADER, t.clone());
        }
        Ok(req)
    }
}

/// The server side: refuses calls without the cluster's token.
#[derive(Clone)]
pub struct TokenCheck(pub TransportToken);

impl Interceptor for TokenCheck {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if self.0.matches(req.metadata().get(TOKEN_HEADER)) {
            Ok(req)
        } else {
            Err(tonic::Status::unauthenticated("not a member of this cluster (missing or wrong cluster token)"))
        }
    }
}

/// Channels to peers, shared by Raft replication and request forwarding.
/// `overrides` maps a node id to the address to dial instead of the one in
/// the membership (test proxies, NAT).
#[derive(Clone, Default)]
pub struct Peers {
    overrides: Arc<BTreeMap<u64, String>>,
    channels: Arc<Mutex<BTreeMap<(u64, String), Channel>>>,
    pub(crate) snapshot_chunk: usize,
    tls: Option<Arc<ClusterTls>>,
    token: TransportToken,
}

/// Mutual TLS between nodes: every node presents a certificate signed by
/// the cluster CA and accepts only peers that do (PEM bytes).
#[derive(Clone)]
pub struct ClusterTls {
    pub ca_pem: Vec<u8>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterTls { .. }")
    }
}

impl ClusterTls {
    /// The Raft server's TLS settings: our identity, and peers must present
    /// a certificate signed by the cluster CA.
    pub fn server_config(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem))
            .client_ca_root(tonic::transport::Certificate::from_pem(&self.ca_pem))
    }

    fn client_config(&self) -> tonic::transport::ClientTlsConfig {
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca_pem))
            .identity(tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem))
    }
}

impl Peers {
    pub fn new(
        overrides: BTreeMap<u64, String>,
        snapshot_chunk: usize,
        tls: Option<ClusterTls>,
        token: TransportToken,
    ) -> Self {
        Peers {
            overrides: Arc::new(overrides),
            channels: Default::default(),
            snapshot_chunk: snapshot_chunk.max(1024),
            tls: tls.map(Arc::new),
            token,
        }
    }

    /// A client for `id`, whose advertised Raft address is `addr`.
    pub fn client(&self, id: u64, addr: &str) -> Result<Client, String> {
        let addr = self.overrides.get(&id).cloned().unwrap_or_else(|| addr.to_string());
        let mut channels = self.channels.lock().expect("peer map lock is never poisoned: no panics while held");
        let key = (id, addr.clone());
        if let Some(ch) = channels.get(&key) {
            return Ok(RaftServiceClient::with_interceptor(ch.clone(), self.token.clone())
                .max_decoding_message_size(usize::MAX));
        }
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| format!("bad raft address {addr:?} of node {id}: {e}"))?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.client_config()).map_err(|e| format!("TLS to node {id}: {e}"))?;
        }
        let endpoint = endpoint
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let ch = endpoint.connect_lazy();
        channels.retain(|(nid, _), _| *nid != id);
        channels.insert(key, ch.clone());
        Ok(RaftServiceClient::with_interceptor(ch, self.token.clone()).max_decoding_message_size(usize::MAX))
    }
}

/// Sends a leader operation (see [`crate::node::LeaderOps`]) to the node at
/// `addr` (`id` 0 for a node not known by id, as a joining node's seed) and
/// answers the encoded outcome. A call that was refused or never left this
/// node is `Unavailable` (nothing ran); one that failed after it was sent
/// is `Indeterminate`.
pub async fn send_leader_op(
    peers: &Peers,
    id: u64,
    addr: &str,
    data: Vec<u8>,
    timeout: Duration,
) -> crate::Result<Vec<u8>> {
    use tonic::Code;
    let mut client = peers.client(id, addr).map_err(crate::Error::Unavailable)?;
    let mut req = tonic::Request::new(Blob { data });
    req.set_timeout(timeout);
    let started = Instant::now();
    let result = client.leader_op(req).await;
    crate::metrics::rpc("leader_op", result.is_ok(), started.elapsed());
    match result {
        Ok(reply) => Ok(reply.into_inner().data),
        Err(s) if never_sent(&s) => Err(crate::Error::Unavailable(format!("{addr} is unreachable: {}", described(&s)))),
        Err(s) if matches!(s.code(), Code::Unauthenticated | Code::Unimplemented | Code::FailedPrecondition) => {
            Err(crate::Error::Unavailable(format!("{addr} refused: {}", s.message())))
        }
        Err(s) => Err(crate::Error::Indeterminate(format!("leader operation sent to {addr}: {}", described(&s)))),
    }
}

impl RaftNetworkFactory<TypeConfig> for Peers {
    type Network = PeerConn;

    async fn new_client(&mut self, target: u64, node: &SynodNode) -> PeerConn {
        PeerConn { target, client: self.client(target, &node.raft_addr), chunk: self.snapshot_chunk, streams: true }
    }
}

/// A connection to one peer.
pub struct PeerConn {
    target: u64,
    client: Result<Client, String>,
    chunk: usize,
    /// Replicate over `AppendStream` (pipelined); false once the peer
    /// answered that it has no such call (an older version), and this
    /// connection falls back to one AppendEntries at a time.
    streams: bool,
}

/// True when the request never left this node, or never reached the
/// peer's server: the connection was not made, or its TLS handshake
/// failed (the peer reads no request before its handshake completes).
/// Decided from the status's source chain, which only this node's client
/// stack produces (an I/O error of a failed connect, a TLS error, or the
/// connector's own connect error), never from the status message, which
/// the other side (or anything in between) controls.
pub(crate) fn never_sent(status: &tonic::Status) -> bool {
    use std::io::ErrorKind::*;
    let connect_failed = status.code() == tonic::Code::Unavailable;
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if e.downcast_ref::<rustls::Error>().is_some_and(handshake_refused) {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if connect_failed
                && matches!(io.kind(), ConnectionRefused | AddrNotAvailable | NetworkUnreachable | HostUnreachable)
            {
                return true;
            }
            // rustls reports a failed handshake as an I/O error around
            // its own, which `source()` skips.
            if io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).is_some_and(handshake_refused) {
                return true;
            }
        }
        // hyper-util's connector error (a connect that failed or timed
        // out), which is not a public type to downcast to.
        if connect_failed && e.to_string().starts_with("tcp connect error") {
            return true;
        }
        source = e.source();
    }
    false
}

/// A status's message and the causes under it ("transport error" alone
/// says little).
fn described(status: &tonic::Status) -> String {
    let mut text = status.message().to_string();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// A TLS error that only a handshake produces: a certificate one side
/// would not accept. Errors of an established connection (a bad record)
/// are not: a request may have gone through before them.
fn handshake_refused(e: &rustls::Error) -> bool {
    use rustls::AlertDescription as A;
    match e {
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => true,
        rustls::Error::AlertReceived(alert) => matches!(
            alert,
            A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::CertificateRequired
                | A::HandshakeFailure
                // A signature of the handshake did not verify (a certificate
                // of another CA); record-layer failures are bad_record_mac.
                | A::DecryptError
        ),
        _ => false,
    }
}

impl PeerConn {
    fn client(&self) -> Result<Client, RPCError<TypeConfig>> {
        self.client.clone().map_err(|e| RPCError::Unreachable(Unreachable::from_string(e)))
    }

    async fn unary<Req, Resp>(
        &self,
        kind: &'static str,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
    {
        let mut client = self.client()?;
        let mut request = tonic::Request::new(Blob { data: encode(req) });
        request.set_timeout(option.hard_ttl());
        let started = Instant::now();
        let result = match kind {
            "append" => client.append_entries(request).await,
            "vote" => client.vote(request).await,
            "pre_vote" => client.pre_vote(request).await,
            _ => client.transfer_leader(request).await,
        };
        crate::metrics::rpc(kind, result.is_ok(), started.elapsed());
        match result {
            Ok(resp) => decode(&resp.into_inner().data, kind).map_err(|e| RPCError::Network(NetworkError::new(&e))),
            Err(status) if never_sent(&status) => Err(RPCError::Unreachable(Unreachable::new(&status))),
            Err(status) => Err(RPCError::Network(NetworkError::new(&status))),
        }
    }
}

type StreamAnswer = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>;

/// Most AppendEntries requests one follower's stream has unanswered. Two
/// is enough that a new entry never waits behind the commit-index request
/// before it (the one-client case); more would split a busy leader's entries
/// into many small requests, each costing both sides CPU, where waiting for
/// a slot batches them.
const APPENDS_IN_FLIGHT: usize = 2;

/// How long an append stream waits for the follower to open it or to
/// answer its oldest request before it gives up. Far longer than the
/// heartbeat interval openraft offers as the timeout: a failed stream costs
/// a backoff (200 ms) and a resend, so giving up on a follower that is slow
/// for a moment (an fsync on a busy disk, a loaded machine) stalls its
/// replication for longer than waiting would. A dead follower is noticed
/// by the heartbeats, which keep openraft's timeout (they are one-request
/// streams under openraft's own deadline).
const STREAM_PATIENCE: Duration = Duration::from_secs(1);

impl PeerConn {
    /// Opens an `AppendStream` to the peer: requests are sent as the
    /// replication task produces them, without waiting for answers, so a new
    /// entry never queues behind the answer to the previous request (the
    /// commit-index update that follows every write, for one). Answers come
    /// back in request order (one HTTP/2 stream; the follower answers in
    /// order). An answer outstanding longer than [`STREAM_PATIENCE`] (or
    /// `option.hard_ttl()`, if longer) fails the stream; an idle stream,
    /// with nothing outstanding, may wait as long as it likes.
    async fn open_append_stream<S>(
        &mut self,
        input: S,
        option: RPCOption,
    ) -> Result<BoxStream<'static, StreamAnswer>, RPCError<TypeConfig>>
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        let mut client = self.client()?;
        // When each outstanding request left, oldest first.
        let sent: Arc<Mutex<VecDeque<Instant>>> = Arc::default();
        // A request is taken from openraft only while fewer than
        // `APPENDS_IN_FLIGHT` are unanswered: while the window is full, new
        // entries gather into the next request instead of one request each.
        let window = Arc::new(tokio::sync::Semaphore::new(APPENDS_IN_FLIGHT));
        let requests =
            futures::stream::unfold((input, window.clone(), sent.clone()), |(mut input, window, log)| async move {
                window.acquire().await.ok()?.forget();
                let rpc = input.next().await?;
                log.lock().unwrap_or_else(|e| e.into_inner()).push_back(Instant::now());
                Some((Blob { data: encode(&rpc) }, (input, window, log)))
            });
        let ttl = option.hard_ttl().max(STREAM_PATIENCE);
        let opened = match tokio::time::timeout(ttl, client.append_stream(requests)).await {
            Ok(opened) => opened,
            Err(_) => {
                let e = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("opening an append stream: no answer in {ttl:?}"),
                );
                return Err(RPCError::Network(NetworkError::new(&e)));
            }
        };
        let answers = match opened {
            Ok(resp) => resp.into_inner(),
            Err(status) if never_sent(&status) => return Err(RPCError::Unreachable(Unreachable::new(&status))),
            Err(status) => {
                if status.code() == tonic::Code::Unimplemented {
                    tracing::info!(
                        target_node = self.target,
                        "peer has no append stream: replicating one request at a time"
                    );
                    self.streams = false;
                }
                return Err(RPCError::Network(NetworkError::new(&status)));
            }
        };
        let answers = futures::stream::unfold(Some(answers), move |state| {
            let (sent, window) = (sent.clone(), window.clone());
            async move {
                let mut answers = state?;
                let got = loop {
                    let oldest = sent.lock().unwrap_or_else(|e| e.into_inner()).front().copied();
                    // Nothing outstanding: wait, but look again after `ttl`
                    // in case a request has left since.
                    let deadline = oldest.unwrap_or_else(Instant::now) + ttl;
                    match tokio::time::timeout_at(deadline.into(), answers.next()).await {
                        Ok(got) => break got,
                        Err(_) if oldest.is_none() => continue,
                        Err(_) => {
                            crate::metrics::rpc("append", false, ttl);
                            let e = std::io::Error::new(
                                std::io::ErrorKind::TimedOut,
                                format!("append stream: no answer in {ttl:?}"),
                            );
                            return Some((Err(RPCError::Network(NetworkError::new(&e))), None));
                        }
                    }
                };
                let left = sent.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                window.add_permits(1);
                let took = left.map(|t| t.elapsed()).unwrap_or_default();
                match got {
                    None => None,
                    Some(Ok(blob)) => {
                        crate::metrics::rpc("append", true, took);
                        match decode::<StreamAppendResult<TypeConfig>>(&blob.data, "append stream answer") {
                            // A refused request ends the stream (openraft reads no further).
                            Ok(res) => {
                                let more = res.is_ok();
                                Some((Ok(res), more.then_some(answers)))
                            }
                            Err(e) => Some((Err(RPCError::Network(NetworkError::new(&e))), None)),
                        }
                    }
                    Some(Err(status)) => {
                        crate::metrics::rpc("append", false, took);
                        Some((Err(RPCError::Network(NetworkError::new(&status))), None))
                    }
                }
            }
        });
        Ok(Box::pin(answers))
    }
}

impl RaftNetworkV2<TypeConfig> for PeerConn {
    type SnapshotData = crate::types::SnapshotFile;

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, StreamAnswer>, RPCError<TypeConfig>>>
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        if !self.streams {
            return stream_append_sequential(self, input, option);
        }
        Box::pin(async move { self.open_append_stream(input, option).await })
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary("append", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary("vote", &rpc, &option).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary("pre_vote", &rpc, &option).await
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.unary("transfer_leader", &req, &option).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let mut client = self.client.clone().map_err(|e| StreamingError::Unreachable(Unreachable::from_string(e)))?;
        let path = snapshot.snapshot.path.clone();
        let file = tokio::fs::File::open(&path).await.map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let bytes = file.metadata().await.map(|m| m.len()).unwrap_or(0);
        let first = SnapshotChunk { vote: encode(&vote), meta: encode(&snapshot.meta), data: Vec::new() };
        tracing::info!(target_node = self.target, bytes, "sending snapshot");
        // Read the file chunk by chunk as the stream is polled: memory stays
        // bounded by one chunk. A read error ends the stream early (the
        // receiver then refuses the cut file) and fails this send.
        let chunk = self.chunk;
        let read_failed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let failed = read_failed.clone();
        let data = futures::stream::unfold(Some(file), move |state| {
            let failed = failed.clone();
            async move {
                use tokio::io::AsyncReadExt;
                let mut file = state?;
                let mut buf = vec![0u8; chunk];
                let mut filled = 0;
                while filled < chunk {
                    match file.read(&mut buf[filled..]).await {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) => {
                            tracing::warn!(error = %e, "reading snapshot file");
                            failed.store(true, std::sync::atomic::Ordering::Release);
                            return None;
                        }
                    }
                }
                if filled == 0 {
                    return None;
                }
                buf.truncate(filled);
                Some((SnapshotChunk { vote: Vec::new(), meta: Vec::new(), data: buf }, Some(file)))
            }
        });
        let chunks = futures::StreamExt::chain(tokio_stream::iter([first]), data);
        let started = Instant::now();
        let send = client.install_snapshot(chunks);
        let result = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            r = send => r,
        };
        crate::metrics::rpc("snapshot", result.is_ok(), started.elapsed());
        if read_failed.load(std::sync::atomic::Ordering::Acquire) {
            let e = std::io::Error::other(format!("reading snapshot file {} failed mid-way", path.display()));
            return Err(StreamingError::Network(NetworkError::new(&e)));
        }
        match result {
            Ok(resp) => decode(&resp.into_inner().data, "snapshot response")
                .map_err(|e| StreamingError::Network(NetworkError::new(&e))),
            Err(status) if never_sent(&status) => Err(StreamingError::Unreachable(Unreachable::new(&status))),
            Err(status) => Err(StreamingError::Network(NetworkError::new(&status))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(status: &tonic::Status) -> Vec<String> {
        let mut out = Vec::new();
        let mut e: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
        while let Some(err) = e {
            out.push(format!("{err:?}"));
            e = err.source();
        }
        out
    }

    #[tokio::test]
    async fn a_refused_connection_is_never_sent_and_a_message_alone_is_not() {
        // A port nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let ch = Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect_lazy();
        let mut client = RaftServiceClient::new(ch);
        let status = client.ping(crate::pb::Empty {}).await.unwrap_err();
        assert!(never_sent(&status), "{status:?} {:?}", chain(&status));
        // The words alone prove nothing: a server may say "connect" in any message.
        assert!(!never_sent(&tonic::Status::unavailable("could not connect to the upstream")));
        assert!(!never_sent(&tonic::Status::unavailable("Connection refused")));
    }

    #[test]
    fn a_refused_tls_handshake_is_never_sent_and_a_bad_record_may_have_been() {
        use rustls::AlertDescription as A;
        let status = |tls: rustls::Error| {
            let mut s = tonic::Status::unknown("transport error");
            s.set_source(std::sync::Arc::new(std::io::Error::new(std::io::ErrorKind::InvalidData, tls)));
            s
        };
        // The peer refused this node's certificate, or this node the peer's.
        assert!(never_sent(&status(rustls::Error::AlertReceived(A::DecryptError))));
        assert!(never_sent(&status(rustls::Error::AlertReceived(A::UnknownCA))));
        assert!(never_sent(&status(rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature))));
        // A record that did not decrypt comes after the handshake: the
        // request may have been read.
        assert!(!never_sent(&status(rustls::Error::DecryptError)));
        assert!(!never_sent(&status(rustls::Error::AlertReceived(A::BadRecordMac))));
        assert!(!never_sent(&status(rustls::Error::AlertReceived(A::CloseNotify))));
    }
}
