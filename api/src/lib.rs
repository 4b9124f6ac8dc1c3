//! The `synod` binary's library: CLI, composition root, the service layer,
//! REST (axum), public gRPC (tonic), error mapping and metrics export.
//!
//! Only this crate knows HTTP, JSON envelopes, public protos, JWT and TLS.
//! Every operation is declared once in [`ops`]; REST handlers ([`rest`]) and
//! gRPC methods ([`grpc`]) are thin adapters over the `do_*` functions of
//! the service layer ([`service`], one module per domain); [`error`] is the
//! one place that maps errors to HTTP and gRPC status codes. Nothing for
//! tests or benchmarks lives here (see `testkit/` and `bench/`).
//!
//! Key types: [`service::Node`], [`error::ApiError`], [`cli::Cli`].

pub mod auth;
pub mod cli;
pub mod error;
pub mod grpc;
pub mod metrics;
pub mod ops;
pub mod rest;
pub mod server;
pub mod service;
pub mod supervisor;
pub mod tls;

/// Generated types of the public `synod.v1` gRPC API.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("synod.v1");
}
