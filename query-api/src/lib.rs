//! The query API of vigie (axum). For now it serves health only; mentions, trends, alerts,
//! actions and reports per tenant arrive with the query-API issue. The shape is fixed
//! already: `AppState` by `State`, and `app(state) -> Router` so tests can call it over a
//! real socket or in process.
#![deny(missing_docs)]

use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

/// Shared state of the query API.
#[derive(Debug, Clone, Default)]
pub struct AppState {}

#[derive(Serialize)]
struct Health {
    status: &'static str,
}

async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn healthz_answers_over_a_real_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app(AppState::default()))
                .await
                .unwrap()
        });
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = String::new();
        stream.read_to_string(&mut buf).await.unwrap();
        assert!(buf.starts_with("HTTP/1.1 200"), "{buf}");
        assert!(buf.ends_with("{\"status\":\"ok\"}"), "{buf}");
    }
}
