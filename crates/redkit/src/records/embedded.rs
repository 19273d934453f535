//! Records in SQLite: the store without Redis, and the stand-in while Redis is away. A
//! write is one transaction: the record, its index rows and, in an outage, its journal
//! operation. In a deployment with Redis the rows are the outage's copies (tagged with a
//! generation, dropped after recovery) and the definitions are a mirror of Redis's.

use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};

use super::backend::{Applied, Cursor, Query, Record, RecordBackend, Stamp};
use super::collection::{IndexKind, IndexSpec, Schema, equal_key, range_score};
use crate::core::embedded::{EmbeddedStore, Generation};
use crate::core::journal::{Pending, pending};
use crate::error::{Error, Result};
use crate::stats::now_ms;

/// Records in SQLite.
pub struct EmbeddedRecords {
    store: Arc<EmbeddedStore>,
    generation: Arc<Generation>,
    /// No Redis is configured: definitions are made here.
    standalone: bool,
}

impl EmbeddedRecords {
    pub(crate) fn new(store: Arc<EmbeddedStore>, standalone: bool) -> Self {
        EmbeddedRecords {
            generation: store.generation("record"),
            store,
            standalone,
        }
    }

    /// Keeps a copy of a definition read from Redis, for an outage.
    pub(crate) async fn mirror(&self, schema: Schema) -> Result<()> {
        self.store
            .sql("record_mirror", move |c| {
                c.prepare_cached("INSERT OR REPLACE INTO record_collections (name, spec, stamp) VALUES (?1, ?2, ?3)")?
                    .execute(params![schema.name, serde_json::to_string(&schema.spec)?, schema.stamp])?;
                Ok(())
            })
            .await
    }

    /// After an outage: its copies become invisible at once, never served as truth again
    /// (see `Recovery::seal`).
    pub(crate) fn seal(&self) -> crate::core::route::BoxFuture<'static, Result<()>> {
        self.generation.seal()
    }

    /// Deletes the copies [`EmbeddedRecords::seal`] made invisible; those of the current
    /// generation stay.
    pub(crate) fn forget_outage(&self) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        let (generation, store) = (self.generation.clone(), self.store.clone());
        async move {
            let generation = generation.current() as i64;
            store
                .sql("record_forget_outage", move |c| {
                    let tx = c.transaction()?;
                    tx.execute(
                        "DELETE FROM record_index WHERE (coll, id) IN (SELECT coll, id FROM records WHERE gen < ?1)",
                        [generation],
                    )?;
                    tx.execute("DELETE FROM records WHERE gen < ?1", [generation])?;
                    tx.commit()?;
                    Ok(())
                })
                .await
        }
    }
}

fn current_stamp(c: &Connection, name: &str) -> Result<Option<String>> {
    Ok(
        c.prepare_cached("SELECT stamp FROM record_collections WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?,
    )
}

struct Stored {
    data: Map<String, Value>,
    version: u64,
    expires: u64,
}

fn load(c: &Connection, coll: &str, id: &str, now: u64) -> Result<Option<Stored>> {
    let row: Option<(String, i64, i64)> = c
        .prepare_cached("SELECT data, version, expires_at_ms FROM records WHERE coll = ?1 AND id = ?2")?
        .query_row(params![coll, id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((data, version, expires)) = row else {
        return Ok(None);
    };
    if expires != 0 && expires as u64 <= now {
        return Ok(None);
    }
    Ok(Some(Stored {
        data: serde_json::from_str(&data)?,
        version: version as u64,
        expires: expires as u64,
    }))
}

/// Writes a record and its index rows (replacing the old ones).
fn store(c: &Connection, schema: &Schema, id: &str, s: &Stored, ts: u64, generation: i64) -> Result<()> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO records (coll, id, data, version, ts, expires_at_ms, gen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        schema.name,
        id,
        serde_json::to_string(&s.data)?,
        s.version as i64,
        ts as i64,
        s.expires as i64,
        generation
    ])?;
    c.prepare_cached("DELETE FROM record_index WHERE coll = ?1 AND id = ?2")?
        .execute(params![schema.name, id])?;
    for ix in &schema.spec.indexes {
        if let Some(v) = s.data.get(&ix.field) {
            index_row(c, &schema.name, id, &ix.field, ix.kind, v)?;
        }
    }
    Ok(())
}

/// Files one value in an index if it can be (the same rule as Redis's scripts: strings,
/// numbers and booleans in equal indexes, numbers in range indexes).
fn index_row(c: &Connection, coll: &str, id: &str, field: &str, kind: IndexKind, v: &Value) -> Result<()> {
    let (key, num) = match kind {
        IndexKind::Equal => match equal_key(field, v) {
            Ok(k) => (Some(k), None),
            Err(_) => return Ok(()),
        },
        IndexKind::Range => match range_score(field, v) {
            Ok(n) => (None, Some(n)),
            Err(_) => return Ok(()),
        },
    };
    c.prepare_cached("INSERT OR REPLACE INTO record_index (coll, field, id, key, num) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![coll, field, id, key, num])?;
    Ok(())
}

fn remove(c: &Connection, coll: &str, id: &str) -> Result<bool> {
    c.prepare_cached("DELETE FROM record_index WHERE coll = ?1 AND id = ?2")?
        .execute(params![coll, id])?;
    Ok(c.prepare_cached("DELETE FROM records WHERE coll = ?1 AND id = ?2")?
        .execute(params![coll, id])?
        > 0)
}

fn record(id: String, data: &str, version: i64, expires: i64) -> Result<Record> {
    Ok(Record {
        id,
        data: serde_json::from_str(data)?,
        version: version as u64,
        expires_at_ms: (expires != 0).then_some(expires as u64),
    })
}

impl EmbeddedRecords {
    /// Runs one write in a transaction: refused if the schema moved, recorded in the
    /// journal (in an outage) only when it took effect.
    async fn write<T: Send + 'static>(
        &self,
        op: &'static str,
        schema: &Schema,
        f: impl FnOnce(&Connection, &Schema, i64) -> Result<Applied<T>> + Send + 'static,
    ) -> Result<Applied<T>> {
        let schema = schema.clone();
        let (journal, generation): (Option<Pending>, i64) = (pending(), self.generation.current() as i64);
        self.store
            .sql(op, move |c| {
                let tx = c.transaction()?;
                if current_stamp(&tx, &schema.name)?.as_deref() != Some(schema.stamp.as_str()) {
                    return Ok(Applied::StaleSchema);
                }
                let out = f(&tx, &schema, generation)?;
                if let (Applied::Done(_), Some(p)) = (&out, journal) {
                    p.record(&tx)?;
                }
                tx.commit()?;
                Ok(out)
            })
            .await
    }
}

#[async_trait::async_trait]
impl RecordBackend for EmbeddedRecords {
    async fn schema(&self, name: &str) -> Result<Option<Schema>> {
        let name = name.to_string();
        self.store
            .sql("record_schema", move |c| {
                let row: Option<(String, String)> = c
                    .prepare_cached("SELECT spec, stamp FROM record_collections WHERE name = ?1")?
                    .query_row([&name], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                row.map(|(spec, stamp)| {
                    Ok(Schema {
                        name: name.clone(),
                        spec: serde_json::from_str(&spec)?,
                        stamp,
                    })
                })
                .transpose()
            })
            .await
    }

    async fn schemas(&self) -> Result<Vec<Schema>> {
        self.store
            .sql("record_schemas", |c| {
                let mut stmt = c.prepare_cached("SELECT name, spec, stamp FROM record_collections ORDER BY name")?;
                let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?)))?;
                let mut out = Vec::new();
                for row in rows {
                    let (name, spec, stamp) = row?;
                    out.push(Schema {
                        name,
                        spec: serde_json::from_str(&spec)?,
                        stamp,
                    });
                }
                Ok(out)
            })
            .await
    }

    async fn define(&self, schema: &Schema, expected: Option<&str>, dropped: &[IndexSpec]) -> Result<bool> {
        if !self.standalone {
            return Err(Error::Unavailable(
                "collections are defined in Redis, and Redis is unavailable".into(),
            ));
        }
        let (schema, expected, dropped) = (schema.clone(), expected.map(str::to_string), dropped.to_vec());
        self.store
            .sql("record_define", move |c| {
                let tx = c.transaction()?;
                if current_stamp(&tx, &schema.name)? != expected {
                    return Ok(false);
                }
                tx.prepare_cached("INSERT OR REPLACE INTO record_collections (name, spec, stamp) VALUES (?1, ?2, ?3)")?
                    .execute(params![schema.name, serde_json::to_string(&schema.spec)?, schema.stamp])?;
                for ix in &dropped {
                    tx.execute(
                        "DELETE FROM record_index WHERE coll = ?1 AND field = ?2",
                        params![schema.name, ix.field],
                    )?;
                }
                tx.commit()?;
                Ok(true)
            })
            .await
    }

    async fn undefine(&self, schema: &Schema) -> Result<bool> {
        if !self.standalone {
            return Err(Error::Unavailable(
                "collections are defined in Redis, and Redis is unavailable".into(),
            ));
        }
        let (schema, name) = (schema.clone(), schema.name.clone());
        let done = self
            .store
            .sql("record_undefine", move |c| {
                let tx = c.transaction()?;
                if current_stamp(&tx, &schema.name)?.as_deref() != Some(schema.stamp.as_str()) {
                    return Ok(false);
                }
                tx.execute("DELETE FROM record_collections WHERE name = ?1", [&schema.name])?;
                tx.commit()?;
                Ok(true)
            })
            .await?;
        if done {
            // Emptied in batches, so the one SQLite thread is never held for long.
            loop {
                let name = name.clone();
                let left: usize = self
                    .store
                    .sql("record_clear", move |c| {
                        let tx = c.transaction()?;
                        tx.execute(
                            "DELETE FROM record_index WHERE (coll, id) IN (SELECT coll, id FROM records WHERE coll = ?1 LIMIT 1000)",
                            [&name],
                        )?;
                        let n = tx.execute(
                            "DELETE FROM records WHERE (coll, id) IN (SELECT coll, id FROM records WHERE coll = ?1 LIMIT 1000)",
                            [&name],
                        )?;
                        if n == 0 {
                            tx.execute("DELETE FROM record_index WHERE coll = ?1", [&name])?;
                        }
                        tx.commit()?;
                        Ok(n)
                    })
                    .await?;
                if left == 0 {
                    break;
                }
            }
        }
        Ok(done)
    }

    async fn put(
        &self,
        schema: &Schema,
        id: &str,
        fields: &Map<String, Value>,
        if_version: Option<u64>,
        stamp: Stamp,
    ) -> Result<Applied<u64>> {
        let (id, fields) = (id.to_string(), fields.clone());
        self.write("record_put", schema, move |c, schema, generation| {
            let now = now_ms();
            let version = load(c, &schema.name, &id, now)?.map_or(0, |s| s.version);
            if if_version.is_some_and(|v| v != version) {
                return Ok(Applied::VersionConflict(version));
            }
            let stored = Stored {
                data: fields,
                version: version + 1,
                expires: stamp.expires_at_ms,
            };
            store(c, schema, &id, &stored, stamp.ts, generation)?;
            Ok(Applied::Done(stored.version))
        })
        .await
    }

    async fn patch(
        &self,
        schema: &Schema,
        id: &str,
        changes: &Map<String, Value>,
        if_version: Option<u64>,
        stamp: Stamp,
    ) -> Result<Applied<u64>> {
        let (id, changes) = (id.to_string(), changes.clone());
        self.write("record_patch", schema, move |c, schema, generation| {
            let Some(mut stored) = load(c, &schema.name, &id, now_ms())? else {
                return Ok(if if_version.is_some_and(|v| v != 0) {
                    Applied::VersionConflict(0)
                } else {
                    Applied::Missing
                });
            };
            if if_version.is_some_and(|v| v != stored.version) {
                return Ok(Applied::VersionConflict(stored.version));
            }
            for (k, v) in changes {
                if v.is_null() {
                    stored.data.remove(&k);
                } else {
                    stored.data.insert(k, v);
                }
            }
            let size = serde_json::to_string(&stored.data)?.len();
            if size > schema.spec.max_bytes {
                return Ok(Applied::TooLarge(size));
            }
            stored.version += 1;
            stored.expires = stamp.expires_at_ms;
            store(c, schema, &id, &stored, stamp.ts, generation)?;
            Ok(Applied::Done(stored.version))
        })
        .await
    }

    async fn delete(&self, schema: &Schema, id: &str, _stamp: Stamp) -> Result<Applied<bool>> {
        let id = id.to_string();
        self.write("record_delete", schema, move |c, schema, _| {
            let live = load(c, &schema.name, &id, now_ms())?.is_some();
            remove(c, &schema.name, &id)?;
            Ok(Applied::Done(live))
        })
        .await
    }

    async fn incr(&self, schema: &Schema, id: &str, field: &str, by: i64, stamp: Stamp) -> Result<Applied<(i64, u64)>> {
        let (id, field) = (id.to_string(), field.to_string());
        self.write("record_incr", schema, move |c, schema, generation| {
            let mut stored = load(c, &schema.name, &id, now_ms())?.unwrap_or(Stored {
                data: Map::new(),
                version: 0,
                expires: 0,
            });
            let current = match stored.data.get(&field) {
                None => 0,
                Some(v) => match v.as_i64() {
                    Some(n) => n,
                    None => return Ok(Applied::NotInteger),
                },
            };
            let Some(value) = current
                .checked_add(by)
                .filter(|v| v.unsigned_abs() <= super::MAX_SAFE_INTEGER)
            else {
                return Ok(Applied::NotInteger);
            };
            stored.data.insert(field, Value::from(value));
            stored.version += 1;
            stored.expires = stamp.expires_at_ms;
            store(c, schema, &id, &stored, stamp.ts, generation)?;
            Ok(Applied::Done((value, stored.version)))
        })
        .await
    }

    async fn get_many(&self, schema: &Schema, ids: &[String]) -> Result<Vec<Option<Record>>> {
        let (coll, ids) = (schema.name.clone(), ids.to_vec());
        self.store
            .sql("record_get", move |c| {
                let now = now_ms();
                ids.into_iter()
                    .map(|id| {
                        Ok(load(c, &coll, &id, now)?.map(|s| Record {
                            id,
                            data: s.data,
                            version: s.version,
                            expires_at_ms: (s.expires != 0).then_some(s.expires),
                        }))
                    })
                    .collect()
            })
            .await
    }

    async fn query(&self, schema: &Schema, q: &Query) -> Result<Applied<(Vec<Record>, Option<Cursor>)>> {
        let (schema, q) = (schema.clone(), q.clone());
        self.store
            .sql("record_query", move |c| {
                if current_stamp(c, &schema.name)?.as_deref() != Some(schema.stamp.as_str()) {
                    return Ok(Applied::StaleSchema);
                }
                let mut sql = String::from("SELECT d.id, d.data, d.version, d.expires_at_ms");
                let mut args: Vec<rusqlite::types::Value> = Vec::new();
                let dir = if q.descending { "DESC" } else { "ASC" };
                let cmp = if q.descending { "<" } else { ">" };
                if q.range.is_some() {
                    sql.push_str(", r.num FROM records d JOIN record_index r ON r.coll = d.coll AND r.id = d.id AND r.field = ?");
                } else {
                    sql.push_str(", NULL FROM records d");
                }
                if let Some((f, _, _)) = &q.range {
                    args.push(f.clone().into());
                }
                sql.push_str(" WHERE d.coll = ? AND (d.expires_at_ms = 0 OR d.expires_at_ms > ?)");
                args.push(schema.name.clone().into());
                args.push((now_ms() as i64).into());
                for (f, key) in &q.equal {
                    sql.push_str(
                        " AND EXISTS (SELECT 1 FROM record_index e WHERE e.coll = d.coll AND e.field = ? AND e.key = ? AND e.id = d.id)",
                    );
                    args.push(f.clone().into());
                    args.push(key.clone().into());
                }
                if let Some((_, lo, hi)) = &q.range {
                    sql.push_str(" AND r.num >= ? AND r.num <= ?");
                    args.push((*lo).into());
                    args.push((*hi).into());
                    if let Some(Cursor { score: Some(s), id }) = &q.after {
                        sql.push_str(&format!(" AND (r.num, d.id) {cmp} (?, ?)"));
                        args.push((*s).into());
                        args.push(id.clone().into());
                    }
                    sql.push_str(&format!(" ORDER BY r.num {dir}, d.id {dir}"));
                } else {
                    if let Some(cur) = &q.after {
                        sql.push_str(&format!(" AND d.id {cmp} ?"));
                        args.push(cur.id.clone().into());
                    }
                    sql.push_str(&format!(" ORDER BY d.id {dir}"));
                }
                sql.push_str(" LIMIT ?");
                args.push((q.limit as i64 + 1).into());
                let mut stmt = c.prepare_cached(&sql)?;
                let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<f64>>(4)?,
                    ))
                })?;
                let mut records: Vec<Record> = Vec::new();
                let (mut cursor, mut last_num) = (None, None);
                for row in rows {
                    let (id, data, version, expires, num) = row?;
                    if records.len() == q.limit {
                        // A row beyond the page: a next page exists, starting after the last.
                        cursor = records.last().map(|last| Cursor {
                            score: last_num,
                            id: last.id.clone(),
                        });
                        break;
                    }
                    last_num = num;
                    records.push(record(id, &data, version, expires)?);
                }
                Ok(Applied::Done((records, cursor)))
            })
            .await
    }

    async fn count(&self, schema: &Schema) -> Result<u64> {
        let coll = schema.name.clone();
        self.store
            .sql("record_count", move |c| {
                let n: i64 = c
                    .prepare_cached(
                        "SELECT COUNT(*) FROM records WHERE coll = ?1 AND (expires_at_ms = 0 OR expires_at_ms > ?2)",
                    )?
                    .query_row(params![coll, now_ms() as i64], |r| r.get(0))?;
                Ok(n as u64)
            })
            .await
    }

    async fn reindex(
        &self,
        schema: &Schema,
        field: &str,
        kind: IndexKind,
        after: &str,
        batch: usize,
    ) -> Result<Option<String>> {
        let (schema, field, after) = (schema.clone(), field.to_string(), after.to_string());
        self.store
            .sql("record_reindex", move |c| {
                let tx = c.transaction()?;
                if current_stamp(&tx, &schema.name)?.as_deref() != Some(schema.stamp.as_str()) {
                    return Err(Error::Conflict("the collection was redefined".into()));
                }
                let rows: Vec<(String, String)> = tx
                    .prepare_cached("SELECT id, data FROM records WHERE coll = ?1 AND id > ?2 ORDER BY id LIMIT ?3")?
                    .query_map(params![schema.name, after, batch as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                for (id, data) in &rows {
                    let data: Map<String, Value> = serde_json::from_str(data)?;
                    if let Some(v) = data.get(&field) {
                        index_row(&tx, &schema.name, id, &field, kind, v)?;
                    }
                }
                tx.commit()?;
                Ok((rows.len() == batch)
                    .then(|| rows.last().map(|r| r.0.clone()))
                    .flatten())
            })
            .await
    }

    async fn purge(&self, schema: &Schema, limit: usize) -> Result<usize> {
        let coll = schema.name.clone();
        self.store
            .sql("record_purge", move |c| {
                let tx = c.transaction()?;
                let now = now_ms() as i64;
                tx.execute(
                    "DELETE FROM record_index WHERE (coll, id) IN (SELECT coll, id FROM records
                       WHERE coll = ?1 AND expires_at_ms > 0 AND expires_at_ms <= ?2 LIMIT ?3)",
                    params![coll, now, limit as i64],
                )?;
                let n = tx.execute(
                    "DELETE FROM records WHERE (coll, id) IN (SELECT coll, id FROM records
                       WHERE coll = ?1 AND expires_at_ms > 0 AND expires_at_ms <= ?2 LIMIT ?3)",
                    params![coll, now, limit as i64],
                )?;
                tx.commit()?;
                Ok(n)
            })
            .await
    }
}
