//! Round trip of a no-op call to the embedded store's SQLite thread (the floor under every
//! embedded-store operation), sequential from one task.
//!
//! Run: `cargo run --release -p redkit-bench --bin sqlite_handoff`

use std::time::Instant;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = redkit::core::embedded::EmbeddedStore::open(dir.path()).unwrap();
    for _ in 0..2000 {
        store.sql("noop", |_| Ok(())).await.unwrap();
    }
    let mut samples = Vec::new();
    for _ in 0..5 {
        let n = 20_000;
        let t = Instant::now();
        for _ in 0..n {
            store.sql("noop", |_| Ok(())).await.unwrap();
        }
        samples.push(t.elapsed() / n);
    }
    samples.sort();
    println!(
        "no-op SQLite round trip: median {:?} (min {:?}, max {:?})",
        samples[2], samples[0], samples[4]
    );
}
