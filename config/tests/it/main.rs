//! Integration tests of `synod-config`: the public API only.

mod defaults;
mod env;
mod errors;
mod set;
mod units;
mod util;
