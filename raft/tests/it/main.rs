//! Integration tests of synod-raft.

mod storage_suite;
