//! The operations a collection needs, on Redis and on SQLite, and the records they
//! exchange. Every write is one atomic step: the document, its version and stamp, and its
//! index entries (and, in an outage, its journal operation).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::collection::{IndexKind, IndexSpec, Schema};
use crate::error::Result;

/// One record.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Its id.
    pub id: String,
    /// The document (a JSON object).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: Map<String, Value>,
    /// Its version: changes with every write.
    pub version: u64,
    /// When it expires (ms since the Unix epoch); `None` when the collection has no TTL.
    pub expires_at_ms: Option<u64>,
}

/// Where a query page ended: the last record's sort key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The range field's value (queries ordered by a range field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f64>,
    /// The last record's id.
    pub id: String,
}

/// A query through declared indexes, checked against the schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// `(field, JSON text)` equalities, each on a field with an `equal` index.
    pub equal: Vec<(String, String)>,
    /// `(field, min, max)` on a field with a `range` index; it orders the results.
    pub range: Option<(String, f64, f64)>,
    /// Descending order.
    pub descending: bool,
    /// Most records in the page.
    pub limit: usize,
    /// Where the previous page ended.
    pub after: Option<Cursor>,
}

/// How a write went.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied<T> {
    /// Written; the value the operation answers.
    Done(T),
    /// `if_version` did not match: the current version (0: absent).
    VersionConflict(u64),
    /// The record does not exist (patch).
    Missing,
    /// The field to increment holds something other than an integer, or would overflow.
    NotInteger,
    /// The collection was redefined since the caller read its schema: reload and retry.
    StaleSchema,
    /// A replayed operation lost to a newer write or a tombstone and changed nothing.
    Superseded,
    /// The merged record would be larger than the collection allows: its size in bytes.
    TooLarge(usize),
}

/// When a write was made and whether it is an outage's operation being replayed (which
/// loses to a newer whole-document write or delete, and moves versions on by two, so that
/// no version answered during the outage is ever taken for a version of Redis's record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Hybrid-logical clock, µs.
    pub ts: u64,
    /// Replaying a journaled operation: its unique id (an operation replayed twice, after
    /// a failure midway through a batch, is applied once).
    pub replay: Option<u64>,
    /// When the record expires (ms since the Unix epoch; 0: never).
    pub expires_at_ms: u64,
}

/// Record operations.
#[async_trait::async_trait]
pub trait RecordBackend: Send + Sync {
    /// The collection's schema, if defined.
    async fn schema(&self, name: &str) -> Result<Option<Schema>>;
    /// Every defined collection.
    async fn schemas(&self) -> Result<Vec<Schema>>;
    /// Stores `schema` if the current stamp is `expected` (`None`: undefined); drops the
    /// entries of `dropped` indexes. `false`: someone else redefined it first.
    async fn define(&self, schema: &Schema, expected: Option<&str>, dropped: &[IndexSpec]) -> Result<bool>;
    /// Removes the collection and every record in it, if its stamp is `expected`.
    async fn undefine(&self, schema: &Schema) -> Result<bool>;
    /// Replaces (or creates) a record.
    async fn put(
        &self,
        schema: &Schema,
        id: &str,
        fields: &Map<String, Value>,
        if_version: Option<u64>,
        stamp: Stamp,
    ) -> Result<Applied<u64>>;
    /// Merges `changes` into an existing record (`null` removes a field).
    async fn patch(
        &self,
        schema: &Schema,
        id: &str,
        changes: &Map<String, Value>,
        if_version: Option<u64>,
        stamp: Stamp,
    ) -> Result<Applied<u64>>;
    /// Deletes a record (and leaves a tombstone where replays need one); whether it existed.
    async fn delete(&self, schema: &Schema, id: &str, stamp: Stamp) -> Result<Applied<bool>>;
    /// Adds `by` to an integer field (creating the record when absent): `(value, version)`.
    async fn incr(&self, schema: &Schema, id: &str, field: &str, by: i64, stamp: Stamp) -> Result<Applied<(i64, u64)>>;
    /// Records by id, absent and expired ones as `None`.
    async fn get_many(&self, schema: &Schema, ids: &[String]) -> Result<Vec<Option<Record>>>;
    /// One page of a query; the cursor is `None` when nothing follows.
    async fn query(&self, schema: &Schema, query: &Query) -> Result<Applied<(Vec<Record>, Option<Cursor>)>>;
    /// Live records.
    async fn count(&self, schema: &Schema) -> Result<u64>;
    /// Files up to `batch` records after id `after` in the index on `field`; the last id
    /// handled, or `None` when every record is in.
    async fn reindex(
        &self,
        schema: &Schema,
        field: &str,
        kind: IndexKind,
        after: &str,
        batch: usize,
    ) -> Result<Option<String>>;
    /// Deletes up to `limit` expired records and their index entries; how many.
    async fn purge(&self, schema: &Schema, limit: usize) -> Result<usize>;
}
