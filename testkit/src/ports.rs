//! Ports for nodes to listen on.

use std::sync::atomic::{AtomicU32, Ordering};

/// The first port handed out and how many there are: 20000-31999.
const FIRST: u32 = 20_000;
const COUNT: u32 = 12_000;

/// A port for a node to listen on, free a moment ago. Not one the kernel
/// hands out: port 0 draws from the ephemeral range (32768-60999), where
/// outbound connections take their ports too, and one of them took a
/// node's Raft port between this check and the node's bind in a chaos run.
/// Ports come from 20000-31999, each at most once per process, starting
/// at an offset by process id so two harnesses (two test binaries) rarely
/// meet; a port found taken is skipped.
pub fn free_port() -> std::io::Result<u16> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = (std::process::id() % 600) * 20;
    for _ in 0..COUNT {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (offset + n) % COUNT) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::other(format!("no free port in {FIRST}-{}", FIRST + COUNT - 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_outside_the_ephemeral_range_and_never_handed_out_twice() {
        let ports: Vec<u16> = (0..200).map(|_| free_port().unwrap()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "a port was handed out twice");
        assert!(ports.iter().all(|p| (20_000..32_000).contains(p)), "{ports:?}");
    }

    #[test]
    fn a_port_in_use_is_skipped() {
        // Hold the next port the allocator would give, then ask.
        let next = free_port().unwrap() + 1;
        let _held = std::net::TcpListener::bind(("127.0.0.1", next));
        let got = free_port().unwrap();
        assert_ne!(got, next);
    }
}
