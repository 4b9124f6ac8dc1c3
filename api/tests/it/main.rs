//! Integration tests of the `synod` binary: real processes on 127.0.0.1.

mod config_check;
mod deps_check;
mod fakes;
mod t10_single_node;
mod t12_grpc_tools;
mod t20_failover;
mod t30_snapshot_catchup;
mod t40_membership;
mod t45_seeds;
mod t47_backup;
mod t50_restart_all;
mod t60_tasks;
mod t70_security;
mod t72_cluster_channel;
mod t74_credentials;
mod t80_tls;
mod t85_dashboard;
mod t86_grafana;
mod t90_vectors;
mod t92_bounded_reads;
mod t95_models;
mod t96_wasm_plugins;
mod t97_subprocess_plugins;
mod t98_external;
mod t99_backends;
mod util;
