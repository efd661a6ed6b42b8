//! The ingest HTTP server (warp): `POST /v1/mentions`, `DELETE /v1/mentions/{id}`,
//! `/healthz`, `/readyz`, `/metrics`, and the live alert streams of [`stream`]
//! (`GET /v1/alerts/stream`, `GET /v1/alerts/ws`).
//!
//! The API key decides the organisation; a record never does. Records are validated one by
//! one: valid ones are accepted beside invalid ones, and each rejection names its index,
//! field and reason. Bad input yields a 4xx, never a 5xx.

pub mod body;
pub mod raw;
pub mod registry;
pub mod stream;
pub mod validate;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;
use vigie_sinks::clickhouse::{migrations, ClickHouseConfig};
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Reply;
use warp::Filter;

use self::body::BodyError;
use self::registry::{Registry, SourceState};
use self::validate::Rejection;
use crate::graph::records::{MentionBody, MentionKey};
use crate::metrics::Metrics;
use crate::runtime::{Refusal, Submission};

/// Everything the handlers share.
pub struct IngestState {
    /// Key and source cache.
    pub registry: Registry,
    /// Where accepted records go.
    pub submissions: mpsc::Sender<Submission>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Largest accepted body, before and after gzip.
    pub body_limit: usize,
    /// For `/readyz`.
    pub clickhouse: ClickHouseConfig,
    /// Negative control of the chaos harness only: ignore client ids (breaks idempotence).
    pub ignore_client_ids: bool,
    /// Live alert streams: the dataflow publishes, SSE and WebSocket clients subscribe.
    pub alerts: Arc<stream::AlertHub>,
}

/// Errors a request can end in; each has one status.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// 401.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 400, 413 or 415 from the body.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// 400: the path's id is not a UUID.
    #[error("id in the path must be a UUID")]
    BadId,
    /// 422: no record was valid.
    #[error("no record is valid")]
    NothingValid(Vec<Rejection>),
    /// 503: a dependency is down; the client should retry.
    #[error("{0}; retry later")]
    Unavailable(&'static str),
}

impl IngestError {
    fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Body(BodyError::UnsupportedMediaType(_) | BodyError::UnsupportedEncoding(_)) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::Body(BodyError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Body(BodyError::BadGzip(_) | BodyError::NotJson(_)) | Self::BadId => {
                StatusCode::BAD_REQUEST
            }
            Self::NothingValid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::Body(BodyError::UnsupportedMediaType(_)) => "unsupported_media_type",
            Self::Body(BodyError::UnsupportedEncoding(_)) => "unsupported_encoding",
            Self::Body(BodyError::TooLarge { .. }) => "payload_too_large",
            Self::Body(BodyError::BadGzip(_)) => "bad_gzip",
            Self::Body(BodyError::NotJson(_)) => "invalid_json",
            Self::BadId => "invalid_id",
            Self::NothingValid(_) => "no_valid_records",
            Self::Unavailable(_) => "unavailable",
        }
    }

    fn into_response(self) -> warp::reply::Response {
        let status = self.status();
        let mut body = json!({"error": self.code(), "message": self.to_string()});
        if let Self::NothingValid(rejections) = &self {
            body["accepted"] = json!(0);
            body["rejected"] = json!(rejections.len());
            body["errors"] = json!(rejections);
        }
        if let Self::BadId = &self {
            body["field"] = json!("id");
        }
        let mut resp = warp::reply::with_status(warp::reply::json(&body), status).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                "www-authenticate",
                warp::http::HeaderValue::from_static("Bearer"),
            );
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert("retry-after", warp::http::HeaderValue::from_static("1"));
        }
        resp
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn authenticate(state: &IngestState, headers: &HeaderMap) -> Result<Uuid, IngestError> {
    let auth = header(headers, "authorization").ok_or(IngestError::Unauthorized(
        "missing Authorization: Bearer <ingest key>",
    ))?;
    let key = auth
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, k)| k.trim())
        .filter(|k| !k.is_empty())
        .ok_or(IngestError::Unauthorized(
            "Authorization must be: Bearer <ingest key>",
        ))?;
    org_for_key(state, key).await
}

/// The organisation of an ingest key (401 when unknown or revoked); also used by the live
/// streams, whose browser clients may pass the key in the query.
async fn org_for_key(state: &IngestState, key: &str) -> Result<Uuid, IngestError> {
    match state.registry.org_for_key(key).await {
        Ok(Some(org)) => Ok(org),
        Ok(None) => Err(IngestError::Unauthorized("unknown or revoked ingest key")),
        Err(e) => {
            tracing::warn!(error = %e, "key lookup failed");
            Err(IngestError::Unavailable(
                "cannot check the key: ClickHouse is unreachable",
            ))
        }
    }
}

async fn read_body<S, B>(stream: S, limit: usize) -> Result<Bytes, IngestError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut buf = BytesMut::new();
    futures_util::pin_mut!(stream);
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| BodyError::NotJson(format!("body could not be read: {e}")))?;
        if buf.len() + chunk.remaining() > limit {
            return Err(BodyError::TooLarge { limit }.into());
        }
        buf.put(chunk);
    }
    Ok(buf.freeze())
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

async fn submit(
    state: &IngestState,
    upserts: Vec<(MentionKey, Option<MentionBody>)>,
) -> Result<u64, IngestError> {
    let (ack, acked) = oneshot::channel();
    state
        .submissions
        .send(Submission { upserts, ack })
        .await
        .map_err(|_| IngestError::Unavailable("the pipeline is shutting down"))?;
    match acked.await {
        Ok(Ok(time)) => Ok(time),
        Ok(Err(Refusal::LogFull)) => Err(IngestError::Unavailable(
            "the write-ahead log is at its disk budget because ClickHouse is behind",
        )),
        Ok(Err(Refusal::LogFailed)) => Err(IngestError::Unavailable(
            "the mentions could not be persisted",
        )),
        Err(_) => Err(IngestError::Unavailable("the pipeline is shutting down")),
    }
}

async fn post_mentions<S, B>(
    state: &IngestState,
    headers: &HeaderMap,
    stream: S,
) -> Result<warp::reply::Response, IngestError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let org = authenticate(state, headers).await?;
    let framing = body::framing(header(headers, "content-type"))?;
    let gzip = body::is_gzip(header(headers, "content-encoding"))?;
    let raw = read_body(stream, state.body_limit).await?;
    let raw = if gzip {
        Bytes::from(body::gunzip(&raw, state.body_limit)?)
    } else {
        raw
    };
    let records = body::records(&raw, framing)?;

    let now = now_secs();
    let mut rejections = Vec::new();
    let mut candidates = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        let checked = match record {
            Ok(v) => validate::validate(index, v, org, now),
            Err(reason) => Err(Rejection {
                index,
                field: "(record)".into(),
                reason: reason.clone(),
            }),
        };
        match checked {
            Ok(c) => candidates.push((index, c)),
            Err(r) => rejections.push(r),
        }
    }
    let mut upserts = Vec::with_capacity(candidates.len());
    let mut ids = Vec::with_capacity(candidates.len());
    for (index, c) in candidates {
        let state_of_source = state
            .registry
            .source(org, c.body.source)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "source lookup failed");
                IngestError::Unavailable("cannot check sources: ClickHouse is unreachable")
            })?;
        let (state_of_source, keywords) = state_of_source;
        let reason = match state_of_source {
            SourceState::Active => None,
            SourceState::Inactive => Some("source is disabled"),
            SourceState::Unknown => Some("no such source in this organisation"),
        };
        if let Some(reason) = reason {
            rejections.push(Rejection {
                index,
                field: "source_id".into(),
                reason: reason.into(),
            });
            continue;
        }
        let id =
            c.id.filter(|_| !state.ignore_client_ids)
                .unwrap_or_else(Uuid::new_v4);
        ids.push(id);
        let mut body = c.body;
        // Matched now, against the source's keywords of now: the log then replays the
        // same matches whatever the source's keywords become.
        body.keywords = keywords
            .matched(&body.text)
            .into_iter()
            .map(|i| keywords.keywords()[i].clone())
            .collect();
        upserts.push((MentionKey { org, id }, Some(body)));
    }
    rejections.sort_by_key(|r| r.index);
    let rejected = rejections.len();
    state
        .metrics
        .mentions_rejected
        .fetch_add(rejected as u64, std::sync::atomic::Ordering::Relaxed);
    if upserts.is_empty() {
        return Err(IngestError::NothingValid(rejections));
    }
    let accepted = upserts.len();
    let epoch = submit(state, upserts).await?;
    state
        .metrics
        .mentions_accepted
        .fetch_add(accepted as u64, std::sync::atomic::Ordering::Relaxed);
    let body = json!({"accepted": accepted, "rejected": rejected, "ids": ids, "errors": rejections, "epoch": epoch});
    Ok(warp::reply::with_status(warp::reply::json(&body), StatusCode::ACCEPTED).into_response())
}

async fn delete_mention(
    state: &IngestState,
    headers: &HeaderMap,
    id: &str,
) -> Result<warp::reply::Response, IngestError> {
    let org = authenticate(state, headers).await?;
    let id = Uuid::parse_str(id).map_err(|_| IngestError::BadId)?;
    submit(state, vec![(MentionKey { org, id }, None)]).await?;
    state
        .metrics
        .deletions_accepted
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let body = json!({"deleted": id});
    Ok(warp::reply::with_status(warp::reply::json(&body), StatusCode::ACCEPTED).into_response())
}

fn finish(
    state: &IngestState,
    started: Instant,
    r: Result<warp::reply::Response, IngestError>,
) -> warp::reply::Response {
    let resp = r.unwrap_or_else(IngestError::into_response);
    state.metrics.count_request(resp.status().as_u16());
    state.metrics.ingest_latency.observe(started.elapsed());
    resp
}

fn error_reply(status: StatusCode, code: &str, message: &str) -> warp::reply::Response {
    warp::reply::with_status(
        warp::reply::json(&json!({"error": code, "message": message})),
        status,
    )
    .into_response()
}

async fn recover(r: warp::Rejection) -> Result<warp::reply::Response, Infallible> {
    Ok(if r.is_not_found() {
        error_reply(StatusCode::NOT_FOUND, "not_found", "no such route")
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        error_reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this route",
        )
    } else {
        error_reply(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the request could not be understood",
        )
    })
}

/// All routes of the ingest server.
pub fn routes(
    state: Arc<IngestState>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone {
    let streams = stream::routes(state.clone());
    let with_state = warp::any().map(move || state.clone());
    // Paths before methods, so an unknown path is 404 and a known one with the wrong method 405.
    let post = warp::path!("v1" / "mentions")
        .and(warp::post())
        .and(with_state.clone())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            |state: Arc<IngestState>, headers: HeaderMap, stream| async move {
                let started = Instant::now();
                let r = post_mentions(&state, &headers, stream).await;
                finish(&state, started, r)
            },
        );
    let delete = warp::path!("v1" / "mentions" / String)
        .and(warp::delete())
        .and(with_state.clone())
        .and(warp::header::headers_cloned())
        .then(
            |id: String, state: Arc<IngestState>, headers: HeaderMap| async move {
                let started = Instant::now();
                let r = delete_mention(&state, &headers, &id).await;
                finish(&state, started, r)
            },
        );
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::json(&json!({"status": "ok"})).into_response());
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(with_state.clone())
        .then(|state: Arc<IngestState>| async move {
            match migrations::check_ready(&state.clickhouse).await {
                Ok(()) => warp::reply::json(&json!({"status": "ready"})).into_response(),
                Err(e) => {
                    let body = json!({"status": "not_ready", "reason": e.to_string()});
                    warp::reply::with_status(
                        warp::reply::json(&body),
                        StatusCode::SERVICE_UNAVAILABLE,
                    )
                    .into_response()
                }
            }
        });
    let metrics =
        warp::path!("metrics")
            .and(warp::get())
            .and(with_state)
            .map(|state: Arc<IngestState>| {
                warp::reply::with_header(
                    state.metrics.render() + &state.alerts.render_prometheus(),
                    "content-type",
                    "text/plain; version=0.0.4",
                )
                .into_response()
            });
    post.or(delete)
        .unify()
        .or(healthz)
        .unify()
        .or(readyz)
        .unify()
        .or(metrics)
        .unify()
        .or(streams)
        .unify()
        .recover(recover)
        .unify()
}

/// Serves the routes on `listener` until `shutdown` resolves, then closes the live alert
/// streams (open ones would hold the graceful shutdown) and drains the other requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<IngestState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    // Live streams never end by themselves: close them when shutting down.
    let hub = state.alerts.clone();
    let shutdown = async move {
        shutdown.await;
        hub.close();
    };
    warp::serve(routes(state))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}
