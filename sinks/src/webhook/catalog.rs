//! Webhook endpoints of organisations, stored in `webhooks` (versioned
//! `ReplacingMergeTree`, read with `FINAL`): an update is a new row with a higher version.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::sign::to_hex;
use super::WebhookError;
use crate::alert::{AlertEvent, AlertType, Level};
use crate::clickhouse::catalog::now_version;
use crate::clickhouse::SinkError;

/// Prefix of generated signing secrets, so they are recognisable in logs and secret scanners.
pub const SECRET_PREFIX: &str = "whsec_";

/// Longest URL accepted (bytes).
pub const MAX_URL_LEN: usize = 2048;

/// Shortest secret accepted when the caller brings one (bytes).
pub const MIN_SECRET_LEN: usize = 16;

/// Body format of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The [`AlertEvent`] JSON.
    Json,
    /// A Slack incoming-webhook message.
    Slack,
}

impl Format {
    /// Lowercase name, as in ClickHouse.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Slack => "slack",
        }
    }

    /// The `Enum8` value stored in ClickHouse.
    pub fn code(self) -> i8 {
        match self {
            Self::Json => 1,
            Self::Slack => 2,
        }
    }

    /// The format of an `Enum8` value.
    pub fn from_code(code: i8) -> Option<Self> {
        [Self::Json, Self::Slack]
            .into_iter()
            .find(|f| f.code() == code)
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Json, Self::Slack]
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown webhook format {s:?}; expected json or slack"))
    }
}

/// A row of `webhooks`. `Debug` redacts the secret.
#[derive(Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct WebhookRow {
    /// Owning organisation: only its alerts are sent here.
    #[serde(with = "clickhouse::serde::uuid")]
    pub org_id: Uuid,
    /// Endpoint id.
    #[serde(with = "clickhouse::serde::uuid")]
    pub id: Uuid,
    /// Where alerts are POSTed (http or https).
    pub url: String,
    /// HMAC-SHA256 key of `X-Vigie-Signature`.
    pub secret: String,
    /// 0 once disabled: nothing is sent.
    pub enabled: u8,
    /// `Enum8` of the lowest [`Level`] sent.
    pub min_level: i8,
    /// [`AlertType`] names sent (`AlertType::as_str`); empty means every type.
    pub types: Vec<String>,
    /// `Enum8` of the [`Format`].
    pub format: i8,
    /// Creation time, seconds since the epoch.
    pub created_at: u32,
    /// Row version (microseconds since the epoch at write time).
    pub version: u64,
}

impl std::fmt::Debug for WebhookRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRow")
            .field("org_id", &self.org_id)
            .field("id", &self.id)
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("enabled", &self.enabled)
            .field("min_level", &self.min_level)
            .field("types", &self.types)
            .field("format", &self.format)
            .field("created_at", &self.created_at)
            .field("version", &self.version)
            .finish()
    }
}

impl WebhookRow {
    /// True unless disabled.
    pub fn is_enabled(&self) -> bool {
        self.enabled != 0
    }

    /// The body format (`None` for a code this build does not know).
    pub fn body_format(&self) -> Option<Format> {
        Format::from_code(self.format)
    }

    /// Whether `alert` goes to this endpoint: enabled, same organisation, level at least
    /// `min_level`, and type listed (or no type listed).
    pub fn accepts(&self, alert: &AlertEvent) -> bool {
        self.is_enabled()
            && self.org_id == alert.org_id
            && alert.level.code() >= self.min_level
            && (self.types.is_empty() || self.types.iter().any(|t| t == alert.kind.as_str()))
    }
}

/// A fresh random signing secret: `whsec_` + 32 random bytes in hex.
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", to_hex(&bytes))
}

/// Checks an endpoint URL: parseable, `http` or `https`, with a host, no longer than
/// [`MAX_URL_LEN`]. Returns it normalised.
pub fn validate_url(raw: &str) -> Result<String, WebhookError> {
    let bad = |reason: String| Err(WebhookError::InvalidUrl(reason));
    let raw = raw.trim();
    if raw.len() > MAX_URL_LEN {
        return bad(format!("longer than {MAX_URL_LEN} bytes"));
    }
    let url = match url::Url::parse(raw) {
        Ok(u) => u,
        Err(e) => return bad(format!("cannot parse {raw:?}: {e}")),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return bad(format!(
            "scheme must be http or https, not {:?}",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return bad("no host".into());
    }
    Ok(url.to_string())
}

fn check_secret(secret: &str) -> Result<(), WebhookError> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(WebhookError::InvalidSecret(format!(
            "shorter than {MIN_SECRET_LEN} bytes; pass none to have one generated"
        )));
    }
    if secret.chars().any(char::is_whitespace) {
        return Err(WebhookError::InvalidSecret("contains whitespace".into()));
    }
    Ok(())
}

fn now_secs() -> u32 {
    (now_version() / 1_000_000) as u32
}

/// Registers an endpoint of `org_id`, enabled. `secret: None` generates one
/// ([`generate_secret`]); `types` empty means every alert type. The returned row holds the
/// secret, to show the caller once.
pub async fn add_webhook(
    client: &clickhouse::Client,
    org_id: Uuid,
    url: &str,
    secret: Option<String>,
    min_level: Level,
    types: Vec<AlertType>,
    format: Format,
) -> Result<WebhookRow, WebhookError> {
    let url = validate_url(url)?;
    let secret = match secret {
        Some(s) => {
            check_secret(&s)?;
            s
        }
        None => generate_secret(),
    };
    let mut names: Vec<String> = types.iter().map(|t| t.as_str().to_string()).collect();
    names.sort();
    names.dedup();
    let row = WebhookRow {
        org_id,
        id: Uuid::new_v4(),
        url,
        secret,
        enabled: 1,
        min_level: min_level.code(),
        types: names,
        format: format.code(),
        created_at: now_secs(),
        version: now_version(),
    };
    insert(client, &row).await?;
    Ok(row)
}

async fn insert(client: &clickhouse::Client, row: &WebhookRow) -> Result<(), SinkError> {
    let mut insert = client.insert::<WebhookRow>("webhooks").await?;
    insert.write(row).await?;
    insert.end().await?;
    Ok(())
}

/// Endpoints of one organisation (enabled or not), oldest first.
pub async fn list_webhooks(
    client: &clickhouse::Client,
    org_id: Uuid,
) -> Result<Vec<WebhookRow>, WebhookError> {
    Ok(client
        .query("SELECT ?fields FROM webhooks FINAL WHERE org_id = ? ORDER BY created_at, id")
        .bind(org_id)
        .fetch_all::<WebhookRow>()
        .await
        .map_err(SinkError::from)?)
}

/// Every endpoint of every organisation, enabled or not (the dispatcher's refresh).
pub async fn all_webhooks(client: &clickhouse::Client) -> Result<Vec<WebhookRow>, WebhookError> {
    Ok(client
        .query("SELECT ?fields FROM webhooks FINAL")
        .fetch_all::<WebhookRow>()
        .await
        .map_err(SinkError::from)?)
}

/// One endpoint of one organisation.
pub async fn get_webhook(
    client: &clickhouse::Client,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<WebhookRow>, WebhookError> {
    Ok(client
        .query("SELECT ?fields FROM webhooks FINAL WHERE org_id = ? AND id = ?")
        .bind(org_id)
        .bind(id)
        .fetch_optional::<WebhookRow>()
        .await
        .map_err(SinkError::from)?)
}

/// Enables or disables an endpoint; `None` when the organisation has no such endpoint
/// (another organisation's id included).
pub async fn set_webhook_enabled(
    client: &clickhouse::Client,
    org_id: Uuid,
    id: Uuid,
    enabled: bool,
) -> Result<Option<WebhookRow>, WebhookError> {
    let Some(mut row) = get_webhook(client, org_id, id).await? else {
        return Ok(None);
    };
    row.enabled = u8::from(enabled);
    row.version = now_version().max(row.version + 1);
    insert(client, &row).await?;
    Ok(Some(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_or_https_with_a_host() {
        assert_eq!(
            validate_url(" https://hooks.example.com/x?y=1 ").unwrap(),
            "https://hooks.example.com/x?y=1"
        );
        assert!(validate_url("http://127.0.0.1:8080").is_ok());
        for bad in [
            "",
            "hooks.example.com/x",
            "ftp://example.com/",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "http://",
            "http://:80/",
        ] {
            let e = validate_url(bad).expect_err(bad);
            assert!(e.to_string().starts_with("invalid webhook URL"), "{e}");
        }
        assert!(validate_url(&format!("https://e.com/{}", "a".repeat(MAX_URL_LEN))).is_err());
    }

    #[test]
    fn generated_secrets_are_random_and_prefixed() {
        let (a, b) = (generate_secret(), generate_secret());
        assert_ne!(a, b);
        assert!(a.starts_with(SECRET_PREFIX));
        assert_eq!(a.len(), SECRET_PREFIX.len() + 64);
        assert!(a[SECRET_PREFIX.len()..]
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert!(check_secret(&a).is_ok());
        assert!(check_secret("short").is_err());
        assert!(check_secret("a secret with spaces").is_err());
    }

    #[test]
    fn debug_redacts_the_secret() {
        let row = WebhookRow {
            org_id: Uuid::nil(),
            id: Uuid::nil(),
            url: "https://e.com".into(),
            secret: "whsec_topsecret".into(),
            enabled: 1,
            min_level: 1,
            types: vec![],
            format: 1,
            created_at: 0,
            version: 0,
        };
        let shown = format!("{row:?}");
        assert!(!shown.contains("topsecret"), "{shown}");
    }

    #[test]
    fn formats_round_trip() {
        for f in [Format::Json, Format::Slack] {
            assert_eq!(Format::from_code(f.code()), Some(f));
            assert_eq!(f.as_str().parse::<Format>(), Ok(f));
        }
        assert!("xml".parse::<Format>().is_err());
    }
}
