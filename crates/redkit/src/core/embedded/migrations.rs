//! Versioned schema migrations for the embedded SQLite database.
//!
//! `PRAGMA user_version` holds the number of migrations applied. Each entry of
//! [`MIGRATIONS`] runs once, in order, inside a transaction; capabilities append their
//! own. Never edit an entry that has shipped: add a new one.

use rusqlite::Connection;

use crate::error::{Error, Result};

/// The migrations, in order. Version N is `MIGRATIONS[N - 1]`.
pub const MIGRATIONS: &[&str] = &[
    // 1: the failover journal (see core::journal).
    "CREATE TABLE journal (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        capability TEXT    NOT NULL,
        entry      BLOB    NOT NULL,
        at_ms      INTEGER NOT NULL
    );
    CREATE INDEX journal_by_capability ON journal (capability, seq);",
    // 2: a general durable key-value table for capabilities that need no schema of their own.
    "CREATE TABLE kv (
        space      TEXT    NOT NULL,
        key        TEXT    NOT NULL,
        value      BLOB    NOT NULL,
        expires_ms INTEGER,
        PRIMARY KEY (space, key)
    ) WITHOUT ROWID;",
    // 3: the cache's L2 (see cache::embedded).
    "CREATE TABLE cache_entries (
        ns         TEXT    NOT NULL,
        key        TEXT    NOT NULL,
        bytes      BLOB    NOT NULL,
        expires_ms INTEGER NOT NULL,
        PRIMARY KEY (ns, key)
    ) WITHOUT ROWID;
    CREATE INDEX cache_entries_by_expiry ON cache_entries (expires_ms);
    CREATE TABLE cache_tags (
        ns  TEXT NOT NULL,
        tag TEXT NOT NULL,
        key TEXT NOT NULL,
        PRIMARY KEY (ns, tag, key)
    ) WITHOUT ROWID;",
    // 4: fencing counters of host-local locks (see lock::embedded).
    "CREATE TABLE lock_fences (
        name  TEXT    NOT NULL PRIMARY KEY,
        fence INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 5: sessions (see session::embedded); data is a JSON object.
    "CREATE TABLE sessions (
        id         TEXT    NOT NULL PRIMARY KEY,
        user       TEXT,
        data       TEXT    NOT NULL,
        created_ms INTEGER NOT NULL,
        last_ms    INTEGER NOT NULL,
        idle_ms    INTEGER NOT NULL,
        abs_ms     INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_by_user ON sessions (user);",
    // 6: job queues (see jobs::embedded). A lease is the token and lease_until_ms columns.
    "CREATE TABLE jobs (
        queue          TEXT    NOT NULL,
        id             TEXT    NOT NULL,
        seq            INTEGER NOT NULL,
        state          TEXT    NOT NULL,
        payload        TEXT    NOT NULL,
        priority       INTEGER NOT NULL,
        attempts       INTEGER NOT NULL,
        max_attempts   INTEGER NOT NULL,
        backoff_kind   INTEGER NOT NULL,
        backoff_ms     INTEGER NOT NULL,
        backoff_max_ms INTEGER NOT NULL,
        timeout_ms     INTEGER NOT NULL,
        unique_key     TEXT,
        progress       TEXT,
        last_error     TEXT,
        created_ms     INTEGER NOT NULL,
        run_at_ms      INTEGER NOT NULL,
        token          TEXT,
        worker         TEXT,
        lease_until_ms INTEGER,
        finished_ms    INTEGER,
        PRIMARY KEY (queue, id)
    ) WITHOUT ROWID;
    CREATE INDEX jobs_ready ON jobs (queue, state, priority DESC, seq);
    CREATE INDEX jobs_due ON jobs (queue, state, run_at_ms);
    CREATE INDEX jobs_finished ON jobs (queue, state, finished_ms);
    CREATE UNIQUE INDEX jobs_unique ON jobs (queue, unique_key)
        WHERE unique_key IS NOT NULL AND state IN ('waiting', 'delayed', 'active');
    CREATE TABLE job_queues (
        queue           TEXT    NOT NULL PRIMARY KEY,
        paused          INTEGER NOT NULL DEFAULT 0,
        seq             INTEGER NOT NULL DEFAULT 0,
        failed_total    INTEGER NOT NULL DEFAULT 0,
        completed_total INTEGER NOT NULL DEFAULT 0,
        expired_total   INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE TABLE job_schedule_ticks (
        queue TEXT    NOT NULL,
        name  TEXT    NOT NULL,
        tick  INTEGER NOT NULL,
        PRIMARY KEY (queue, name)
    ) WITHOUT ROWID;",
    // 7: the outage data model (see core::journal and core::route). Journal entries carry
    // their hybrid-logical timestamp; refused ones are dead-lettered. Copies kept for an
    // outage belong to a generation, dropped by bumping it. Sessions keep the version Redis
    // gave them, their fields' stamps, and whether the outage changed them. Host-local
    // fences become one counter for every name (one row, however many names are locked).
    "ALTER TABLE journal ADD COLUMN ts INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE journal_dead (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        capability TEXT    NOT NULL,
        entry      BLOB    NOT NULL,
        ts         INTEGER NOT NULL,
        at_ms      INTEGER NOT NULL,
        error      TEXT    NOT NULL
    );
    CREATE TABLE generations (
        name TEXT    NOT NULL PRIMARY KEY,
        gen  INTEGER NOT NULL
    ) WITHOUT ROWID;
    ALTER TABLE sessions ADD COLUMN gen INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN dirty INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN ver INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN stamps TEXT;
    CREATE INDEX sessions_dirty ON sessions (dirty) WHERE dirty = 1;
    CREATE INDEX sessions_by_gen ON sessions (gen);
    CREATE INDEX sessions_by_expiry ON sessions (abs_ms);
    CREATE TABLE session_tombstones (
        id       TEXT    NOT NULL PRIMARY KEY,
        ver      INTEGER NOT NULL,
        until_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    ALTER TABLE cache_entries ADD COLUMN gen INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX cache_entries_by_gen ON cache_entries (gen);
    CREATE INDEX cache_tags_by_key ON cache_tags (ns, key);
    INSERT INTO lock_fences (name, fence) SELECT '', COALESCE(MAX(fence), 0) FROM lock_fences
        WHERE true ON CONFLICT (name) DO UPDATE SET fence = MAX(fence, excluded.fence);
    DELETE FROM lock_fences WHERE name <> '';",
    // 8: channels (see pubsub::embedded): the epoch and last offset of each channel, its
    // history, and idempotency records; rows belong to a generation (outage copies).
    "CREATE TABLE channel_meta (
        channel TEXT    NOT NULL PRIMARY KEY,
        epoch   TEXT    NOT NULL,
        offset  INTEGER NOT NULL,
        gen     INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE channel_history (
        channel TEXT    NOT NULL,
        offset  INTEGER NOT NULL,
        data    TEXT    NOT NULL,
        at_ms   INTEGER NOT NULL,
        PRIMARY KEY (channel, offset)
    ) WITHOUT ROWID;
    CREATE TABLE channel_dedupe (
        channel  TEXT    NOT NULL,
        key      TEXT    NOT NULL,
        epoch    TEXT    NOT NULL,
        offset   INTEGER NOT NULL,
        until_ms INTEGER NOT NULL,
        PRIMARY KEY (channel, key)
    ) WITHOUT ROWID;",
    // 9: records (see records::embedded, records::lists, records::counters): collection
    // definitions, records with their index rows, capped lists, counter buckets. Rows of
    // an outage belong to a generation.
    "CREATE TABLE record_collections (
        name  TEXT NOT NULL PRIMARY KEY,
        spec  TEXT NOT NULL,
        stamp TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE records (
        coll          TEXT    NOT NULL,
        id            TEXT    NOT NULL,
        data          TEXT    NOT NULL,
        version       INTEGER NOT NULL,
        ts            INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        gen           INTEGER NOT NULL,
        PRIMARY KEY (coll, id)
    ) WITHOUT ROWID;
    CREATE INDEX records_by_expiry ON records (coll, expires_at_ms) WHERE expires_at_ms > 0;
    CREATE INDEX records_by_gen ON records (gen);
    CREATE TABLE record_index (
        coll  TEXT NOT NULL,
        field TEXT NOT NULL,
        id    TEXT NOT NULL,
        key   TEXT,
        num   REAL,
        PRIMARY KEY (coll, field, id)
    ) WITHOUT ROWID;
    CREATE INDEX record_index_by_key ON record_index (coll, field, key, id) WHERE key IS NOT NULL;
    CREATE INDEX record_index_by_num ON record_index (coll, field, num, id) WHERE num IS NOT NULL;
    CREATE INDEX record_index_by_id ON record_index (coll, id);
    CREATE TABLE record_lists (
        name TEXT    NOT NULL,
        seq  INTEGER NOT NULL,
        item TEXT    NOT NULL,
        PRIMARY KEY (name, seq)
    ) WITHOUT ROWID;
    CREATE TABLE record_list_meta (
        name          TEXT    NOT NULL PRIMARY KEY,
        expires_at_ms INTEGER NOT NULL,
        gen           INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE record_counters (
        name   TEXT    NOT NULL,
        labels TEXT    NOT NULL,
        gran   TEXT    NOT NULL,
        start  INTEGER NOT NULL,
        value  INTEGER NOT NULL,
        gen    INTEGER NOT NULL,
        PRIMARY KEY (name, labels, gran, start)
    ) WITHOUT ROWID;
    CREATE INDEX record_counters_by_gen ON record_counters (gen);
    CREATE TABLE record_counter_labels (
        name   TEXT    NOT NULL,
        labels TEXT    NOT NULL,
        gen    INTEGER NOT NULL,
        PRIMARY KEY (name, labels)
    ) WITHOUT ROWID;",
    // 10: jobs per queue and state, kept by triggers so that no code path can forget them
    // and a queue's counts are read without counting its rows (see jobs::embedded).
    "CREATE TABLE job_counts (
        queue TEXT    NOT NULL,
        state TEXT    NOT NULL,
        n     INTEGER NOT NULL,
        PRIMARY KEY (queue, state)
    ) WITHOUT ROWID;
    INSERT INTO job_counts (queue, state, n) SELECT queue, state, count(*) FROM jobs GROUP BY queue, state;
    CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs BEGIN
        INSERT INTO job_counts (queue, state, n) VALUES (NEW.queue, NEW.state, 1)
            ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs BEGIN
        UPDATE job_counts SET n = n - 1 WHERE queue = OLD.queue AND state = OLD.state;
    END;
    CREATE TRIGGER job_counts_move AFTER UPDATE OF queue, state ON jobs
        WHEN OLD.queue IS NOT NEW.queue OR OLD.state IS NOT NEW.state BEGIN
        UPDATE job_counts SET n = n - 1 WHERE queue = OLD.queue AND state = OLD.state;
        INSERT INTO job_counts (queue, state, n) VALUES (NEW.queue, NEW.state, 1)
            ON CONFLICT (queue, state) DO UPDATE SET n = n + 1;
    END;",
];

/// Applies every migration newer than the database's `user_version`.
pub fn apply(conn: &mut Connection) -> Result<()> {
    let current: usize = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if current > MIGRATIONS.len() {
        return Err(Error::Storage(format!(
            "the data dir was written by a newer redkit (schema version {current}, this build knows {})",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .map_err(|e| Error::Storage(format!("migration {} failed: {e}", i + 1)))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_once_and_refuses_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        apply(&mut conn).unwrap();
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v as usize, MIGRATIONS.len());
        conn.pragma_update(None, "user_version", 999).unwrap();
        assert!(apply(&mut conn).unwrap_err().to_string().contains("newer redkit"));
    }

    /// (queue, state, jobs) rows.
    type Counts = Vec<(String, String, i64)>;

    /// What `job_counts` says, and what counting the rows says.
    fn job_counts(conn: &Connection) -> (Counts, Counts) {
        let rows = |sql: &str| {
            conn.prepare(sql)
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<rusqlite::Result<Vec<_>>>()
                .unwrap()
        };
        (
            rows("SELECT queue, state, n FROM job_counts WHERE n > 0 ORDER BY queue, state"),
            rows("SELECT queue, state, count(*) FROM jobs GROUP BY queue, state ORDER BY queue, state"),
        )
    }

    #[test]
    fn job_counts_follow_every_insert_move_and_delete_and_start_from_the_rows_there() {
        let mut conn = Connection::open_in_memory().unwrap();
        let version = MIGRATIONS
            .iter()
            .position(|m| m.contains("CREATE TABLE job_counts"))
            .unwrap();
        for sql in &MIGRATIONS[..version] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", version as i64).unwrap();
        let insert = |conn: &Connection, queue: &str, id: &str, state: &str| {
            conn.execute(
                "INSERT INTO jobs (queue, id, seq, state, payload, priority, attempts, max_attempts, backoff_kind,
                   backoff_ms, backoff_max_ms, timeout_ms, created_ms, run_at_ms)
                 VALUES (?1, ?2, 0, ?3, '{}', 0, 0, 1, 0, 0, 0, 0, 0, 0)",
                [queue, id, state],
            )
            .unwrap();
        };
        insert(&conn, "a", "before-1", "waiting");
        insert(&conn, "a", "before-2", "completed");
        apply(&mut conn).unwrap();
        let (kept, counted) = job_counts(&conn);
        assert_eq!(kept, counted, "rows already there are counted by the migration");

        for i in 0..20 {
            insert(&conn, if i % 3 == 0 { "b" } else { "a" }, &format!("j{i}"), "waiting");
        }
        conn.execute(
            "UPDATE jobs SET state = 'active' WHERE id IN ('j1', 'j2', 'j3', 'before-1')",
            [],
        )
        .unwrap();
        conn.execute("UPDATE jobs SET state = 'dead' WHERE id = 'j3'", [])
            .unwrap();
        conn.execute("UPDATE jobs SET payload = 'x' WHERE id = 'j4'", [])
            .unwrap();
        conn.execute("UPDATE jobs SET state = state WHERE id = 'j5'", [])
            .unwrap();
        conn.execute("UPDATE jobs SET queue = 'c' WHERE id = 'j6'", []).unwrap();
        conn.execute("DELETE FROM jobs WHERE id IN ('j1', 'j7', 'before-2')", [])
            .unwrap();
        let (kept, counted) = job_counts(&conn);
        assert_eq!(kept, counted);
        assert!(kept.iter().any(|(q, s, n)| q == "a" && s == "active" && *n == 2));
    }
}
