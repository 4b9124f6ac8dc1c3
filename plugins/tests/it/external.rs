//! External providers against a local fake that speaks OpenAI's wire
//! format over real HTTP: retries, Retry-After, timeouts, malformed and
//! cut-off answers, and the circuit breaker opening, failing fast,
//! half-opening and closing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use synod_plugins::external::{
    AiRequest, BreakerConfig, BreakerState, ExternalError, Operation, Provider, ProviderKind, ProviderSpec,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the fake does with the next request.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Act {
    Ok,
    /// 429 with `Retry-After: 1`.
    TooMany,
    Error500,
    /// Answers after this long.
    Slow(Duration),
    NotJson,
    /// Headers and part of the body, then the connection closes.
    CutOff,
    /// Holds the answer until `release` is notified.
    Hold,
}

struct Fake {
    addr: String,
    /// The acts of the next requests; the last one repeats.
    script: std::sync::Mutex<Vec<Act>>,
    requests: AtomicUsize,
    /// `Hold` waits for a permit here; [`Fake::release`] adds them.
    gate: tokio::sync::Semaphore,
    /// The `idempotency-key` header of each request that had one.
    keys: std::sync::Mutex<Vec<String>>,
}

impl Fake {
    async fn start(script: &[Act]) -> Arc<Fake> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = Arc::new(Fake {
            addr: listener.local_addr().unwrap().to_string(),
            script: std::sync::Mutex::new(script.to_vec()),
            requests: AtomicUsize::new(0),
            gate: tokio::sync::Semaphore::new(0),
            keys: Default::default(),
        });
        let f = fake.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(f.clone().serve(conn));
            }
        });
        fake
    }

    fn set(&self, script: &[Act]) {
        *self.script.lock().unwrap() = script.to_vec();
    }

    fn release(&self) {
        self.gate.add_permits(1000);
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn next_act(&self) -> Act {
        let mut s = self.script.lock().unwrap();
        if s.len() > 1 { s.remove(0) } else { s[0] }
    }

    /// One request per connection (the answers say `Connection: close`).
    async fn serve(self: Arc<Fake>, mut conn: TcpStream) {
        let Some((head, body)) = read_request(&mut conn).await else { return };
        if let Some(key) = head.lines().find_map(|l| l.strip_prefix("idempotency-key:")) {
            self.keys.lock().unwrap().push(key.trim().to_owned());
        }
        self.requests.fetch_add(1, Ordering::SeqCst);
        let act = self.next_act();
        let ok = || {
            // Embeddings of the right count, whatever the input.
            let n = body["input"].as_array().map_or(1, Vec::len);
            let data: Vec<Value> = (0..n).map(|i| json!({"index": i, "embedding": [i as f64, 1.0]})).collect();
            json!({"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 2, "total_tokens": 2}})
                .to_string()
        };
        let (status, text) = match act {
            Act::Ok => (200, ok()),
            Act::TooMany => (429, r#"{"error": {"message": "slow down"}}"#.to_string()),
            Act::Error500 => (500, r#"{"error": {"message": "boom"}}"#.to_string()),
            Act::Slow(d) => {
                tokio::time::sleep(d).await;
                (200, ok())
            }
            Act::NotJson => (200, "{not json".to_string()),
            Act::CutOff => {
                let head =
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"data\": [";
                let _ = conn.write_all(head.as_bytes()).await;
                return;
            }
            Act::Hold => {
                let _ = self.gate.acquire().await;
                (200, ok())
            }
        };
        let retry = if status == 429 { "retry-after: 1\r\n" } else { "" };
        let reply = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{retry}content-length: {}\r\nconnection: close\r\n\r\n{text}",
            text.len()
        );
        let _ = conn.write_all(reply.as_bytes()).await;
    }
}

/// Reads one HTTP/1.1 request with a content-length body: its head
/// (lowercased) and JSON body.
async fn read_request(conn: &mut TcpStream) -> Option<(String, Value)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = conn.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + len {
            let n = conn.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        return Some((head, serde_json::from_slice(&buf[end + 4..end + 4 + len]).ok()?));
    }
}

fn spec(fake: &Fake) -> ProviderSpec {
    ProviderSpec {
        name: "fake".into(),
        kind: ProviderKind::OpenAi,
        base_url: format!("http://{}/v1", fake.addr),
        api_key: Some("sk-test".into()),
        timeout: Duration::from_millis(500),
        max_concurrency: 8,
        queue_wait: Duration::from_millis(200),
        max_retries: 2,
        retry_backoff: Duration::from_millis(10),
        retry_max_backoff: Duration::from_secs(2),
        breaker: BreakerConfig {
            failure_threshold: 3,
            error_rate: 0.0,
            min_calls: 1,
            window: Duration::from_secs(30),
            cooldown: Duration::from_millis(300),
            half_open_probes: 1,
        },
        idempotency_header: None,
        ca_file: None,
        tenant_daily_calls: 0,
        tenant_daily_tokens: 0,
    }
}

fn embed(input: Value) -> AiRequest {
    AiRequest {
        operation: Operation::Embeddings,
        model: "m".into(),
        input,
        parameters: Default::default(),
        idempotency_key: None,
    }
}

fn chat() -> AiRequest {
    AiRequest {
        operation: Operation::Chat,
        model: "m".into(),
        input: json!("hi"),
        parameters: Default::default(),
        idempotency_key: None,
    }
}

#[tokio::test]
async fn an_answer_is_normalised_and_a_429_is_retried_after_its_retry_after() {
    let fake = Fake::start(&[Act::TooMany, Act::Ok]).await;
    let p = Provider::new(spec(&fake)).unwrap();
    let started = Instant::now();
    let r = p.call(&embed(json!(["a", "b"]))).await.unwrap();
    assert_eq!(r.output["embeddings"], json!([[0.0, 1.0], [1.0, 1.0]]));
    assert_eq!((r.attempts, r.usage.total_tokens, fake.requests()), (2, 2, 2));
    // It waited what the provider asked (a lower bound: correctness, not speed).
    assert!(started.elapsed() >= Duration::from_millis(900), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_provider_refusing_the_request_is_not_retried_and_says_why() {
    let fake = Fake::start(&[Act::Ok]).await;
    let p = Provider::new(spec(&fake)).unwrap();
    // Nothing is sent for input the provider could not take.
    let e = p.call(&embed(json!([1, 2]))).await.unwrap_err();
    assert!(matches!(e, ExternalError::Invalid(_)), "{e:?}");
    assert_eq!(fake.requests(), 0);
}

#[tokio::test]
async fn an_embedding_of_unknown_outcome_is_retried_and_a_chat_is_reported_indeterminate() {
    let fake = Fake::start(&[Act::Slow(Duration::from_secs(2)), Act::Ok]).await;
    let p = Provider::new(spec(&fake)).unwrap();
    let r = p.call(&embed(json!("a"))).await.unwrap();
    assert_eq!((r.attempts, fake.requests()), (2, 2), "an embedding is safe to repeat");

    for act in [Act::Slow(Duration::from_secs(2)), Act::CutOff, Act::NotJson] {
        let fake = Fake::start(&[act, Act::Ok]).await;
        let p = Provider::new(spec(&fake)).unwrap();
        let e = p.call(&chat()).await.unwrap_err();
        assert!(matches!(e, ExternalError::Indeterminate { .. }), "{act:?}: {e:?}");
        assert_eq!(fake.requests(), 1, "{act:?}: a chat of unknown outcome is not sent again");
    }
    // A 500 is a known failure, reported as such, and not repeated for a chat.
    let fake = Fake::start(&[Act::Error500, Act::Ok]).await;
    let e = Provider::new(spec(&fake)).unwrap().call(&chat()).await.unwrap_err();
    assert!(matches!(e, ExternalError::Unavailable { .. }), "{e:?}");
    assert_eq!(fake.requests(), 1);
}

#[tokio::test]
async fn with_an_idempotency_header_a_chat_is_retried_with_the_same_key() {
    let fake = Fake::start(&[Act::CutOff, Act::Ok]).await;
    let mut s = spec(&fake);
    s.idempotency_header = Some("idempotency-key".into());
    let p = Provider::new(s).unwrap();
    let mut req = chat();
    req.idempotency_key = Some("k1".into());
    // The fake answers embeddings' shape, which is no chat answer: the
    // second attempt arrives, and its answer is judged malformed.
    let e = p.call(&req).await.unwrap_err();
    assert!(matches!(e, ExternalError::Unavailable { .. }), "{e:?}");
    assert_eq!(*fake.keys.lock().unwrap(), ["k1", "k1"]);
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_half_opens_and_closes() {
    let fake = Fake::start(&[Act::Error500]).await;
    let p = Provider::new(spec(&fake)).unwrap();
    // An embedding is retried twice: three failures, and the breaker opens.
    let e = p.call(&embed(json!("a"))).await.unwrap_err();
    assert!(matches!(e, ExternalError::Unavailable { .. }), "{e:?}");
    assert_eq!(fake.requests(), 3);
    assert_eq!(p.breaker(Instant::now()).state, BreakerState::Open);
    // Open: refused at once, nothing sent.
    let e = p.call(&embed(json!("a"))).await.unwrap_err();
    let ExternalError::BreakerOpen { retry_after, .. } = e else { panic!("{e:?}") };
    assert!(retry_after <= Duration::from_millis(300));
    assert_eq!(fake.requests(), 3, "an open breaker calls nobody");
    // The provider recovers; after the cooldown one probe goes through and
    // its success closes the breaker.
    fake.set(&[Act::Ok]);
    tokio::time::sleep(retry_after).await;
    assert_eq!(p.breaker(Instant::now()).state, BreakerState::HalfOpen);
    p.call(&embed(json!("a"))).await.unwrap();
    assert_eq!(p.breaker(Instant::now()).state, BreakerState::Closed);
    assert_eq!(fake.requests(), 4);
}

#[tokio::test]
async fn a_failing_provider_never_holds_up_calls_to_a_healthy_one() {
    let stuck = Fake::start(&[Act::Hold]).await;
    let healthy = Fake::start(&[Act::Ok]).await;
    let mut s = spec(&stuck);
    s.timeout = Duration::from_secs(30);
    s.max_concurrency = 2;
    let stuck_p = Arc::new(Provider::new(s).unwrap());
    let mut h = spec(&healthy);
    h.name = "healthy".into();
    let healthy_p = Provider::new(h).unwrap();
    // Fill the stuck provider's slots: those calls are held by its server.
    let held: Vec<_> = (0..2)
        .map(|_| {
            let p = stuck_p.clone();
            tokio::spawn(async move { p.call(&embed(json!("a"))).await })
        })
        .collect();
    while stuck.requests() < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A third call to it waits queue_wait for a slot, then is refused.
    let e = stuck_p.call(&embed(json!("a"))).await.unwrap_err();
    assert!(matches!(e, ExternalError::Busy { limit: 2, .. }), "{e:?}");
    // The healthy provider answers while the stuck one still holds its calls.
    for _ in 0..5 {
        healthy_p.call(&embed(json!("b"))).await.unwrap();
    }
    assert!(held.iter().all(|h| !h.is_finished()), "the stuck calls are still held");
    stuck.release();
    for h in held {
        h.await.unwrap().unwrap();
    }
}
