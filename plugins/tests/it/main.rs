//! Integration tests of synod-plugins: the registry, payload validation of
//! every built-in, execution (timeouts, panics, cancellation), the
//! built-ins' outputs, the `pipeline` built-in, WASM and subprocess plugins.

mod builtins;
mod execute;
mod external;
mod models;
mod pipeline;
mod registry;
mod subprocess;
mod util;
mod validate;
mod wasm;
