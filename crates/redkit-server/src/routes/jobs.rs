//! `/v1/queues/…`: durable job queues over HTTP, for workers in any language.
//!
//! A worker loops: `POST /v1/queues/{q}/fetch` (long-polls up to `wait_ms`; 204 when
//! nothing came) → run the job, sending `heartbeat` (or `progress`) well within the lease
//! → `ack`, or `fail` with the error (retried with backoff, then dead), or `release` when
//! stopping. Every call after fetch carries the lease `token`; a token whose lease ended
//! (the job went to another worker) gets 409. Delivery is at least once.
//!
//! Job ids are unique per queue, so a job is addressed as `/v1/queues/{q}/jobs/{id}`.

use std::time::{Duration, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use redkit::jobs::{Backoff, EnqueueOptions, Enqueued, JobInfo, JobState, LeasedJob, Queue, QueueCounts, Settled};
use redkit::stats::now_ms;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Access, Area, Caller};
use crate::error::{ApiError, ApiResult, Body, ErrorBody, Params, Segments};
use crate::state::AppState;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_queues))
        .routes(routes!(queue_stats))
        .routes(routes!(enqueue, list_jobs))
        .routes(routes!(enqueue_batch))
        .routes(routes!(fetch))
        .routes(routes!(get_job))
        .routes(routes!(ack))
        .routes(routes!(fail))
        .routes(routes!(release))
        .routes(routes!(heartbeat))
        .routes(routes!(progress))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(list_dead, purge_all_dead))
        .routes(routes!(retry_all_dead))
        .routes(routes!(retry_dead, purge_dead))
}

/// Longest long poll of a fetch.
const MAX_WAIT: Duration = Duration::from_secs(60);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct QueuePath {
    /// Queue name: 1–64 of A-Z a-z 0-9 _ - .
    #[param(pattern = "^[A-Za-z0-9_.-]{1,64}$", min_length = 1, max_length = 64)]
    q: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct JobPath {
    /// Queue name: 1–64 of A-Z a-z 0-9 _ - .
    #[param(pattern = "^[A-Za-z0-9_.-]{1,64}$", min_length = 1, max_length = 64)]
    q: String,
    /// Job id: 1–128 of A-Z a-z 0-9 _ . : @ -
    #[param(pattern = "^[A-Za-z0-9_.:@-]{1,128}$", min_length = 1, max_length = 128)]
    id: String,
}

fn json_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// A job as stored.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct JobView {
    pub id: String,
    #[schema(value_type = String)]
    pub state: JobState,
    #[schema(value_type = serde_json::Value)]
    pub payload: Value,
    pub priority: i32,
    pub attempts: u32,
    pub max_attempts: u32,
    pub last_error: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub progress: Option<Value>,
    pub created_ms: u64,
    pub run_at_ms: u64,
    pub finished_ms: Option<u64>,
    pub worker: Option<String>,
    pub lease_until_ms: Option<u64>,
    pub unique_key: Option<String>,
}

impl From<JobInfo> for JobView {
    fn from(j: JobInfo) -> Self {
        JobView {
            payload: json_text(&j.payload),
            progress: j.progress.as_deref().map(json_text),
            id: j.id,
            state: j.state,
            priority: j.priority,
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            last_error: j.last_error,
            created_ms: j.created_ms,
            run_at_ms: j.run_at_ms,
            finished_ms: j.finished_ms,
            worker: j.worker,
            lease_until_ms: j.lease_until_ms,
            unique_key: j.unique_key,
        }
    }
}

/// A job leased to the caller.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct LeasedJobView {
    pub id: String,
    /// Proves the lease: send it with ack, fail, release, heartbeat and progress.
    pub token: String,
    #[schema(value_type = serde_json::Value)]
    pub payload: Value,
    /// This attempt (1-based).
    pub attempt: u32,
    pub max_attempts: u32,
    pub priority: i32,
    /// The handler's time limit in ms (0: none).
    pub timeout_ms: u64,
    pub created_ms: u64,
    /// Progress reported by an earlier attempt.
    #[schema(value_type = Option<Object>)]
    pub progress: Option<Value>,
    /// When the lease ends unless renewed (ms since the Unix epoch, this server's clock).
    pub lease_until_ms: u64,
}

impl LeasedJobView {
    fn new(j: LeasedJob, lease: Duration) -> Self {
        LeasedJobView {
            payload: json_text(&j.payload),
            progress: j.progress.as_deref().map(json_text),
            lease_until_ms: now_ms() + lease.as_millis() as u64,
            id: j.id,
            token: j.token,
            attempt: j.attempt,
            max_attempts: j.max_attempts,
            priority: j.priority,
            timeout_ms: j.timeout_ms,
            created_ms: j.created_ms,
        }
    }
}

/// The lease asked for, or the queue's default.
fn lease_or_default(queue: &Queue, lease_ms: Option<u64>) -> Duration {
    lease_ms.map_or(queue.options().lease, Duration::from_millis)
}

/// A queue and its counts.
#[derive(Serialize, ToSchema)]
pub struct QueueView {
    pub name: String,
    #[serde(flatten)]
    pub counts: QueueCounts,
}

/// Every queue known to the store (that the caller may read), with counts.
#[utoipa::path(get, path = "/v1/queues", tag = "jobs",
    responses((status = 200, description = "Queues", body = Vec<QueueView>)))]
async fn list_queues(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<QueueView>>> {
    let mut out = Vec::new();
    for name in state.redkit().queues().await? {
        if caller.may(Area::Queues, &name, Access::Read) {
            let counts = state.queue_to_use(&name)?.stats().await?;
            out.push(QueueView { name, counts });
        }
    }
    Ok(Json(out))
}

/// Counts by state, lifetime totals, paused.
#[utoipa::path(get, path = "/v1/queues/{q}", tag = "jobs", params(QueuePath),
    responses((status = 200, description = "Counts", body = QueueView)))]
async fn queue_stats(
    State(state): State<AppState>,
    caller: Caller,
    Segments(QueuePath { q }): Segments<QueuePath>,
) -> ApiResult<Json<QueueView>> {
    caller.require(Area::Queues, &q, Access::Read)?;
    let counts = state.queue_to_use(&q)?.stats().await?;
    Ok(Json(QueueView { name: q, counts }))
}

/// A job to enqueue.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueRequest {
    /// Any JSON (at most 1 MiB).
    #[schema(value_type = serde_json::Value)]
    pub payload: Value,
    /// Your id for it (enqueueing the same id again adds nothing); default: generated.
    pub id: Option<String>,
    /// Run after this many ms.
    pub delay_ms: Option<u64>,
    /// Run at this time (ms since the Unix epoch).
    pub run_at_ms: Option<u64>,
    /// Higher runs first, -1000 to 1000 (default 0).
    #[serde(default)]
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: i32,
    /// Attempts before it is dead (default 3).
    #[schema(minimum = 1, maximum = 1000)]
    pub max_attempts: Option<u32>,
    /// Delay between attempts (default exponential from 1 s, capped at 1 h).
    pub backoff: Option<Backoff>,
    /// The handler's time limit in ms.
    pub timeout_ms: Option<u64>,
    /// While a job with this key is waiting, delayed or active, no second one is added.
    pub unique_key: Option<String>,
}

impl EnqueueRequest {
    fn split(self) -> (Value, EnqueueOptions) {
        let mut o = EnqueueOptions::new().priority(self.priority);
        if let Some(id) = self.id {
            o = o.id(id);
        }
        if let Some(d) = self.delay_ms {
            o = o.delay(Duration::from_millis(d));
        }
        if let Some(at) = self.run_at_ms {
            o = o.run_at(UNIX_EPOCH + Duration::from_millis(at));
        }
        if let Some(n) = self.max_attempts {
            o = o.max_attempts(n);
        }
        if let Some(b) = self.backoff {
            o = o.backoff(b);
        }
        if let Some(t) = self.timeout_ms {
            o = o.timeout(Duration::from_millis(t));
        }
        if let Some(k) = self.unique_key {
            o = o.unique_key(k);
        }
        (self.payload, o)
    }
}

/// Enqueues a job: 201 when added, 200 when it was a duplicate (same id, or a pending job
/// with the same unique key — whose id is answered).
#[utoipa::path(post, path = "/v1/queues/{q}/jobs", tag = "jobs", params(QueuePath),
    request_body = EnqueueRequest,
    responses(
        (status = 201, description = "Added", body = Enqueued),
        (status = 200, description = "Duplicate; nothing added", body = Enqueued),
        (status = 400, description = "Bad option (named)", body = ErrorBody),
        (status = 413, description = "Payload over the limit", body = ErrorBody)
    ))]
async fn enqueue(
    State(state): State<AppState>,
    caller: Caller,
    Segments(QueuePath { q }): Segments<QueuePath>,
    Body(req): Body<EnqueueRequest>,
) -> ApiResult<(StatusCode, Json<Enqueued>)> {
    caller.require(Area::Queues, &q, Access::Write)?;
    let (payload, opts) = req.split();
    let done = state.queue(&q)?.enqueue(&payload, opts).await?;
    let status = if done.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(done)))
}

/// Jobs to enqueue together.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// Up to 1000; stored atomically (all or none).
    pub jobs: Vec<EnqueueRequest>,
}

/// Enqueues up to 1000 jobs atomically; one bad job refuses the batch.
#[utoipa::path(post, path = "/v1/queues/{q}/batch", tag = "jobs", params(QueuePath),
    request_body = BatchRequest,
    responses(
        (status = 200, description = "One answer per job, in order", body = Vec<Enqueued>),
        (status = 400, description = "Bad job (named)", body = ErrorBody)
    ))]
async fn enqueue_batch(
    State(state): State<AppState>,
    caller: Caller,
    Segments(QueuePath { q }): Segments<QueuePath>,
    Body(req): Body<BatchRequest>,
) -> ApiResult<Json<Vec<Enqueued>>> {
    caller.require(Area::Queues, &q, Access::Write)?;
    let jobs: Vec<(Value, EnqueueOptions)> = req.jobs.into_iter().map(EnqueueRequest::split).collect();
    Ok(Json(state.queue(&q)?.enqueue_batch(&jobs).await?))
}

/// Paging of a listing.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// waiting (default), delayed, active, completed or dead.
    #[param(value_type = Option<String>)]
    state: Option<JobState>,
    /// Skip this many (default 0).
    offset: Option<u64>,
    /// At most this many (1–1000, default 100).
    limit: Option<u64>,
}

/// Jobs in one state, paged.
#[utoipa::path(get, path = "/v1/queues/{q}/jobs", tag = "jobs", params(QueuePath, ListParams),
    responses((status = 200, description = "Jobs", body = Vec<JobView>)))]
async fn list_jobs(
    State(state): State<AppState>,
    caller: Caller,
    Segments(QueuePath { q }): Segments<QueuePath>,
    Params(p): Params<ListParams>,
) -> ApiResult<Json<Vec<JobView>>> {
    page(
        &state,
        &caller,
        &q,
        p.state.unwrap_or(JobState::Waiting),
        p.offset,
        p.limit,
    )
    .await
}

async fn page(
    state: &AppState,
    caller: &Caller,
    q: &str,
    job_state: JobState,
    offset: Option<u64>,
    limit: Option<u64>,
) -> ApiResult<Json<Vec<JobView>>> {
    caller.require(Area::Queues, q, Access::Read)?;
    let jobs = state
        .queue(q)?
        .list(job_state, offset.unwrap_or(0), limit.unwrap_or(100))
        .await?;
    Ok(Json(jobs.into_iter().map(JobView::from).collect()))
}

/// A fetch.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchRequest {
    /// Who is asking (shown in job details), 1–128 bytes.
    #[schema(min_length = 1, max_length = 128)]
    pub worker: String,
    /// Lease up to this many jobs (1–1000, default 1).
    #[schema(minimum = 1, maximum = 1000)]
    pub max: Option<usize>,
    /// Lease length in ms (100 ms to 24 h; default the queue's, 30 s).
    #[schema(minimum = 100, maximum = 86400000)]
    pub lease_ms: Option<u64>,
    /// Wait this long for a job when none is ready (at most 60000; default 0).
    #[schema(maximum = 60000)]
    pub wait_ms: Option<u64>,
}

/// Leased jobs.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct FetchedJobs {
    pub jobs: Vec<LeasedJobView>,
}

/// Leases up to `max` ready jobs: 200 with the jobs, 204 when none came within `wait_ms`
/// (or the queue is paused, or the server is shutting down).
#[utoipa::path(post, path = "/v1/queues/{q}/fetch", tag = "jobs", params(QueuePath),
    request_body = FetchRequest,
    responses(
        (status = 200, description = "Leased jobs", body = FetchedJobs),
        (status = 204, description = "Nothing ready")
    ))]
async fn fetch(
    State(state): State<AppState>,
    caller: Caller,
    Segments(QueuePath { q }): Segments<QueuePath>,
    Body(req): Body<FetchRequest>,
) -> ApiResult<Response> {
    caller.require(Area::Queues, &q, Access::Write)?;
    let queue = state.queue_to_use(&q)?;
    let lease = lease_or_default(&queue, req.lease_ms);
    let wait = Duration::from_millis(req.wait_ms.unwrap_or(0));
    if wait > MAX_WAIT {
        return Err(ApiError::invalid("wait_ms", "must be at most 60000"));
    }
    let max = req.max.unwrap_or(1);
    let jobs = tokio::select! {
        jobs = queue.fetch_wait(&req.worker, max, lease, wait) => jobs?,
        _ = state.shutting_down() => Vec::new(),
    };
    if jobs.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let jobs = jobs.into_iter().map(|j| LeasedJobView::new(j, lease)).collect();
    Ok(Json(FetchedJobs { jobs }).into_response())
}

/// The job `id`.
#[utoipa::path(get, path = "/v1/queues/{q}/jobs/{id}", tag = "jobs", params(JobPath),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 404, description = "Unknown (or no longer retained)", body = ErrorBody)
    ))]
async fn get_job(
    State(state): State<AppState>,
    caller: Caller,
    Segments(JobPath { q, id }): Segments<JobPath>,
) -> ApiResult<Json<JobView>> {
    caller.require(Area::Queues, &q, Access::Read)?;
    state
        .queue(&q)?
        .job(&id)
        .await?
        .map(|j| Json(JobView::from(j)))
        .ok_or_else(|| ApiError::not_found(format!("no job {id:?} in queue {q:?}")))
}

/// The lease token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The lease token a fetch gave.
    #[schema(pattern = "^[re]-", min_length = 3, max_length = 128)]
    pub token: String,
}

/// A failed attempt.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    /// The lease token a fetch gave.
    #[schema(pattern = "^[re]-", min_length = 3, max_length = 128)]
    pub token: String,
    /// What went wrong (at most 4 KiB kept).
    pub error: String,
}

/// What happened.
#[derive(Serialize, ToSchema)]
pub struct SettledView {
    /// completed, retrying, dead, released, or deferred (journaled while Redis is away;
    /// applied when it returns).
    pub outcome: Settled,
}

fn settled(outcome: Settled, id: &str) -> ApiResult<Json<SettledView>> {
    if outcome == Settled::LeaseLost {
        return Err(lease_lost(id));
    }
    Ok(Json(SettledView { outcome }))
}

fn lease_lost(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "conflict",
        format!(
            "the lease on job {id:?} is no longer this token's (it expired and the job went back to the queue, or it was settled already)"
        ),
    )
}

/// Ends the attempt successfully.
#[utoipa::path(post, path = "/v1/queues/{q}/jobs/{id}/ack", tag = "jobs", params(JobPath),
    request_body = TokenRequest,
    responses(
        (status = 200, description = "Completed (or deferred)", body = SettledView),
        (status = 409, description = "Lease lost", body = ErrorBody)
    ))]
async fn ack(
    State(state): State<AppState>,
    caller: Caller,
    Segments(JobPath { q, id }): Segments<JobPath>,
    Body(req): Body<TokenRequest>,
) -> ApiResult<Json<SettledView>> {
    caller.require(Area::Queues, &q, Access::Write)?;
    settled(state.queue_to_use(&q)?.ack(&id, &req.token).await?, &id)
}

/// Ends the attempt as failed: retried after its backoff, or dead after its last attempt.
#[utoipa::path(post, path = "/v1/queues/{q}/jobs/{id}/fail", tag = "jobs", params(JobPath),
    request_body = FailRequest,
    responses(
        (status = 200, description = "Retrying or dead (or deferred)", body = SettledView),
        (status = 409, description = "Lease lost", body = ErrorBody)
    ))]
async fn fail(
    State(state): State<AppState>,
    caller: Caller,
    Segments(JobPath { q, id }): Segments<JobPath>,
    Body(req): Body<FailRequest>,
) -> ApiResult<Json<SettledView>> {
    caller.require(Area::Queues, &q, Access::Write)?;
    settled(state.queue_to_use(&q)?.fail(&id, &req.token, &req.error).await?, &id)
}

/// Hands the job back unfinished: ready again at once, the attempt not counted.
#[utoipa::path(post, path = "/v1/queues/{q}/jobs/{id}/release", tag = "jobs", operation_id = "release_job", params(JobPath),
    request_body = TokenRequest,
    responses(
        (status = 200, description = "Released (or deferred)", body = SettledView),
        (status = 409, description = "Lease lost", body = ErrorBody)
    ))]
async fn release(
    State(state): State<AppState>,
    caller: Caller,
    Segments(JobPath { q, id }): Segments<JobPath>,
    Body(req): Body<TokenRequest>,
) -> ApiResult<Json<SettledView>> {
    caller.require(Area::Queues, &q, Access::Write)?;
    settled(state.queue_to_use(&q)?.release(&id, &req.token).await?, &id)
}

/// A lease renewal.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The lease token a fetch gave.
    #[schema(pattern = "^[re]-", min_length = 3, max_length = 128)]
    pub token: String,
    /// New lease from now, in ms (100 ms to 24 h; default the queue's, 30 s).
    #[schema(minimum = 100, maximum = 86400000)]
    pub lease_ms: Option<u64>,
}

/// Progress, which also renews the lease.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressRequest {
    /// The lease token a fetch gave.
    #[schema(pattern = "^[re]-", min_length = 3, max_length = 128)]
    pub token: String,
    /// Any JSON (at most 64 KiB); a later attempt sees it.
    #[schema(value_type = serde_json::Value)]
    pub progress: Value,
    /// New lease from now, in ms (100 ms to 24 h; default the queue's, 30 s).
    #[schema(minimum = 100, maximum = 86400000)]
    pub lease_ms: Option<u64>,
}

/// The renewed lease.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct LeaseView {
    /// When the lease ends unless renewed again (ms since the Unix epoch).
    pub lease_until_ms: u64,
}

fn renewed(held: bool, id: &str, lease: Duration) -> ApiResult<Json<LeaseView>> {
    if !held {
        return Err(lease_lost(id));
    }
    Ok(Json(LeaseView {
        lease_until_ms: now_ms() + lease.as_millis() as u64,
    }))
}

/// Renews the lease; 409 when it is lost (stop working on the job).
#[utoipa::path(post, path = "/v1/queues/{q}/jobs/{id}/heartbeat", tag = "jobs", params(JobPath),
    request_body = HeartbeatRequest,
    responses(
        (status = 200, description = "Renewed", body = LeaseView),
        (status = 409, description = "Lease lost", body = ErrorBody)
    ))]
async fn heartbeat(
    State(state): State<AppState>,
    caller: Caller,
    Segments(JobPath { q, id }): Segments<JobPath>,
    Body(req): Body<HeartbeatRequest>,
) -> ApiResult<Json<LeaseView>> {
    caller.require(Area::Queues, &q, Access::Write)?;
    let queue = state.queue_to_use(&q)?;
    let lease = lease_or_default(&queue, req.lease_ms);
    renewed(queue.heartbeat(&id, &req.token, lease).await?, &id, lease)
}

/// Records progress and renews the lease; 409 when it is lost.
#[utoipa::path(post, path = "/v1/queues/{q}/jobs/{id}/progress", tag = "jobs", params(JobPath),
    request_body = ProgressRequest,
    responses(
        (status = 200, description = "Stored; lease renewed", body = LeaseView),
        (status = 409, description = "Lease lost", body = ErrorBody)
    ))]
async fn progress(
    State(state): State<AppState>,
    caller: Caller,
    Segments(JobPath { q, id }): Segments<JobPath>,
    Body(req): Body<ProgressRequest>,
) -> ApiResult<Json<LeaseView>> {
    caller.require(Area::Queues, &q, Access::Write)?;
    let queue = state.queue_to_use(&q)?;
    let lease = lease_or_default(&queue, req.lease_ms);
    renewed(queue.progress(&id, &req.token, &req.progress, lease).await?, &id, lease)
}

/// Stops handing jobs out (enqueueing continues); needs `admin`.
#[utoipa::path(post, path = "/v1/queues/{q}/pause", tag = "jobs", params(QueuePath),
    responses((status = 200, description = "Paused", body = QueueView)))]
async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    Segments(QueuePath { q }): Segments<QueuePath>,
) -> ApiResult<Json<QueueView>> {
    caller.require(Area::Queues, &q, Access::Admin)?;
    let queue = state.queue_to_use(&q)?;
    queue.pause().await?;
    let counts = queue.stats().await?;
    Ok(Json(QueueView { name: q, counts }))
}

/// Hands jobs out again; needs `admin`.
#[utoipa::path(post, path = "/v1/queues/{q}/resume", tag = "jobs", params(QueuePath),
    responses((status = 200, description = "Resumed", body = QueueView)))]
async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Segments(QueuePath { q }): Segments<QueuePath>,
) -> ApiResult<Json<QueueView>> {
    caller.require(Area::Queues, &q, Access::Admin)?;
    let queue = state.queue_to_use(&q)?;
    queue.resume().await?;
    let counts = queue.stats().await?;
    Ok(Json(QueueView { name: q, counts }))
}

/// Paging.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PageParams {
    /// Skip this many (default 0).
    offset: Option<u64>,
    /// At most this many (1–1000, default 100).
    limit: Option<u64>,
}

/// Dead jobs, newest first.
#[utoipa::path(get, path = "/v1/queues/{q}/dead", tag = "jobs", params(QueuePath, PageParams),
    responses((status = 200, description = "Dead jobs", body = Vec<JobView>)))]
async fn list_dead(
    State(state): State<AppState>,
    caller: Caller,
    Segments(QueuePath { q }): Segments<QueuePath>,
    Params(p): Params<PageParams>,
) -> ApiResult<Json<Vec<JobView>>> {
    page(&state, &caller, &q, JobState::Dead, p.offset, p.limit).await
}

/// How many jobs an operation moved or removed.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Count {
    pub count: u64,
}

/// Moves every dead job back to waiting, attempts reset; needs `admin`.
#[utoipa::path(post, path = "/v1/queues/{q}/dead/retry", tag = "jobs", params(QueuePath),
    responses((status = 200, description = "Moved", body = Count)))]
async fn retry_all_dead(
    State(state): State<AppState>,
    caller: Caller,
    Segments(QueuePath { q }): Segments<QueuePath>,
) -> ApiResult<Json<Count>> {
    caller.require(Area::Queues, &q, Access::Admin)?;
    let count = state.queue_to_use(&q)?.retry_dead(None).await?;
    Ok(Json(Count { count }))
}

/// Deletes every dead job; needs `admin`.
#[utoipa::path(delete, path = "/v1/queues/{q}/dead", tag = "jobs", params(QueuePath),
    responses((status = 200, description = "Deleted", body = Count)))]
async fn purge_all_dead(
    State(state): State<AppState>,
    caller: Caller,
    Segments(QueuePath { q }): Segments<QueuePath>,
) -> ApiResult<Json<Count>> {
    caller.require(Area::Queues, &q, Access::Admin)?;
    let count = state.queue_to_use(&q)?.purge_dead(None).await?;
    Ok(Json(Count { count }))
}

/// Moves dead job `id` back to waiting, attempts reset; 404 if it is not dead.
#[utoipa::path(post, path = "/v1/queues/{q}/dead/{id}/retry", tag = "jobs", params(JobPath),
    responses(
        (status = 200, description = "Moved", body = Count),
        (status = 404, description = "No such dead job", body = ErrorBody)
    ))]
async fn retry_dead(
    State(state): State<AppState>,
    caller: Caller,
    Segments(JobPath { q, id }): Segments<JobPath>,
) -> ApiResult<Json<Count>> {
    caller.require(Area::Queues, &q, Access::Admin)?;
    match state.queue_to_use(&q)?.retry_dead(Some(&id)).await? {
        0 => Err(ApiError::not_found(format!("no dead job {id:?} in queue {q:?}"))),
        count => Ok(Json(Count { count })),
    }
}

/// Deletes dead job `id`; 404 if it is not dead.
#[utoipa::path(delete, path = "/v1/queues/{q}/dead/{id}", tag = "jobs", params(JobPath),
    responses(
        (status = 200, description = "Deleted", body = Count),
        (status = 404, description = "No such dead job", body = ErrorBody)
    ))]
async fn purge_dead(
    State(state): State<AppState>,
    caller: Caller,
    Segments(JobPath { q, id }): Segments<JobPath>,
) -> ApiResult<Json<Count>> {
    caller.require(Area::Queues, &q, Access::Admin)?;
    match state.queue_to_use(&q)?.purge_dead(Some(&id)).await? {
        0 => Err(ApiError::not_found(format!("no dead job {id:?} in queue {q:?}"))),
        count => Ok(Json(Count { count })),
    }
}
