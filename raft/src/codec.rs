//! Encoding of openraft's own types: one format byte, then postcard.
//!
//! postcard is compact but not self-describing, so the leading byte is the
//! whole evolution story for these values: a new layout gets a new byte and
//! a decoder for the old one. See `store/FORMAT.md`.

use std::io;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Format byte of every value this module writes.
pub const FORMAT_V1: u8 = 1;

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_V1];
    // postcard only fails on writer errors and types it cannot represent;
    // openraft's types are plain data and a Vec never fails to grow.
    let body = postcard::to_stdvec(value).expect("openraft types are postcard-encodable");
    out.extend_from_slice(&body);
    out
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> io::Result<T> {
    match bytes.split_first() {
        Some((&FORMAT_V1, body)) => postcard::from_bytes(body).map_err(|e| corrupt(what, e)),
        Some((v, _)) => Err(corrupt(what, format!("unknown format byte {v}"))),
        None => Err(corrupt(what, "empty value")),
    }
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("corrupt {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{LogId, Vote};

    #[test]
    fn round_trips_log_ids_and_votes() {
        let id: LogId = openraft::LogId::new(openraft::impls::leader_id_adv::LeaderId { term: 3, node_id: 1 }, 42);
        let back: LogId = decode(&encode(&id), "log id").unwrap();
        assert_eq!(back, id);
        let vote = Vote::new(5, 2);
        let back: Vote = decode(&encode(&vote), "vote").unwrap();
        assert_eq!(back, vote);
    }

    #[test]
    fn golden_bytes_of_a_log_id() {
        let id: LogId = openraft::LogId::new(openraft::impls::leader_id_adv::LeaderId { term: 3, node_id: 1 }, 42);
        // format byte, then postcard varints: term 3, node 1, index 42.
        assert_eq!(encode(&id), vec![1, 3, 1, 42]);
    }

    #[test]
    fn rejects_unknown_format_and_garbage() {
        assert!(decode::<LogId>(&[9, 1, 2], "log id").is_err());
        assert!(decode::<LogId>(&[], "log id").is_err());
        assert!(decode::<LogId>(&[1, 0xff], "log id").is_err());
    }
}
