//! # Records: documents with declared indexes, capped lists and time-bucketed counters
//!
//! **Collections** ([`Records::define`]) declare their indexes — `equal` on a field (a
//! string, number or boolean) or `range` (a number, which also orders results) — a time
//! to live (90 days unless set, refreshed by every write, `0`: none), a largest document
//! and [redaction rules](redact) applied before anything is stored.
//!
//! **Documents** are JSON objects with a version that changes with every write:
//! [`Records::put`] (with `if_version`, optimistic concurrency; `Some(0)`: create only),
//! [`Records::patch`] (top-level merge, `null` removes a field), [`Records::incr`] (an
//! integer field within ±(2^53 − 1), atomically; creates the record when absent), [`Records::delete`],
//! [`Records::get`] / [`Records::get_many`], and [`Records::query`] — equalities and one
//! range, through declared indexes only. An index is changed in the same atomic step as
//! the record (one Lua script on Redis, one transaction on SQLite), so a query never
//! returns a record that no longer matches and never misses one that does. An index added
//! to a collection that has records is *building* until every record is in it (writes
//! maintain it meanwhile); queries through it are refused until then. Expired records
//! disappear from reads and queries at once, and with their index entries from the store
//! within seconds.
//!
//! **On Redis** (no modules; runs on Cluster) a record is one string holding its fields'
//! JSON texts, length-prefixed, after a header with its version, stamp and expiry; indexes
//! are sorted sets; everything of a collection shares one hash tag. **On SQLite** the same
//! semantics come from tables and SQL indexes.
//!
//! **Outages** follow the outage data model: while Redis is away, writes go to the
//! embedded store and are journaled as operations (put with its document, patch with its
//! fields, increment with its amount, delete); when Redis returns each is applied to
//! Redis's record: a put or delete loses to a whole-record write or delete made after it,
//! a patch or increment applies to the record unless it was replaced or deleted after it,
//! increments add up, and nothing deleted comes back (deletes leave a tombstone for 7
//! days). Versions of replayed records move on by two per operation, so a version read
//! during the outage never matches one of Redis's: a put with it is refused (409), never
//! applied blindly. While Redis is away, reads and queries see the records this instance
//! wrote during the outage only; collections cannot be (re)defined.
//! Each journaled operation carries a unique id that Redis applies once, so a replay
//! interrupted midway and offered again counts nothing twice. Not promised: a put or delete
//! made in an outage and replayed after another instance's later patches or increments of
//! the same record replaces them too (records keep no per-field history).
//! A write whose outcome is unknown (Redis went away after the command was sent:
//! [`Error::Indeterminate`]) may or may not have been applied: a put, patch or delete is
//! safe to retry; an increment retried may count twice, like `INCRBY` over a broken
//! connection.
//!
//! ```no_run
//! # async fn demo(redkit: redkit::Redkit) -> redkit::Result<()> {
//! use redkit::records::{CollectionSpec, IndexKind, QueryRequest};
//! let records = redkit.records(Default::default())?;
//! records.define("patterns", CollectionSpec::default().index("kind", IndexKind::Equal).index("seen", IndexKind::Range)).await?;
//! let doc = serde_json::json!({"kind": "timeout", "seen": 1}).as_object().unwrap().clone();
//! records.put("patterns", "p1", doc, None).await?;
//! records.incr("patterns", "p1", "seen", 1).await?;
//! let page = records
//!     .query("patterns", QueryRequest::default().equal("kind", "timeout").range("seen", Some(1.0), None))
//!     .await?;
//! println!("{:?}", page.records);
//! # Ok(()) }
//! ```

mod backend;
mod collection;
pub mod counters;
mod embedded;
pub mod lists;
pub mod redact;
mod redis;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use backend::{Applied, Cursor, Query, Record, RecordBackend, Stamp};
pub use collection::{
    CollectionSpec, DEFAULT_MAX_BYTES, DEFAULT_TTL_S, IndexKind, IndexSpec, IndexState, MAX_INDEXES, Schema,
    check_field, check_id, check_name,
};
pub use redact::{RedactAction, RedactRule, ScrubPattern};

use crate::core::journal::Entry;
use crate::core::route::{BoxFuture, Closed, FallbackPolicy, Recovery, Route, Routed};
use crate::error::{Error, Result};
use crate::stats::now_ms;

/// Settings shared by every collection of one [`Redkit`](crate::Redkit).
#[derive(Clone, Default)]
pub struct RecordsOptions {
    redact_key: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for RecordsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordsOptions")
            .field("redact_key", &self.redact_key.as_ref().map(|_| "…"))
            .finish()
    }
}

impl RecordsOptions {
    /// The key of `hash` redaction (HMAC-SHA256); the same on every instance, kept secret.
    /// At least 16 bytes.
    pub fn redact_key(mut self, key: &[u8]) -> Self {
        self.redact_key = Some(key.into());
        self
    }

    /// Checks the key's length.
    pub fn validate(&self) -> Result<()> {
        if self.redact_key.as_ref().is_some_and(|k| k.len() < 16) {
            return Err(Error::invalid("redact_key", "at least 16 bytes"));
        }
        Ok(())
    }
}

/// A collection, its definition and how many live records it holds.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CollectionInfo {
    /// Its name.
    pub name: String,
    /// Declared indexes, with their state.
    pub indexes: Vec<IndexSpec>,
    /// Time to live of a record in seconds (0: none).
    pub ttl_s: u64,
    /// Largest document, bytes of JSON.
    pub max_bytes: usize,
    /// Redaction rules.
    pub redact: Vec<RedactRule>,
    /// Live records.
    pub count: u64,
}

impl CollectionInfo {
    fn new(name: &str, spec: CollectionSpec, count: u64) -> Self {
        CollectionInfo {
            name: name.to_string(),
            indexes: spec.indexes,
            ttl_s: spec.ttl_s,
            max_bytes: spec.max_bytes,
            redact: spec.redact,
            count,
        }
    }

    /// The definition alone.
    pub fn spec(&self) -> CollectionSpec {
        CollectionSpec {
            indexes: self.indexes.clone(),
            ttl_s: self.ttl_s,
            max_bytes: self.max_bytes,
            redact: self.redact.clone(),
        }
    }
}

/// What a write answers.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Written {
    /// The record's id.
    pub id: String,
    /// Its new version.
    pub version: u64,
}

/// What an increment answers.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Incremented {
    /// The field's new value.
    pub value: i64,
    /// The record's new version.
    pub version: u64,
}

/// A query: equalities on `equal`-indexed fields, an optional range on a `range`-indexed
/// field (which orders the results; otherwise they come by id), a page size and where the
/// last page ended.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueryRequest {
    /// Field → value (a string, number or boolean).
    pub equal: Vec<(String, Value)>,
    /// Field, minimum, maximum (inclusive; `None`: unbounded).
    pub range: Option<(String, Option<f64>, Option<f64>)>,
    /// Descending order.
    pub descending: bool,
    /// Most records in the page, 1–1000 (0: 100).
    pub limit: usize,
    /// The previous page's cursor.
    pub cursor: Option<String>,
}

impl QueryRequest {
    /// Adds an equality.
    pub fn equal(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.equal.push((field.into(), value.into()));
        self
    }

    /// Sets the range (and order) field.
    pub fn range(mut self, field: &str, min: Option<f64>, max: Option<f64>) -> Self {
        self.range = Some((field.into(), min, max));
        self
    }

    /// Descending order.
    pub fn descending(mut self) -> Self {
        self.descending = true;
        self
    }

    /// Page size.
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = n;
        self
    }

    /// Continues after a previous page.
    pub fn after(mut self, cursor: Option<String>) -> Self {
        self.cursor = cursor;
        self
    }
}

/// One page of a query.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordPage {
    /// Matching records (possibly fewer than the limit while `cursor` is set: keep paging).
    pub records: Vec<Record>,
    /// Where to continue; `None` when nothing follows.
    pub cursor: Option<String>,
}

/// Largest integer an increment may reach (2^53 − 1, in either direction): integers stay
/// exact in JSON readers that use doubles, and in Redis's Lua.
pub const MAX_SAFE_INTEGER: u64 = 9_007_199_254_740_991;
/// Most ids per [`Records::get_many`].
pub const MAX_GET_MANY: usize = 1000;
/// Largest query page.
pub const MAX_PAGE: usize = 1000;
/// How long a definition read from the store is used before it is read again (writes
/// never depend on it: a write under an outdated definition is refused and retried).
const SCHEMA_FRESH: Duration = Duration::from_secs(5);
/// Records filed per step when an index is built.
const REINDEX_BATCH: usize = 500;
/// How often expired records are deleted with their index entries.
const PURGE_EVERY: Duration = Duration::from_secs(15);

/// A write as the journal records it during an outage (the document already redacted),
/// with a unique id so that replaying it twice applies it once.
#[derive(Serialize, Deserialize)]
struct Journaled {
    u: u64,
    #[serde(flatten)]
    op: RecordOp,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum RecordOp {
    Put {
        c: String,
        id: String,
        data: Map<String, Value>,
    },
    Patch {
        c: String,
        id: String,
        data: Map<String, Value>,
    },
    Incr {
        c: String,
        id: String,
        field: String,
        by: i64,
    },
    Delete {
        c: String,
        id: String,
    },
}

fn encode_op(op: RecordOp) -> Vec<u8> {
    serde_json::to_vec(&Journaled { u: rand::random(), op }).expect("a record operation is JSON")
}

pub(crate) struct RecordsHub {
    routed: Routed<dyn RecordBackend>,
    embedded: Arc<embedded::EmbeddedRecords>,
    mirrors: bool,
    schemas: Mutex<HashMap<String, (Arc<Schema>, Instant)>>,
    building: Mutex<HashSet<String>>,
    pub(crate) lists: lists::Lists,
    pub(crate) counters: counters::Counters,
}

struct RecordRecovery {
    redis: Arc<redis::RedisRecords>,
    embedded: Arc<embedded::EmbeddedRecords>,
}

#[async_trait::async_trait]
impl Recovery for RecordRecovery {
    fn capability(&self) -> &'static str {
        "record"
    }

    async fn replay(&self, entries: &[Entry]) -> Result<()> {
        let mut schemas: HashMap<String, Option<Schema>> = HashMap::new();
        for e in entries {
            let Journaled { u, op } = serde_json::from_slice(&e.op)?;
            let c = match &op {
                RecordOp::Put { c, .. }
                | RecordOp::Patch { c, .. }
                | RecordOp::Incr { c, .. }
                | RecordOp::Delete { c, .. } => c.clone(),
            };
            for _ in 0..3 {
                if !schemas.contains_key(&c) {
                    schemas.insert(c.clone(), self.redis.schema(&c).await?);
                }
                // A collection removed since: nothing of it may come back.
                let Some(schema) = schemas[&c].clone() else { break };
                if replay_one(&*self.redis, &schema, &op, e.ts, u).await? {
                    break;
                }
                schemas.remove(&c);
            }
        }
        Ok(())
    }

    fn seal(&self) -> BoxFuture<'static, Result<()>> {
        self.embedded.seal()
    }

    async fn after_close(&self, _after: Closed) -> Result<()> {
        self.embedded.forget_outage().await
    }
}

fn stamp_for(schema: &Schema, ts: u64, replay: Option<u64>) -> Stamp {
    Stamp {
        ts,
        replay,
        expires_at_ms: if schema.spec.ttl_s == 0 {
            0
        } else {
            now_ms() + schema.spec.ttl_s * 1000
        },
    }
}

/// Applies one journaled operation to Redis; `false` when the schema moved (reload, retry).
async fn replay_one(redis: &dyn RecordBackend, schema: &Schema, op: &RecordOp, ts: u64, u: u64) -> Result<bool> {
    let stamp = stamp_for(schema, ts, Some(u));
    let stale = match op {
        RecordOp::Put { id, data, .. } => {
            collection::check_fields(schema, data, false)?;
            matches!(redis.put(schema, id, data, None, stamp).await?, Applied::StaleSchema)
        }
        RecordOp::Patch { id, data, .. } => {
            collection::check_fields(schema, data, true)?;
            match redis.patch(schema, id, data, None, stamp).await? {
                Applied::TooLarge(size) => {
                    return Err(Error::TooLarge {
                        field: format!("record {id} after the outage's patch"),
                        size,
                        limit: schema.spec.max_bytes,
                    });
                }
                other => matches!(other, Applied::StaleSchema),
            }
        }
        RecordOp::Incr { id, field, by, .. } => match redis.incr(schema, id, field, *by, stamp).await? {
            Applied::NotInteger => {
                return Err(Error::Conflict(format!(
                    "record {id}: field {field} no longer holds an integer; the outage's increment by {by} cannot apply"
                )));
            }
            other => matches!(other, Applied::StaleSchema),
        },
        RecordOp::Delete { id, .. } => matches!(redis.delete(schema, id, stamp).await?, Applied::StaleSchema),
    };
    Ok(!stale)
}

impl RecordsHub {
    pub(crate) fn new(route: &Arc<Route>) -> Arc<Self> {
        let embedded = Arc::new(embedded::EmbeddedRecords::new(
            route.embedded().clone(),
            route.redis().is_none(),
        ));
        let redis = route.redis().map(|core| {
            let r = Arc::new(redis::RedisRecords::new(core.clone()));
            route.register_recovery(Arc::new(RecordRecovery {
                redis: r.clone(),
                embedded: embedded.clone(),
            }));
            r as Arc<dyn RecordBackend>
        });
        let hub = Arc::new(RecordsHub {
            mirrors: redis.is_some(),
            routed: route.routed(
                "record",
                FallbackPolicy::Serve,
                redis,
                embedded.clone() as Arc<dyn RecordBackend>,
            ),
            embedded,
            schemas: Mutex::default(),
            building: Mutex::default(),
            lists: lists::Lists::new(route),
            counters: counters::Counters::new(route),
        });
        let weak = Arc::downgrade(&hub);
        route.spawn(async move {
            loop {
                tokio::time::sleep(PURGE_EVERY).await;
                let Some(hub) = weak.upgrade() else { return };
                hub.purge_expired().await;
            }
        });
        hub
    }

    async fn purge_expired(&self) {
        let schemas: Vec<Arc<Schema>> = self
            .schemas
            .lock()
            .expect("schemas")
            .values()
            .map(|(s, _)| s.clone())
            .collect();
        for s in schemas {
            for _ in 0..10 {
                match self.routed.call(|b| b.purge(&s, 500)).await {
                    Ok(500) => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::debug!(collection = %s.name, error = %e, "purging expired records failed; will retry");
                        break;
                    }
                }
            }
        }
    }

    fn forget(&self, name: &str) {
        self.schemas.lock().expect("schemas").remove(name);
    }

    async fn load(self: &Arc<Self>, name: &str) -> Result<Option<Arc<Schema>>> {
        if let Some((s, at)) = self.schemas.lock().expect("schemas").get(name)
            && at.elapsed() < SCHEMA_FRESH
        {
            return Ok(Some(s.clone()));
        }
        let loaded = self.routed.read(|b| b.schema(name)).await?;
        let Some(schema) = loaded else {
            self.forget(name);
            return Ok(None);
        };
        let schema = Arc::new(schema);
        let changed = {
            let mut cache = self.schemas.lock().expect("schemas");
            let changed = cache.get(name).is_none_or(|(s, _)| s.stamp != schema.stamp);
            cache.insert(name.to_string(), (schema.clone(), Instant::now()));
            changed
        };
        if changed {
            // Kept for an outage before it is used, so the fallback knows it.
            if self.mirrors
                && self.routed.route().mode() == crate::Mode::Redis
                && let Err(e) = self.embedded.mirror((*schema).clone()).await
            {
                tracing::warn!(error = %e, "keeping a collection's definition for outages failed");
            }
            self.build_indexes(&schema);
        }
        Ok(Some(schema))
    }

    async fn schema(self: &Arc<Self>, name: &str) -> Result<Arc<Schema>> {
        check_name("collection", name)?;
        self.load(name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("collection {name} is not defined")))
    }

    /// Files every record in the collection's building indexes, then marks them ready.
    fn build_indexes(self: &Arc<Self>, schema: &Arc<Schema>) {
        if !schema.spec.indexes.iter().any(|i| i.state == IndexState::Building)
            || !self.building.lock().expect("building").insert(schema.name.clone())
        {
            return;
        }
        let (hub, schema) = (self.clone(), schema.clone());
        tokio::spawn(async move {
            let name = schema.name.clone();
            if let Err(e) = hub.build(schema).await {
                tracing::warn!(collection = %name, error = %e, "building an index stopped; it resumes when the collection is next read");
            }
            hub.building.lock().expect("building").remove(&name);
            hub.forget(&name);
        });
    }

    async fn build(&self, schema: Arc<Schema>) -> Result<()> {
        for ix in schema.spec.indexes.iter().filter(|i| i.state == IndexState::Building) {
            let mut after = String::new();
            while let Some(last) = self
                .routed
                .call(|b| b.reindex(&schema, &ix.field, ix.kind, &after, REINDEX_BATCH))
                .await?
            {
                after = last;
            }
        }
        let mut ready = (*schema).clone();
        ready.spec.indexes.iter_mut().for_each(|i| i.state = IndexState::Ready);
        ready.stamp = crate::core::random::token();
        self.routed.call(|b| b.define(&ready, Some(&schema.stamp), &[])).await?;
        Ok(())
    }
}

/// Documents in collections (see the [module docs](self)). Cheap to clone.
#[derive(Clone)]
pub struct Records {
    hub: Arc<RecordsHub>,
    route: Arc<Route>,
    options: RecordsOptions,
}

/// Times a write is retried when the collection was redefined under it.
const STALE_RETRIES: usize = 4;

impl Records {
    pub(crate) fn new(hub: Arc<RecordsHub>, route: Arc<Route>, options: RecordsOptions) -> Result<Self> {
        options.validate()?;
        Ok(Records { hub, route, options })
    }

    /// Capped lists, sharing this handle's stores.
    pub fn lists(&self) -> lists::Lists {
        self.hub.lists.clone()
    }

    /// Time-bucketed counters, sharing this handle's stores.
    pub fn counters(&self) -> counters::Counters {
        self.hub.counters.clone()
    }

    /// Defines (or redefines) collection `name`. Indexes new to a collection that has
    /// records are built in the background (state `building`); dropped ones are removed.
    /// Needs Redis when Redis is configured.
    pub async fn define(&self, name: &str, spec: CollectionSpec) -> Result<CollectionInfo> {
        check_name("collection", name)?;
        spec.validate(self.options.redact_key.is_some())?;
        for _ in 0..STALE_RETRIES {
            self.hub.forget(name);
            let current = self.hub.load(name).await?;
            let count = match &current {
                Some(s) => self.hub.routed.read(|b| b.count(s)).await?,
                None => 0,
            };
            let mut spec = spec.clone();
            for ix in &mut spec.indexes {
                let old = current.as_ref().and_then(|s| s.spec.index_of(&ix.field));
                ix.state = match old {
                    Some(o) if o.kind == ix.kind => o.state,
                    _ if count == 0 => IndexState::Ready,
                    _ => IndexState::Building,
                };
            }
            let dropped: Vec<IndexSpec> = current
                .as_ref()
                .map(|s| {
                    s.spec
                        .indexes
                        .iter()
                        .filter(|o| spec.index_of(&o.field).is_none_or(|n| n.kind != o.kind))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            if let Some(cur) = &current
                && cur.spec == spec
            {
                // Nothing changes: writers keep their definition.
                return Ok(CollectionInfo::new(name, spec, count));
            }
            let schema = Schema {
                name: name.to_string(),
                spec,
                stamp: crate::core::random::token(),
            };
            let expected = current.as_ref().map(|s| s.stamp.as_str());
            if self.hub.routed.call(|b| b.define(&schema, expected, &dropped)).await? {
                self.hub.forget(name);
                let schema = self.hub.schema(name).await?;
                return Ok(CollectionInfo::new(name, schema.spec.clone(), count));
            }
        }
        Err(Error::Conflict(format!(
            "collection {name} is being redefined by someone else; try again"
        )))
    }

    /// The collection, its definition and count; `None` when undefined.
    pub async fn collection(&self, name: &str) -> Result<Option<CollectionInfo>> {
        check_name("collection", name)?;
        let Some(schema) = self.hub.load(name).await? else {
            return Ok(None);
        };
        let count = self.hub.routed.read(|b| b.count(&schema)).await?;
        Ok(Some(CollectionInfo::new(name, schema.spec.clone(), count)))
    }

    /// Every defined collection.
    pub async fn collections(&self) -> Result<Vec<CollectionInfo>> {
        let schemas = self.hub.routed.read(|b| b.schemas()).await?;
        let mut out = Vec::with_capacity(schemas.len());
        for s in schemas {
            let count = self.hub.routed.read(|b| b.count(&s)).await?;
            out.push(CollectionInfo::new(&s.name, s.spec, count));
        }
        Ok(out)
    }

    /// Removes collection `name` and every record in it; `false` when it was not defined.
    pub async fn undefine(&self, name: &str) -> Result<bool> {
        check_name("collection", name)?;
        for _ in 0..STALE_RETRIES {
            self.hub.forget(name);
            let Some(schema) = self.hub.load(name).await? else {
                return Ok(false);
            };
            if self.hub.routed.call(|b| b.undefine(&schema)).await? {
                self.hub.forget(name);
                return Ok(true);
            }
        }
        Err(Error::Conflict(format!(
            "collection {name} is being redefined by someone else; try again"
        )))
    }

    fn prepare(&self, schema: &Schema, mut data: Map<String, Value>, patch: bool) -> Result<Map<String, Value>> {
        redact::apply(&schema.spec.redact, self.options.redact_key.as_deref(), &mut data);
        collection::check_fields(schema, &data, patch)?;
        Ok(data)
    }

    /// Replaces (or creates) record `id`. With `if_version`, only if the record is at that
    /// version (`Some(0)`: only if it does not exist); otherwise [`Error::Conflict`].
    pub async fn put(
        &self,
        collection: &str,
        id: &str,
        data: Map<String, Value>,
        if_version: Option<u64>,
    ) -> Result<Written> {
        self.write_data(collection, id, data, if_version, false).await
    }

    /// Merges `data` into record `id` (top-level fields; `null` removes one).
    pub async fn patch(
        &self,
        collection: &str,
        id: &str,
        data: Map<String, Value>,
        if_version: Option<u64>,
    ) -> Result<Written> {
        self.write_data(collection, id, data, if_version, true).await
    }

    /// A put, or with `patch` a patch.
    async fn write_data(
        &self,
        collection: &str,
        id: &str,
        data: Map<String, Value>,
        if_version: Option<u64>,
        patch: bool,
    ) -> Result<Written> {
        check_id(id)?;
        let data = &data;
        let (applied, schema) = self
            .with_current_schema(collection, move |schema| async move {
                let data = self.prepare(&schema, data.clone(), patch)?;
                let stamp = stamp_for(&schema, self.route.clock().now(), None);
                let op = || {
                    let (c, id, data) = (collection.into(), id.into(), data.clone());
                    encode_op(if patch {
                        RecordOp::Patch { c, id, data }
                    } else {
                        RecordOp::Put { c, id, data }
                    })
                };
                self.hub
                    .routed
                    .write(op, |b| {
                        if patch {
                            b.patch(&schema, id, &data, if_version, stamp)
                        } else {
                            b.put(&schema, id, &data, if_version, stamp)
                        }
                    })
                    .await
            })
            .await?;
        written(collection, id, if_version, applied, schema.spec.max_bytes)
    }

    /// Deletes record `id`; whether it existed. Idempotent.
    pub async fn delete(&self, collection: &str, id: &str) -> Result<bool> {
        check_id(id)?;
        let (applied, _) = self
            .with_current_schema(collection, move |schema| async move {
                let stamp = stamp_for(&schema, self.route.clock().now(), None);
                let op = || {
                    encode_op(RecordOp::Delete {
                        c: collection.into(),
                        id: id.into(),
                    })
                };
                self.hub.routed.write(op, |b| b.delete(&schema, id, stamp)).await
            })
            .await?;
        match applied {
            Applied::Done(existed) => Ok(existed),
            other => Err(unexpected(other)),
        }
    }

    /// Adds `by` to integer field `field` of record `id` (a missing field counts as 0; a
    /// missing record is created).
    pub async fn incr(&self, collection: &str, id: &str, field: &str, by: i64) -> Result<Incremented> {
        check_id(id)?;
        check_field(field)?;
        let (applied, _) = self
            .with_current_schema(collection, move |schema| async move {
                // An increment would store the raw count in a field whose values are redacted.
                if schema
                    .spec
                    .redact
                    .iter()
                    .any(|r| r.field == field && r.action != RedactAction::Scrub)
                {
                    return Err(Error::invalid(
                        "field",
                        format!("{field} is redacted and cannot be incremented"),
                    ));
                }
                let stamp = stamp_for(&schema, self.route.clock().now(), None);
                let op = || {
                    encode_op(RecordOp::Incr {
                        c: collection.into(),
                        id: id.into(),
                        field: field.into(),
                        by,
                    })
                };
                self.hub
                    .routed
                    .write(op, |b| b.incr(&schema, id, field, by, stamp))
                    .await
            })
            .await?;
        match applied {
            Applied::Done((value, version)) => Ok(Incremented { value, version }),
            Applied::NotInteger => Err(Error::Conflict(format!(
                "record {id}: field {field} does not hold an integer, or adding {by} would pass ±(2^53 - 1)"
            ))),
            other => Err(unexpected(other)),
        }
    }

    /// Record `id`, if it exists and has not expired.
    pub async fn get(&self, collection: &str, id: &str) -> Result<Option<Record>> {
        Ok(self.get_many(collection, &[id.to_string()]).await?.pop().flatten())
    }

    /// Records by id, in the order asked (absent ones as `None`); at most 1000 ids.
    pub async fn get_many(&self, collection: &str, ids: &[String]) -> Result<Vec<Option<Record>>> {
        if ids.len() > MAX_GET_MANY {
            return Err(Error::invalid("ids", format!("at most {MAX_GET_MANY}")));
        }
        for id in ids {
            check_id(id)
                .map_err(|_| Error::invalid("ids", format!("{id:?}: 1 to 256 bytes without control characters")))?;
        }
        let schema = self.hub.schema(collection).await?;
        self.hub.routed.read(|b| b.get_many(&schema, ids)).await
    }

    /// One page of matching records (see [`QueryRequest`]).
    pub async fn query(&self, collection: &str, request: QueryRequest) -> Result<RecordPage> {
        let limit = match request.limit {
            0 => 100,
            n if n > MAX_PAGE => return Err(Error::invalid("limit", format!("1 to {MAX_PAGE}"))),
            n => n,
        };
        let after = request.cursor.as_deref().map(decode_cursor).transpose()?;
        let (request, after) = (&request, &after);
        let (applied, _) = self
            .with_current_schema(collection, move |schema| async move {
                let query = plan(&schema, request, limit, after.clone())?;
                self.hub.routed.read(|b| b.query(&schema, &query)).await
            })
            .await?;
        match applied {
            Applied::Done((records, cursor)) => Ok(RecordPage {
                records,
                cursor: cursor.map(|c| encode_cursor(&c)),
            }),
            other => Err(unexpected(other)),
        }
    }

    /// Runs `attempt` with the collection's current schema; when the store answers that
    /// the collection was redefined meanwhile, reloads the schema and tries again (at most
    /// [`STALE_RETRIES`] times). Returns the outcome and the schema that reached it.
    ///
    /// A closure returning a future rather than an async closure: the futures of the HTTP
    /// handlers must be `Send`, which the compiler cannot prove through an async closure's
    /// borrowed argument.
    async fn with_current_schema<T, Attempt, Fut>(
        &self,
        collection: &str,
        mut attempt: Attempt,
    ) -> Result<(Applied<T>, Arc<Schema>)>
    where
        Attempt: FnMut(Arc<Schema>) -> Fut,
        Fut: Future<Output = Result<Applied<T>>>,
    {
        for _ in 0..STALE_RETRIES {
            let schema = self.hub.schema(collection).await?;
            match attempt(schema.clone()).await? {
                Applied::StaleSchema => self.hub.forget(collection),
                other => return Ok((other, schema)),
            }
        }
        Err(redefined(collection))
    }
}

fn redefined(collection: &str) -> Error {
    Error::Unavailable(format!("collection {collection} keeps being redefined; try again"))
}

fn written(
    collection: &str,
    id: &str,
    if_version: Option<u64>,
    applied: Applied<u64>,
    limit: usize,
) -> Result<Written> {
    match applied {
        Applied::Done(version) => Ok(Written {
            id: id.to_string(),
            version,
        }),
        Applied::VersionConflict(current) => Err(Error::Conflict(match (if_version, current) {
            (Some(0), _) => format!("record {id} already exists in {collection} (version {current})"),
            (_, 0) => format!("record {id} does not exist in {collection}"),
            (Some(v), _) => format!("record {id} is at version {current}, not {v}"),
            (None, _) => format!("record {id}: version conflict"),
        })),
        Applied::Missing => Err(Error::NotFound(format!("record {id} does not exist in {collection}"))),
        Applied::TooLarge(size) => Err(Error::TooLarge {
            field: "data".into(),
            size,
            limit,
        }),
        other => Err(unexpected(other)),
    }
}

fn unexpected<T: std::fmt::Debug>(applied: Applied<T>) -> Error {
    Error::Storage(format!("unexpected outcome of a record operation: {applied:?}"))
}

/// Checks a query against the schema: every field through a ready index of its kind.
fn plan(schema: &Schema, request: &QueryRequest, limit: usize, after: Option<Cursor>) -> Result<Query> {
    let usable = |field: &str, kind: IndexKind, at: &str| -> Result<()> {
        match schema.spec.index_of(field) {
            Some(ix) if ix.kind == kind && ix.state == IndexState::Ready => Ok(()),
            Some(ix) if ix.kind == kind => Err(Error::Unavailable(format!(
                "the {kind:?} index on {field} is still being built; try again shortly"
            ))),
            _ => Err(Error::invalid(
                at,
                format!(
                    "field {field} has no {} index in collection {} (queries go through declared indexes only)",
                    match kind {
                        IndexKind::Equal => "equal",
                        IndexKind::Range => "range",
                    },
                    schema.name
                ),
            )),
        }
    };
    let mut equal = Vec::with_capacity(request.equal.len());
    for (field, value) in &request.equal {
        let at = format!("where.{field}");
        usable(field, IndexKind::Equal, &at)?;
        equal.push((field.clone(), collection::equal_key(&at, value)?));
    }
    let range = match &request.range {
        Some((field, min, max)) => {
            usable(field, IndexKind::Range, "range.field")?;
            let (lo, hi) = (min.unwrap_or(f64::NEG_INFINITY), max.unwrap_or(f64::INFINITY));
            if lo.is_nan() || hi.is_nan() || lo > hi {
                return Err(Error::invalid("range", "min must not be above max"));
            }
            Some((field.clone(), lo, hi))
        }
        None => None,
    };
    if after.as_ref().is_some_and(|c| c.score.is_some() != range.is_some()) {
        return Err(Error::invalid("cursor", "belongs to a different query"));
    }
    Ok(Query {
        equal,
        range,
        descending: request.descending,
        limit,
        after,
    })
}

fn encode_cursor(c: &Cursor) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(c).expect("a cursor is JSON"))
}

fn decode_cursor(s: &str) -> Result<Cursor> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| Error::invalid("cursor", "not a cursor this server gave out"))
}

#[cfg(test)]
mod replay_tests {
    //! Replays are at least once (a batch that fails midway is offered again): each
    //! journaled record, list and counter operation carries a unique id, and Redis applies
    //! an id once.

    use super::counters::{CounterBackend, RedisCounters};
    use super::lists::{ListBackend, RedisLists};
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_operation_replayed_twice_is_applied_once() {
        let (redkit, _redis, _dir) = crate::on_fresh_redis().await;
        let records = redkit.records(RecordsOptions::default()).unwrap();
        records.define("c", CollectionSpec::default()).await.unwrap();
        let core = redkit.route().redis().unwrap().clone();
        let backend = redis::RedisRecords::new(core.clone());
        let schema = backend.schema("c").await.unwrap().unwrap();
        let ts = redkit.route().clock().now();
        for _ in 0..2 {
            let applied = backend
                .incr(&schema, "r", "n", 5, stamp_for(&schema, ts, Some(41)))
                .await
                .unwrap();
            assert!(matches!(applied, Applied::Done(_) | Applied::Superseded), "{applied:?}");
        }
        backend
            .incr(&schema, "r", "n", 1, stamp_for(&schema, ts + 1, Some(42)))
            .await
            .unwrap();
        assert_eq!(records.get("c", "r").await.unwrap().unwrap().data["n"], 6);

        let counters = RedisCounters::new(core.clone());
        let at = crate::stats::now_ms();
        for _ in 0..2 {
            counters.incr("hits", "", 3, at, Some(43)).await.unwrap();
        }
        let total = redkit.records(RecordsOptions::default()).unwrap().counters();
        let buckets = total
            .range("hits", &counters::Labels::new(), counters::Granularity::Day, at, at)
            .await
            .unwrap();
        assert_eq!(buckets[0].value, 3);

        let lists = RedisLists::new(core);
        for _ in 0..2 {
            lists
                .push("l", &[format!("{ts}:1")], 10, std::time::Duration::ZERO, ts, Some(44))
                .await
                .unwrap();
        }
        assert_eq!(
            redkit
                .records(RecordsOptions::default())
                .unwrap()
                .lists()
                .range("l", 0, 10)
                .await
                .unwrap()
                .length,
            1
        );
    }
}
