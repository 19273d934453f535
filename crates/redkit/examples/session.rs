//! Sessions: create, merge fields, rotate after login, log out everywhere.
//!
//! `cargo run -p redkit --example session` (embedded store), or with `REDIS_URL=redis://…`.

use redkit::session::SessionOptions;
use redkit::{Config, Redkit};
use serde_json::json;

#[tokio::main]
async fn main() -> redkit::Result<()> {
    let redkit = Redkit::open(Config::from_env()?).await?;
    let sessions = redkit.sessions(SessionOptions::default())?;
    let fields = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
    let s = sessions.create(fields(json!({"cart": []})), None).await?;
    println!("anonymous session {}", s.id);
    sessions.update(&s.id, fields(json!({"cart": ["book"]}))).await?;
    let s = sessions.rotate(&s.id).await?;
    println!("after login, rotated to {}", s.id);
    let s = sessions.update(&s.id, fields(json!({"user": "ada"}))).await?;
    println!("data: {}", serde_json::Value::Object(s.data));
    sessions.delete(&s.id).await?;
    println!("logged out");
    Ok(())
}
