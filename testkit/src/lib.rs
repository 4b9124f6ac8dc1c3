//! Real `synod` processes for tests and benchmarks, black-box: a node is a
//! process on loopback ports, reached over its public REST API.
//!
//! - [`ports`]: the one port allocator (never the kernel's ephemeral range);
//! - [`process`]: starting a node process with its log captured, signals,
//!   kill on drop;
//! - [`local_cluster`]: a cluster of such processes with an admin client,
//!   for the API tests and the benchmarks (the chaos harness in `jepsen/`
//!   builds its own, with proxies on every link, on the first two).
//!
//! Nothing here links the synod crates: the harness sees what a user sees.

pub mod local_cluster;
pub mod ports;
pub mod process;

pub use local_cluster::{Credentials, LocalCluster, LocalNode};
pub use ports::free_port;
pub use process::NodeProcess;
