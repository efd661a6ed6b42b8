//! Posting NDJSON batches to a running vigie (used by `gen --post` and `replay`).

use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

/// What ingest answered for one batch.
#[derive(Debug, Default, Deserialize)]
pub struct Answer {
    /// Records accepted.
    #[serde(default)]
    pub accepted: u64,
    /// Records rejected.
    #[serde(default)]
    pub rejected: u64,
}

/// Posts one NDJSON body to `{base}/v1/mentions`, retrying 503s and connection errors.
pub async fn post_batch(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    body: String,
) -> anyhow::Result<Answer> {
    let url = format!("{}/v1/mentions", base.trim_end_matches('/'));
    let mut wait = Duration::from_millis(100);
    for _ in 0..20 {
        let sent = client
            .post(&url)
            .bearer_auth(key)
            .header("content-type", "application/x-ndjson")
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().as_u16() == 202 || resp.status().as_u16() == 422 => {
                return resp
                    .json::<Answer>()
                    .await
                    .context("reading ingest's answer");
            }
            Ok(resp) if resp.status().as_u16() == 503 => {}
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                bail!("ingest answered {status}: {text}");
            }
            Err(e) if e.is_connect() || e.is_timeout() => {}
            Err(e) => return Err(e).context("posting mentions"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
    bail!("ingest at {url} kept failing; giving up")
}
