//! Integration tests of the pure scheduling core, one module per rule.

mod fairness;
mod placement;
mod priority;
mod props;
mod requeue;
mod rounds;
mod util;
mod worker;
