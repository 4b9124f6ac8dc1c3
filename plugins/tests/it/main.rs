//! Integration tests of synod-plugins: the registry, payload validation of
//! every built-in, execution (timeouts, panics, cancellation), the
//! built-ins' outputs and the `pipeline` built-in.

mod builtins;
mod execute;
mod models;
mod pipeline;
mod registry;
mod util;
mod validate;
mod wasm;
