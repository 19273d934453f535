//! `/v1/collections`, `/v1/records`, `/v1/lists`, `/v1/counters`: records over HTTP.
//!
//! Collections declare indexes, a TTL, a size limit and redaction rules (scope
//! `records:COLLECTION:admin`); records are JSON objects with a version (`if_version` for
//! optimistic concurrency: a mismatch is 409) read, written and queried through declared
//! indexes (`records:COLLECTION:read|write`). Capped lists (`lists:NAME:read|write`) and
//! time-bucketed counters (`counters:NAME:read|write`) sit beside them. See the library's
//! `redkit::records` for what each promises, including during a Redis outage.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use redkit::records::counters::{Bucket, Counted, Granularity, Labels};
use redkit::records::lists::ListPage;
use redkit::records::{CollectionInfo, CollectionSpec, Incremented, QueryRequest, Record, RecordPage, Written};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Access, Area, Caller};
use crate::error::{ApiError, ApiResult, Body, ErrorBody, Params, Segments};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(define_collection, get_collection, delete_collection))
        .routes(routes!(list_collections))
        .routes(routes!(put_record, get_record, patch_record, delete_record))
        .routes(routes!(incr_record))
        .routes(routes!(get_many))
        .routes(routes!(query_records))
        // Records whose id is `get` or `query` are reached by the other methods of those
        // paths (the POSTs there act on the collection).
        .route("/v1/records/{c}/get", record_named("get"))
        .route("/v1/records/{c}/query", record_named("query"))
        .routes(routes!(push_list))
        .routes(routes!(range_list, delete_list))
        .routes(routes!(incr_counter))
        .routes(routes!(range_counter))
        .routes(routes!(counter_labels))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct CollectionName {
    /// Collection name, 1–64 of `A-Za-z0-9_.-`.
    #[param(pattern = "^[A-Za-z0-9_.-]{1,64}$", min_length = 1, max_length = 64)]
    c: String,
}

/// GET, PUT, PATCH and DELETE of the record whose id is the last segment of a fixed path.
fn record_named(id: &'static str) -> axum::routing::MethodRouter<AppState> {
    let path = move |c: String| Segments(RecordPath { c, id: id.to_string() });
    axum::routing::get(
        move |s: State<AppState>, caller: Caller, Segments(CollectionName { c }): Segments<CollectionName>| {
            get_record(s, caller, path(c))
        },
    )
    .put(
        move |s: State<AppState>,
              caller: Caller,
              Segments(CollectionName { c }): Segments<CollectionName>,
              body: Body<WriteRequest>| { put_record(s, caller, path(c), body) },
    )
    .patch(
        move |s: State<AppState>,
              caller: Caller,
              Segments(CollectionName { c }): Segments<CollectionName>,
              body: Body<WriteRequest>| { patch_record(s, caller, path(c), body) },
    )
    .delete(
        move |s: State<AppState>, caller: Caller, Segments(CollectionName { c }): Segments<CollectionName>| {
            delete_record(s, caller, path(c))
        },
    )
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct RecordPath {
    /// Collection name, 1–64 of `A-Za-z0-9_.-`.
    #[param(pattern = "^[A-Za-z0-9_.-]{1,64}$", min_length = 1, max_length = 64)]
    c: String,
    /// Record id, 1–256 bytes without control characters.
    #[param(pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$", min_length = 1, max_length = 256)]
    id: String,
}

/// Defines (or redefines) collection `c`. Indexes new to a collection that has records
/// are built in the background (`state: building`, queries through them 503 until
/// `ready`); indexes left out are dropped.
#[utoipa::path(put, path = "/v1/collections/{c}", tag = "records", params(CollectionName),
    request_body = CollectionSpec,
    responses((status = 200, description = "Defined", body = CollectionInfo)))]
async fn define_collection(
    State(state): State<AppState>,
    caller: Caller,
    Segments(CollectionName { c }): Segments<CollectionName>,
    Body(spec): Body<CollectionSpec>,
) -> ApiResult<Json<CollectionInfo>> {
    caller.require(Area::Records, &c, Access::Admin)?;
    Ok(Json(state.records().define(&c, spec).await?))
}

/// Collection `c`: its definition and how many live records it holds.
#[utoipa::path(get, path = "/v1/collections/{c}", tag = "records", params(CollectionName),
    responses((status = 200, description = "The collection", body = CollectionInfo)))]
async fn get_collection(
    State(state): State<AppState>,
    caller: Caller,
    Segments(CollectionName { c }): Segments<CollectionName>,
) -> ApiResult<Json<CollectionInfo>> {
    caller.require(Area::Records, &c, Access::Read)?;
    match state.records().collection(&c).await? {
        Some(info) => Ok(Json(info)),
        None => Err(ApiError::from(redkit::Error::NotFound(format!(
            "collection {c} is not defined"
        )))),
    }
}

/// Removes collection `c` and every record in it.
#[utoipa::path(delete, path = "/v1/collections/{c}", tag = "records", params(CollectionName),
    responses((status = 204, description = "Removed (or was not defined)")))]
async fn delete_collection(
    State(state): State<AppState>,
    caller: Caller,
    Segments(CollectionName { c }): Segments<CollectionName>,
) -> ApiResult<StatusCode> {
    caller.require(Area::Records, &c, Access::Admin)?;
    state.records().undefine(&c).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The collections a key may read.
#[derive(Serialize, ToSchema)]
pub struct CollectionList {
    /// By name.
    pub collections: Vec<CollectionInfo>,
}

/// Every collection the key may read, with its definition and count.
#[utoipa::path(get, path = "/v1/collections", tag = "records",
    responses((status = 200, description = "The collections", body = CollectionList)))]
async fn list_collections(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<CollectionList>> {
    let collections = state
        .records()
        .collections()
        .await?
        .into_iter()
        .filter(|c| caller.may(Area::Records, &c.name, Access::Read))
        .collect();
    Ok(Json(CollectionList { collections }))
}

/// A document to write.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteRequest {
    /// A JSON object (PATCH: the fields to change; `null` removes a field).
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
    /// Write only if the record is at this version (`0`: only if it does not exist);
    /// otherwise 409.
    pub if_version: Option<u64>,
}

/// Replaces (or creates) record `id`.
#[utoipa::path(put, path = "/v1/records/{c}/{id}", tag = "records", params(RecordPath),
    request_body = WriteRequest,
    responses(
        (status = 200, description = "Written", body = Written),
        (status = 409, description = "`if_version` does not match", body = ErrorBody)
    ))]
async fn put_record(
    State(state): State<AppState>,
    caller: Caller,
    Segments(RecordPath { c, id }): Segments<RecordPath>,
    Body(req): Body<WriteRequest>,
) -> ApiResult<Json<Written>> {
    caller.require(Area::Records, &c, Access::Write)?;
    Ok(Json(state.records().put(&c, &id, req.data, req.if_version).await?))
}

/// Record `id`.
#[utoipa::path(get, path = "/v1/records/{c}/{id}", tag = "records", params(RecordPath),
    responses((status = 200, description = "The record", body = Record)))]
async fn get_record(
    State(state): State<AppState>,
    caller: Caller,
    Segments(RecordPath { c, id }): Segments<RecordPath>,
) -> ApiResult<Json<Record>> {
    caller.require(Area::Records, &c, Access::Read)?;
    match state.records().get(&c, &id).await? {
        Some(r) => Ok(Json(r)),
        None => Err(ApiError::from(redkit::Error::NotFound(format!(
            "record {id} does not exist in {c}"
        )))),
    }
}

/// Merges fields into record `id` (`null` removes a field).
#[utoipa::path(patch, path = "/v1/records/{c}/{id}", tag = "records", params(RecordPath),
    request_body = WriteRequest,
    responses(
        (status = 200, description = "Written", body = Written),
        (status = 409, description = "`if_version` does not match", body = ErrorBody)
    ))]
async fn patch_record(
    State(state): State<AppState>,
    caller: Caller,
    Segments(RecordPath { c, id }): Segments<RecordPath>,
    Body(req): Body<WriteRequest>,
) -> ApiResult<Json<Written>> {
    caller.require(Area::Records, &c, Access::Write)?;
    Ok(Json(state.records().patch(&c, &id, req.data, req.if_version).await?))
}

/// Deletes record `id` (204 whether or not it existed).
#[utoipa::path(delete, path = "/v1/records/{c}/{id}", tag = "records", params(RecordPath),
    responses((status = 204, description = "Deleted")))]
async fn delete_record(
    State(state): State<AppState>,
    caller: Caller,
    Segments(RecordPath { c, id }): Segments<RecordPath>,
) -> ApiResult<StatusCode> {
    caller.require(Area::Records, &c, Access::Write)?;
    state.records().delete(&c, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An increment.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncrRequest {
    /// The integer field: 1–128 bytes, no control characters, not starting with `$`.
    #[schema(
        pattern = "^[^$\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$",
        min_length = 1,
        max_length = 128
    )]
    pub field: String,
    /// How much to add (default 1; may be negative).
    pub by: Option<i64>,
}

/// Adds to an integer field of record `id` (a missing field counts as 0, a missing record
/// is created); 409 if the field holds something else.
#[utoipa::path(post, path = "/v1/records/{c}/{id}/incr", tag = "records", params(RecordPath),
    request_body = IncrRequest,
    responses(
        (status = 200, description = "Incremented", body = Incremented),
        (status = 409, description = "The field does not hold an integer, or would overflow", body = ErrorBody)
    ))]
async fn incr_record(
    State(state): State<AppState>,
    caller: Caller,
    Segments(RecordPath { c, id }): Segments<RecordPath>,
    Body(req): Body<IncrRequest>,
) -> ApiResult<Json<Incremented>> {
    caller.require(Area::Records, &c, Access::Write)?;
    Ok(Json(
        state.records().incr(&c, &id, &req.field, req.by.unwrap_or(1)).await?,
    ))
}

/// Ids to read.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GetManyRequest {
    /// Up to 1000 ids, each 1–256 bytes without control characters.
    #[schema(max_items = 1000)]
    pub ids: Vec<String>,
}

/// Records by id, in the order asked.
#[derive(Serialize, ToSchema)]
pub struct GetManyResponse {
    /// `null` where a record does not exist.
    pub records: Vec<Option<Record>>,
}

/// Reads up to 1000 records of collection `c` at once.
#[utoipa::path(post, path = "/v1/records/{c}/get", tag = "records", params(CollectionName),
    request_body = GetManyRequest,
    responses((status = 200, description = "The records", body = GetManyResponse)))]
async fn get_many(
    State(state): State<AppState>,
    caller: Caller,
    Segments(CollectionName { c }): Segments<CollectionName>,
    Body(req): Body<GetManyRequest>,
) -> ApiResult<Json<GetManyResponse>> {
    caller.require(Area::Records, &c, Access::Read)?;
    Ok(Json(GetManyResponse {
        records: state.records().get_many(&c, &req.ids).await?,
    }))
}

/// A range condition.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RangeCondition {
    /// A field with a `range` index.
    pub field: String,
    /// Inclusive lower bound (default: none).
    pub min: Option<f64>,
    /// Inclusive upper bound (default: none).
    pub max: Option<f64>,
}

/// Query direction.
#[derive(Deserialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Ascending (the default).
    Asc,
    /// Descending.
    Desc,
}

/// A query through declared indexes.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryBody {
    /// Field → value (a string, number or boolean); each field needs an `equal` index.
    #[serde(rename = "where", default)]
    #[schema(value_type = Object)]
    pub where_: BTreeMap<String, Value>,
    /// A range on a field with a `range` index; it orders the results (otherwise by id).
    pub range: Option<RangeCondition>,
    /// `asc` (default) or `desc`.
    pub order: Option<Order>,
    /// Page size, 1–1000 (default 100).
    #[schema(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The previous page's cursor.
    pub cursor: Option<String>,
}

/// One page of the records of collection `c` that match.
#[utoipa::path(post, path = "/v1/records/{c}/query", tag = "records", params(CollectionName),
    request_body = QueryBody,
    responses((status = 200, description = "A page; `cursor` null when nothing follows", body = RecordPage)))]
async fn query_records(
    State(state): State<AppState>,
    caller: Caller,
    Segments(CollectionName { c }): Segments<CollectionName>,
    Body(q): Body<QueryBody>,
) -> ApiResult<Json<RecordPage>> {
    caller.require(Area::Records, &c, Access::Read)?;
    if q.limit == Some(0) {
        return Err(ApiError::invalid("limit", "1 to 1000"));
    }
    let request = QueryRequest {
        equal: q.where_.into_iter().collect(),
        range: q.range.map(|r| (r.field, r.min, r.max)),
        descending: q.order == Some(Order::Desc),
        limit: q.limit.unwrap_or(100),
        cursor: q.cursor,
    };
    Ok(Json(state.records().query(&c, request).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct ListName {
    /// List name, 1–64 of `A-Za-z0-9_.-`.
    #[param(pattern = "^[A-Za-z0-9_.-]{1,64}$", min_length = 1, max_length = 64)]
    name: String,
}

/// Items to push.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// 1–1000 items of any JSON (each at most 64 KiB); the last one is the newest.
    #[schema(value_type = Vec<serde_json::Value>, min_items = 1, max_items = 1000)]
    pub items: Vec<Value>,
    /// Most items the list keeps, 1–100000 (the oldest go first).
    #[schema(minimum = 1, maximum = 100000)]
    pub cap: u64,
    /// The list's time to live in seconds, refreshed by each push (default and 0: none; at
    /// most 10 years).
    #[schema(maximum = 316224000)]
    pub ttl_s: Option<u64>,
}

/// A list's length.
#[derive(Serialize, ToSchema)]
pub struct Pushed {
    /// After the push and trim.
    pub length: u64,
}

/// Pushes items on top of list `name` and trims it to `cap`, atomically.
#[utoipa::path(post, path = "/v1/lists/{name}/push", tag = "records", params(ListName),
    request_body = PushRequest,
    responses((status = 200, description = "Pushed", body = Pushed)))]
async fn push_list(
    State(state): State<AppState>,
    caller: Caller,
    Segments(ListName { name }): Segments<ListName>,
    Body(req): Body<PushRequest>,
) -> ApiResult<Json<Pushed>> {
    caller.require(Area::Lists, &name, Access::Write)?;
    let ttl = Duration::from_secs(req.ttl_s.unwrap_or(0).min(u64::MAX / 1000));
    let length = state.lists().push(&name, &req.items, req.cap, ttl).await?;
    Ok(Json(Pushed { length }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct RangeParams {
    /// Items to skip from the newest (default 0).
    offset: Option<usize>,
    /// Most items, 1–1000 (default 100).
    limit: Option<usize>,
}

/// Items of list `name`, newest first.
#[utoipa::path(get, path = "/v1/lists/{name}", tag = "records", params(ListName, RangeParams),
    responses((status = 200, description = "A page of the list", body = ListPage)))]
async fn range_list(
    State(state): State<AppState>,
    caller: Caller,
    Segments(ListName { name }): Segments<ListName>,
    Params(p): Params<RangeParams>,
) -> ApiResult<Json<ListPage>> {
    caller.require(Area::Lists, &name, Access::Read)?;
    Ok(Json(
        state
            .lists()
            .range(&name, p.offset.unwrap_or(0), p.limit.unwrap_or(100))
            .await?,
    ))
}

/// Deletes list `name`.
#[utoipa::path(delete, path = "/v1/lists/{name}", tag = "records", params(ListName),
    responses((status = 204, description = "Deleted")))]
async fn delete_list(
    State(state): State<AppState>,
    caller: Caller,
    Segments(ListName { name }): Segments<ListName>,
) -> ApiResult<StatusCode> {
    caller.require(Area::Lists, &name, Access::Write)?;
    state.lists().delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct CounterName {
    /// Counter name, 1–64 of `A-Za-z0-9_.-`.
    #[param(pattern = "^[A-Za-z0-9_.-]{1,64}$", min_length = 1, max_length = 64)]
    name: String,
}

/// An increment of a counter.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CounterIncr {
    /// How much to add (default 1; may be negative; at most 2^53 - 1 in absolute value). An
    /// increment that would take a bucket past the 64-bit range is refused (400) and counts
    /// nothing.
    pub by: Option<i64>,
    /// A label set (at most 8 labels; a counter keeps at most 100 label sets).
    #[schema(value_type = Option<Object>)]
    pub labels: Option<Labels>,
    /// When it happened (ms since the Unix epoch; default now).
    pub at_ms: Option<u64>,
}

/// Adds to counter `name`'s minute, hour and day buckets (its total, and the label set's).
#[utoipa::path(post, path = "/v1/counters/{name}/incr", tag = "records", params(CounterName),
    request_body = CounterIncr,
    responses((status = 200, description = "The label set's bucket values now", body = Counted)))]
async fn incr_counter(
    State(state): State<AppState>,
    caller: Caller,
    Segments(CounterName { name }): Segments<CounterName>,
    Body(req): Body<CounterIncr>,
) -> ApiResult<Json<Counted>> {
    caller.require(Area::Counters, &name, Access::Write)?;
    let labels = req.labels.unwrap_or_default();
    Ok(Json(
        state
            .counters()
            .incr(&name, req.by.unwrap_or(1), &labels, req.at_ms)
            .await?,
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct CounterRangeParams {
    /// `minute`, `hour` or `day` (default minute).
    granularity: Option<Granularity>,
    /// The first bucket holds this time (ms; default 59 buckets before `to_ms`).
    from_ms: Option<u64>,
    /// The last bucket holds this time (ms; default now).
    to_ms: Option<u64>,
    /// A label set as a JSON object (default: the total).
    labels: Option<String>,
}

/// A counter's buckets.
#[derive(Serialize, ToSchema)]
pub struct CounterRange {
    /// Their size.
    pub granularity: Granularity,
    /// Oldest first; missing ones as 0.
    pub buckets: Vec<Bucket>,
}

/// Counter `name`'s buckets between two times (at most 1500).
#[utoipa::path(get, path = "/v1/counters/{name}", tag = "records", params(CounterName, CounterRangeParams),
    responses((status = 200, description = "The buckets", body = CounterRange)))]
async fn range_counter(
    State(state): State<AppState>,
    caller: Caller,
    Segments(CounterName { name }): Segments<CounterName>,
    Params(p): Params<CounterRangeParams>,
) -> ApiResult<Json<CounterRange>> {
    caller.require(Area::Counters, &name, Access::Read)?;
    let g = p.granularity.unwrap_or(Granularity::Minute);
    let labels: Labels = match p.labels.as_deref() {
        Some(text) => serde_json::from_str(text)
            .map_err(|_| ApiError::invalid("labels", "a JSON object of string values, e.g. {\"route\":\"/x\"}"))?,
        None => Labels::new(),
    };
    let to = p.to_ms.unwrap_or_else(redkit::stats::now_ms);
    let from = p.from_ms.unwrap_or_else(|| to.saturating_sub(59 * g.ms()));
    let buckets = state.counters().range(&name, &labels, g, from, to).await?;
    Ok(Json(CounterRange {
        granularity: g,
        buckets,
    }))
}

/// A counter's label sets.
#[derive(Serialize, ToSchema)]
pub struct LabelSets {
    /// Each label set seen.
    #[schema(value_type = Vec<Object>)]
    pub labels: Vec<Labels>,
}

/// The label sets counter `name` has seen.
#[utoipa::path(get, path = "/v1/counters/{name}/labels", tag = "records", params(CounterName),
    responses((status = 200, description = "The label sets", body = LabelSets)))]
async fn counter_labels(
    State(state): State<AppState>,
    caller: Caller,
    Segments(CounterName { name }): Segments<CounterName>,
) -> ApiResult<Json<LabelSets>> {
    caller.require(Area::Counters, &name, Access::Read)?;
    Ok(Json(LabelSets {
        labels: state.counters().label_sets(&name).await?,
    }))
}
