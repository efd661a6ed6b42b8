//! Live alert streams on the ingest listener: `GET /v1/alerts/stream` (Server-Sent Events)
//! and `GET /v1/alerts/ws` (WebSocket), fed by the [`AlertHub`] the dataflow publishes to.
//!
//! # Authentication
//!
//! As ingest: `Authorization: Bearer <org key>`; the key decides the organisation, and a
//! client only ever receives its own organisation's alerts (filtered on the server).
//! Browsers' `EventSource` and `WebSocket` cannot set headers, so `?access_token=<org key>`
//! is accepted too (the header wins when both are given). Trade-off: a key in a URL can end
//! up in proxy and access logs, browser history and `Referer`s; prefer the header wherever
//! the client can set one, serve the streams over TLS only, and rotate a key that leaked.
//! A missing, malformed or unknown key is a 401 with ingest's JSON error body.
//!
//! # Query parameters (both routes)
//!
//! - `min_level=low|medium|critical`: only alerts at this level or above;
//! - `type=critical_mention|volume_spike|sentiment_dip`: only these types, repeatable or
//!   comma-separated (`type=volume_spike,sentiment_dip`);
//! - `last_event_id=<event id>`: resume after that event (the SSE `Last-Event-ID` header,
//!   which `EventSource` sends when it reconnects, wins over it);
//! - `access_token=<org key>`: see above.
//!
//! A bad value is a 400 `{"error":"invalid_parameter","field":…,"message":…}`.
//!
//! # Events
//!
//! An event's id is `"{version}-{alert id}"` ([`EventId`]); events are ordered by
//! (version, alert id). SSE frames are `id: <event id>`, `event: alert`,
//! `data: <AlertEvent JSON>`, with keep-alive comments in between. WebSocket messages are
//! JSON text: `{"type":"alert","id":"<event id>","alert":{…}}`; the server pings at the
//! keep-alive interval, answers pings, and answers a close with a close.
//!
//! # Resume
//!
//! With a resume point, the stream first sends the organisation's events after it: from
//! the in-memory ring when the ring still covers it, otherwise from ClickHouse
//! (`alerts FINAL`, where an alert whose status changed since appears at its newer
//! version), then live events, with neither gap nor duplicate between the two. At most
//! [`HubConfig::max_backfill`] events are sent that way; if there were more, a `lagged`
//! notice follows them. A resume point older than the ring with no ClickHouse configured
//! is a 410.
//!
//! # Slow clients
//!
//! Publishing never waits for a client. A client that falls more than
//! [`HubConfig::broadcast_capacity`] events behind skips them and is told so: SSE
//! `event: lagged` with `data: {"missed":n,"last_event_id":…}`, WebSocket
//! `{"type":"lagged","missed":n,"last_event_id":…}`, then it continues live. To fill the
//! gap, reconnect resuming from that `last_event_id` (the last event received before it).
//!
//! # Metrics
//!
//! [`AlertHub::render_prometheus`], appended to `/metrics`: `vigie_stream_clients{kind}`,
//! `vigie_stream_connections_total{kind}`, `vigie_stream_events_sent_total{kind}`,
//! `vigie_stream_lagged_total{kind}` (lag notices), `vigie_stream_lagged_events_total{kind}`,
//! `vigie_stream_dropped_clients_total{kind}`, `vigie_stream_events_published_total` and
//! `vigie_stream_backfill_events_total{source="ring"|"clickhouse"}`; `kind` is `sse` or `ws`.

mod hub;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use uuid::Uuid;
use vigie_sinks::alert::{AlertType, Level};
use warp::filters::ws::{Message, WebSocket, Ws};
use warp::http::{HeaderMap, HeaderValue, StatusCode};
use warp::reply::{Reply, Response};
use warp::Filter;

pub use self::hub::{
    AlertFilter, AlertHub, ClientKind, EventId, HubConfig, ResumeError, StreamItem, Subscription,
};
use super::{authenticate, header, org_for_key, IngestError, IngestState};

/// Largest message a WebSocket client may send (the server reads only pings and closes).
const WS_MAX_MESSAGE: usize = 64 << 10;

/// A stream request after authentication and validation.
#[derive(Debug)]
struct StreamRequest {
    org: Uuid,
    filter: AlertFilter,
    after: Option<EventId>,
}

fn bad_param(field: &str, message: &str) -> Response {
    let body = json!({"error": "invalid_parameter", "field": field, "message": message});
    warp::reply::with_status(warp::reply::json(&body), StatusCode::BAD_REQUEST).into_response()
}

/// Authenticates and validates a stream request; the error is the reply to send.
async fn request(
    state: &IngestState,
    headers: &HeaderMap,
    query: &str,
) -> Result<StreamRequest, Response> {
    let mut token = None;
    let mut min_level = None;
    let mut types = Vec::new();
    let mut last_event_id = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "access_token" => token = Some(v.into_owned()),
            "min_level" => min_level = Some(v.into_owned()),
            "type" => types.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned),
            ),
            "last_event_id" => last_event_id = Some(v.into_owned()),
            _ => {}
        }
    }
    // Authenticate before judging parameters: strangers learn nothing.
    let org = match (header(headers, "authorization"), token) {
        (None, Some(token)) => org_for_key(state, token.trim()).await,
        _ => authenticate(state, headers).await,
    }
    .map_err(IngestError::into_response)?;
    let min_level = min_level
        .map(|l| l.parse::<Level>())
        .transpose()
        .map_err(|e| bad_param("min_level", &e))?;
    let mut types = types
        .iter()
        .map(|t| t.parse::<AlertType>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_param("type", &e))?;
    types.sort();
    types.dedup();
    // An empty Last-Event-ID means "from now", as in the SSE specification.
    let after = match header(headers, "last-event-id").map(str::trim) {
        Some(h) if !h.is_empty() => Some(
            h.parse::<EventId>()
                .map_err(|e| bad_param("Last-Event-ID", &e))?,
        ),
        _ => last_event_id
            .filter(|q| !q.trim().is_empty())
            .map(|q| q.parse::<EventId>())
            .transpose()
            .map_err(|e| bad_param("last_event_id", &e))?,
    };
    Ok(StreamRequest {
        org,
        filter: AlertFilter { min_level, types },
        after,
    })
}

/// Opens the subscription of a validated request; the error is the reply to send.
async fn subscribe(
    state: &IngestState,
    kind: ClientKind,
    req: StreamRequest,
) -> Result<Subscription, Response> {
    state
        .alerts
        .subscribe(kind, req.org, req.filter, req.after)
        .await
        .map_err(|e| match e {
            ResumeError::NotCovered => {
                let body = json!({"error": "resume_unavailable", "field": "last_event_id",
                    "message": format!("{e}; reconnect without a resume point")});
                warp::reply::with_status(warp::reply::json(&body), StatusCode::GONE).into_response()
            }
            ResumeError::ClickHouse(err) => {
                tracing::warn!(error = %err, "stream resume failed");
                IngestError::Unavailable("cannot resume: ClickHouse is unreachable").into_response()
            }
        })
}

fn lagged_json(missed: u64, last_event_id: Option<EventId>) -> Value {
    json!({"missed": missed, "last_event_id": last_event_id.map(|id| id.to_string())})
}

fn sse_event(item: StreamItem) -> warp::sse::Event {
    match item {
        StreamItem::Alert(id, ev) => warp::sse::Event::default()
            .id(id.to_string())
            .event("alert")
            .data(serde_json::to_string(&*ev).unwrap_or_default()),
        StreamItem::Lagged {
            missed,
            last_event_id,
        } => warp::sse::Event::default()
            .event("lagged")
            .data(lagged_json(missed, last_event_id).to_string()),
    }
}

/// The SSE response: a comment right away (so the client sees the stream open), then the
/// subscription's items, with keep-alive comments while idle.
fn sse_reply(sub: Subscription, keep_alive: Duration) -> Response {
    let opened = futures_util::stream::once(async {
        Ok::<_, Infallible>(warp::sse::Event::default().comment("connected"))
    });
    let items = futures_util::stream::unfold(sub, |mut sub| async move {
        let item = sub.next().await?;
        Some((Ok::<_, Infallible>(sse_event(item)), sub))
    });
    let stream = warp::sse::keep_alive()
        .interval(keep_alive)
        .stream(opened.chain(items));
    let mut resp = warp::sse::reply(stream).into_response();
    // Reverse proxies (nginx) must not buffer the stream.
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

fn ws_message(item: StreamItem) -> Message {
    let v = match item {
        StreamItem::Alert(id, ev) => {
            json!({"type": "alert", "id": id.to_string(), "alert": &*ev})
        }
        StreamItem::Lagged {
            missed,
            last_event_id,
        } => {
            let mut v = lagged_json(missed, last_event_id);
            v["type"] = json!("lagged");
            v
        }
    };
    Message::text(v.to_string())
}

/// Drives one WebSocket: sends the subscription's items and keep-alive pings, reads (so
/// pings are answered) until the client closes.
async fn run_ws(mut socket: WebSocket, mut sub: Subscription, keep_alive: Duration) {
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
    loop {
        tokio::select! {
            item = sub.next() => {
                let Some(item) = item else {
                    // The server is shutting down.
                    let _ = socket.send(Message::close_with(1001u16, "server shutting down")).await;
                    let _ = socket.close().await;
                    return;
                };
                if socket.send(ws_message(item)).await.is_err() {
                    sub.mark_failed();
                    return;
                }
            }
            msg = socket.next() => match msg {
                // Answer the close (tungstenite queued the reply; closing flushes it).
                Some(Ok(m)) if m.is_close() => {
                    let _ = socket.close().await;
                    return;
                }
                // Pings are answered by tungstenite; other messages are ignored.
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    sub.mark_failed();
                    return;
                }
            },
            _ = ping.tick() => {
                if socket.send(Message::ping(Vec::new())).await.is_err() {
                    sub.mark_failed();
                    return;
                }
            }
        }
    }
}

/// The stream routes: `GET /v1/alerts/stream` and `GET /v1/alerts/ws`.
pub fn routes(
    state: Arc<IngestState>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let with_state = warp::any().map(move || state.clone());
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let sse = warp::path!("v1" / "alerts" / "stream")
        .and(warp::get())
        .and(with_state.clone())
        .and(warp::header::headers_cloned())
        .and(query)
        .then(
            |state: Arc<IngestState>, headers: HeaderMap, query: String| async move {
                let opened = match request(&state, &headers, &query).await {
                    Ok(req) => subscribe(&state, ClientKind::Sse, req).await,
                    Err(resp) => Err(resp),
                };
                match opened {
                    Ok(sub) => sse_reply(sub, state.alerts.config().keep_alive),
                    Err(resp) => resp,
                }
            },
        );
    let upgrade = warp::ws().map(Some).or(warp::any().map(|| None)).unify();
    let ws = warp::path!("v1" / "alerts" / "ws")
        .and(warp::get())
        .and(with_state)
        .and(warp::header::headers_cloned())
        .and(query)
        .and(upgrade)
        .then(
            |state: Arc<IngestState>, headers: HeaderMap, query: String, ws: Option<Ws>| async move {
                let req = match request(&state, &headers, &query).await {
                    Ok(req) => req,
                    Err(resp) => return resp,
                };
                let Some(ws) = ws else {
                    let body = json!({"error": "upgrade_required",
                        "message": "this route speaks WebSocket only"});
                    let mut resp = warp::reply::with_status(
                        warp::reply::json(&body),
                        StatusCode::UPGRADE_REQUIRED,
                    )
                    .into_response();
                    resp.headers_mut()
                        .insert("upgrade", HeaderValue::from_static("websocket"));
                    return resp;
                };
                let sub = match subscribe(&state, ClientKind::Ws, req).await {
                    Ok(sub) => sub,
                    Err(resp) => return resp,
                };
                let keep_alive = state.alerts.config().keep_alive;
                ws.max_message_size(WS_MAX_MESSAGE)
                    .max_frame_size(WS_MAX_MESSAGE)
                    .on_upgrade(move |socket| run_ws(socket, sub, keep_alive))
                    .into_response()
            },
        );
    sse.or(ws).unify()
}
