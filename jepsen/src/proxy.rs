//! One TCP proxy per directed Raft link, so the harness can partition
//! nodes without root or iptables: node A dials B through the proxy the
//! harness gave A for B (`cluster.peer_addr_overrides`), and the proxy's
//! [`Fault`] decides what happens to the bytes.
//!
//! A fault applies to the A→B direction of the link: bytes A sends. Bytes B
//! answers on the same connection are carried or held with them, since a
//! Raft RPC whose request is lost gets no answer either; a one-way
//! partition is the A→B proxy faulted and B→A's (a separate link, B's own
//! dials) passing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What a link does with its traffic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Bytes flow.
    Pass,
    /// Connections are accepted and held; nothing is carried either way
    /// (a silent partition: the sender times out).
    Blackhole,
    /// Connections are closed at once, open ones too (a loud partition:
    /// the sender sees a reset).
    Reset,
    /// Every chunk waits `base` plus up to `jitter` before it is carried.
    Delay { base: Duration, jitter: Duration },
    /// Every chunk closes its connection with this probability (TCP cannot
    /// lose bytes inside a stream; losing the stream is what a flaky link
    /// looks like to Raft).
    Drop { probability: f64 },
}

/// A running proxy: listens on `addr`, forwards to a target.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    fault: watch::Sender<Fault>,
    /// A seeded generator for jitter and drops (the run's seed).
    rng: Arc<Mutex<u64>>,
}

impl Proxy {
    /// Listens on `listen` (port 0 for any) and forwards to `target`.
    pub async fn start(listen: &str, target: String, seed: u64) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (fault, _) = watch::channel(Fault::Pass);
        let proxy = Proxy { addr, fault, rng: Arc::new(Mutex::new(seed)) };
        let p = proxy.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let p = p.clone();
                let target = target.clone();
                tokio::spawn(async move { p.carry(inbound, target).await });
            }
        });
        Ok(proxy)
    }

    /// Changes what the link does from now on (open connections included).
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    pub fn fault(&self) -> Fault {
        *self.fault.borrow()
    }

    /// A uniform draw in [0, 1) from the link's seeded SplitMix64.
    fn draw(&self) -> f64 {
        let mut s = self.rng.lock().expect("proxy rng");
        *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    async fn carry(&self, inbound: TcpStream, target: String) {
        let mut faults = self.fault.subscribe();
        if self.fault() == Fault::Reset {
            return;
        }
        let Ok(outbound) = TcpStream::connect(&target).await else { return };
        let (mut ir, mut iw) = inbound.into_split();
        let (mut or, mut ow) = outbound.into_split();
        let mut up = [0u8; 16 * 1024];
        let mut down = [0u8; 16 * 1024];
        loop {
            tokio::select! {
                changed = faults.changed() => {
                    if changed.is_err() || self.fault() == Fault::Reset {
                        return;
                    }
                }
                n = ir.read(&mut up) => {
                    let Ok(n @ 1..) = n else { return };
                    if !self.pass(&mut faults).await || ow.write_all(&up[..n]).await.is_err() {
                        return;
                    }
                }
                n = or.read(&mut down) => {
                    let Ok(n @ 1..) = n else { return };
                    if !self.pass(&mut faults).await || iw.write_all(&down[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Applies the fault to one chunk: false closes the connection.
    async fn pass(&self, faults: &mut watch::Receiver<Fault>) -> bool {
        loop {
            match self.fault() {
                Fault::Pass => return true,
                Fault::Reset => return false,
                Fault::Drop { probability } => return self.draw() >= probability,
                Fault::Delay { base, jitter } => {
                    let wait = base + jitter.mul_f64(self.draw());
                    tokio::time::sleep(wait).await;
                    return true;
                }
                // Hold the chunk until the fault changes.
                Fault::Blackhole => {
                    if faults.changed().await.is_err() {
                        return false;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// An echo server; returns its address.
    async fn echo() -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 1024];
                    while let Ok(n @ 1..) = s.read(&mut b).await {
                        if s.write_all(&b[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    /// Sends `msg` and waits up to `within` for its echo.
    async fn round_trip(s: &mut TcpStream, msg: &[u8], within: Duration) -> Option<Vec<u8>> {
        s.write_all(msg).await.ok()?;
        let mut b = vec![0u8; msg.len()];
        match tokio::time::timeout(within, s.read_exact(&mut b)).await {
            Ok(Ok(_)) => Some(b),
            _ => None,
        }
    }

    #[tokio::test]
    async fn pass_blackhole_heal_reset_and_delay() {
        let p = Proxy::start("127.0.0.1:0", echo().await, 1).await.unwrap();
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        assert_eq!(round_trip(&mut s, b"ping", Duration::from_secs(2)).await.as_deref(), Some(&b"ping"[..]));

        p.set(Fault::Blackhole);
        assert_eq!(round_trip(&mut s, b"lost", Duration::from_millis(300)).await, None, "held, not carried");
        p.set(Fault::Pass);
        let mut b = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut b)).await.unwrap().unwrap();
        assert_eq!(&b, b"lost", "a healed link delivers what it held, like a TCP retransmit");

        p.set(Fault::Reset);
        let mut b = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await.unwrap();
        assert!(matches!(closed, Ok(0) | Err(_)), "an open connection is closed");
        let mut fresh = TcpStream::connect(p.addr).await.unwrap();
        assert_eq!(round_trip(&mut fresh, b"x", Duration::from_millis(500)).await, None, "new ones too");

        p.set(Fault::Delay { base: Duration::from_millis(150), jitter: Duration::from_millis(50) });
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        let t = Instant::now();
        assert!(round_trip(&mut s, b"slow", Duration::from_secs(3)).await.is_some());
        assert!(t.elapsed() >= Duration::from_millis(300), "both directions wait: {:?}", t.elapsed());
    }

    #[tokio::test]
    async fn drops_follow_the_probability_and_the_seed() {
        let target = echo().await;
        let survived = |seed: u64| {
            let target = target.clone();
            async move {
                let p = Proxy::start("127.0.0.1:0", target, seed).await.unwrap();
                p.set(Fault::Drop { probability: 0.5 });
                let mut alive = 0;
                for _ in 0..40 {
                    let mut s = TcpStream::connect(p.addr).await.unwrap();
                    if round_trip(&mut s, b"a", Duration::from_millis(300)).await.is_some() {
                        alive += 1;
                    }
                }
                alive
            }
        };
        let a = survived(7).await;
        assert!((2..=25).contains(&a), "each round trip is two chunks at p 0.5: about a quarter survive, {a}");
        assert_eq!(survived(7).await, a, "the same seed drops the same chunks");
        let p0 = Proxy::start("127.0.0.1:0", target.clone(), 3).await.unwrap();
        p0.set(Fault::Drop { probability: 0.0 });
        let mut s = TcpStream::connect(p0.addr).await.unwrap();
        assert!(round_trip(&mut s, b"ok", Duration::from_secs(1)).await.is_some(), "p 0 drops nothing");
    }
}
