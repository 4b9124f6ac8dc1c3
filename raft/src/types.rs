//! The openraft type configuration of Synod and the small types it names.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How other nodes reach a node. Stored in the Raft membership.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SynodNode {
    pub raft_addr: String,
    pub http_addr: String,
    pub grpc_addr: String,
}

/// A replicated request: an encoded `synod.store.v1.Command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request(#[serde(with = "bytes")] pub Vec<u8>);

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Request({} bytes)", self.0.len())
    }
}

/// The state machine's answer: an encoded `synod.store.v1.CommandResult`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response(#[serde(with = "bytes")] pub Vec<u8>);

/// A `Vec<u8>` as serde bytes rather than a sequence of `u8`. In postcard
/// both are a varint length and the raw bytes, so the log's format is
/// unchanged (a test holds the old encoding); but bytes are copied at once
/// where a sequence is walked one element at a time, which a 1.5 MB upsert
/// of vectors made visible in a profile.
mod bytes {
    use std::fmt;

    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(Bytes)
    }

    struct Bytes;

    impl<'de> Visitor<'de> for Bytes {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        /// Formats without a bytes type write a sequence (JSON's array).
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
            while let Some(b) = seq.next_element()? {
                v.push(b);
            }
            Ok(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `#[derive]` wrote before the bytes form: the same struct with a
    /// plain `Vec<u8>`.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Old(Vec<u8>);

    #[test]
    fn the_log_encoding_is_unchanged() {
        for data in [vec![], vec![0u8, 1, 255], (0..=255u8).cycle().take(70_000).collect::<Vec<u8>>()] {
            let new = postcard::to_stdvec(&Request(data.clone())).unwrap();
            let old = postcard::to_stdvec(&Old(data.clone())).unwrap();
            assert_eq!(new, old, "postcard bytes of {} bytes", data.len());
            assert_eq!(postcard::from_bytes::<Request>(&old).unwrap().0, data);
            assert_eq!(postcard::from_bytes::<Old>(&new).unwrap().0, data);
            assert_eq!(postcard::from_bytes::<Response>(&old).unwrap().0, data);
            // JSON (never used for the log) still round-trips.
            let json = serde_json::to_string(&Request(data.clone())).unwrap();
            assert_eq!(serde_json::from_str::<Request>(&json).unwrap().0, data);
        }
    }
}

/// A snapshot on disk (see `store/FORMAT.md` for its layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub path: PathBuf,
}

openraft::declare_raft_types!(
    /// Synod's Raft types: u64 node ids and terms, protobuf commands.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = u64,
        Node = SynodNode,
);

pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotFile>;
pub type Raft = openraft::Raft<TypeConfig, crate::StateMachine>;
pub type RaftMetrics = openraft::RaftMetrics<TypeConfig>;
