//! Shared pieces of redkit's benchmarks: the small key-value capability the library's own
//! tests use (one source, included here rather than copied).

#[path = "../../crates/redkit/tests/common/mod.rs"]
pub mod common;

use redkit::Redkit;
use redkit_testkit::RedisServer;

/// One `Redkit` on `redis` and one on the embedded store, named `"redis"` and
/// `"embedded"`, for benchmarks that compare the two in the same run.
pub struct Stores {
    /// The pair, Redis first.
    pub list: [(&'static str, Redkit); 2],
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Stores {
    /// Opens both on `rt`.
    pub fn open(rt: &tokio::runtime::Runtime, redis: &RedisServer) -> Self {
        let (dr, de) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let list = rt.block_on(async {
            [
                (
                    "redis",
                    Redkit::open(common::config(Some(redis.url()), dr.path()))
                        .await
                        .unwrap(),
                ),
                ("embedded", Redkit::open(common::config(None, de.path())).await.unwrap()),
            ]
        });
        Stores { list, _dirs: (dr, de) }
    }
}
