//! How bytes reach storage: the Redis connection core, the embedded store, the circuit
//! breaker and the route that chooses between them. Capabilities build on
//! [`route::Routed`]; they never choose a store themselves.

pub mod backplane;
pub mod breaker;
pub mod embedded;
pub mod hlc;
pub mod journal;
pub mod keys;
pub mod random;
pub mod redis;
pub mod route;
