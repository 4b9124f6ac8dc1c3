//! Integration tests of synod-plugins: the registry, payload validation of
//! every built-in, execution (timeouts, panics, cancellation) and the
//! built-ins' outputs.

mod builtins;
mod execute;
mod registry;
mod util;
mod validate;
