//! Integration tests of synod-store against a real RocksDB in a temp dir.

mod apply;
mod identity;
mod plugins;
mod snapshot;
mod tasks;
mod util;
mod vector_index;
mod vectors;
