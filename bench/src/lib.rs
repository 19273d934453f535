//! Shared pieces of redkit's benchmarks: the small key-value capability the library's own
//! tests use (one source, included here rather than copied).

#[path = "../../crates/redkit/tests/common/mod.rs"]
pub mod common;
