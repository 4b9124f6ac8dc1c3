//! The `synod` binary's library: CLI, composition root, the service layer,
//! REST (axum), public gRPC (tonic), error mapping and metrics export.
//!
//! Only this crate knows HTTP, JSON envelopes, public protos, JWT and TLS.
//! Every operation is declared once in [`ops`]; REST handlers ([`rest`]) and
//! gRPC methods ([`grpc`]) are thin adapters over the `do_*` functions of
//! the service layer; [`error`] is the one place that maps errors to HTTP
//! and gRPC status codes.
//!
//! Key types: [`service::Node`], [`error::ApiError`], [`cli::Cli`].

pub mod auth;
pub mod bench;
pub mod bench_embed;
pub mod bench_vectors;
pub mod cli;
pub mod error;
pub mod grpc;
pub mod grpc_identity;
pub mod grpc_plugins;
pub mod grpc_tasks;
pub mod grpc_vectors;
pub mod identity;
pub mod leader_ops;
pub mod local_cluster;
pub mod metrics;
pub mod ops;
pub mod plugins;
pub mod rest;
pub mod server;
pub mod service;
pub mod supervisor;
pub mod tasks;
pub mod tls;
pub mod vector_store;
pub mod vectors;

/// Generated types of the public `synod.v1` gRPC API.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("synod.v1");
}
