//! What a webhook request carries: the body of each [`Format`] and the headers of each
//! attempt.

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;

use super::catalog::Format;
use super::sign::sign;
use crate::alert::{AlertEvent, Level};

/// `User-Agent` of every request: `vigie-webhooks/<crate version>`.
pub const USER_AGENT: &str = concat!("vigie-webhooks/", env!("CARGO_PKG_VERSION"));
/// Unix seconds at which this attempt was signed (fresh per attempt).
pub const HEADER_TIMESTAMP: &str = "X-Vigie-Timestamp";
/// `v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`.
pub const HEADER_SIGNATURE: &str = "X-Vigie-Signature";
/// The alert id: the same on every attempt and every replay of one alert.
pub const HEADER_IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// The alert id again, under vigie's own name.
pub const HEADER_EVENT_ID: &str = "X-Vigie-Event-Id";
/// 1 for the first attempt, then 2, 3, …
pub const HEADER_ATTEMPT: &str = "X-Vigie-Delivery-Attempt";

/// Longest message put in a Slack section (Slack's limit is 3000 characters).
const SLACK_TEXT_MAX: usize = 2900;
/// Mention ids listed in a Slack message; the rest are counted.
const SLACK_MENTIONS_MAX: usize = 10;

/// The body sent to an endpoint of `format`.
pub fn body(format: Format, alert: &AlertEvent) -> Vec<u8> {
    match format {
        Format::Json => json_body(alert),
        Format::Slack => slack_body(alert),
    }
}

/// The [`AlertEvent`] JSON, exactly as serialised for every consumer.
pub fn json_body(alert: &AlertEvent) -> Vec<u8> {
    serde_json::to_vec(alert).expect("an AlertEvent always serialises")
}

/// The headers of attempt `attempt` (1-based) of `body`, signed with `secret` at
/// `timestamp_secs`. `Content-Type` and `User-Agent` included.
pub fn headers(
    secret: &str,
    alert: &AlertEvent,
    attempt: u16,
    timestamp_secs: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let id = alert.id.to_string();
    vec![
        ("Content-Type", "application/json".to_string()),
        ("User-Agent", USER_AGENT.to_string()),
        (HEADER_TIMESTAMP, timestamp_secs.to_string()),
        (HEADER_SIGNATURE, sign(secret, timestamp_secs, body)),
        (HEADER_IDEMPOTENCY_KEY, id.clone()),
        (HEADER_EVENT_ID, id),
        (HEADER_ATTEMPT, attempt.to_string()),
    ]
}

fn emoji(level: Level) -> &'static str {
    match level {
        Level::Low => ":information_source:",
        Level::Medium => ":warning:",
        Level::Critical => ":rotating_light:",
    }
}

fn color(level: Level) -> &'static str {
    match level {
        Level::Low => "#439fe0",
        Level::Medium => "#daa038",
        Level::Critical => "#d00000",
    }
}

/// Escapes the three characters Slack's mrkdwn treats as control characters.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn truncate(s: &str, max_chars: usize) -> String {
    match s.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

/// A number as a person reads it: integers without decimals, others with up to three.
fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        let s = format!("{x:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn field(title: &str, value: &str) -> Value {
    json!({ "type": "mrkdwn", "text": format!("*{title}*\n{value}") })
}

/// A Slack incoming-webhook message: `text` (level and message: the notification and
/// fallback), a `blocks` section with the same, and a colored attachment with the numbers,
/// the key, the window, the mention ids and the alert id.
pub fn slack_message(alert: &AlertEvent) -> Value {
    let level = alert.level.as_str().to_uppercase();
    let kind = alert.kind.as_str();
    let message = escape(&truncate(&alert.message, SLACK_TEXT_MAX));
    let text = format!("{} [{level}] {kind}: {message}", emoji(alert.level));
    let key_kind = serde_json::to_value(alert.key_kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut mentions: Vec<String> = alert
        .mention_ids
        .iter()
        .take(SLACK_MENTIONS_MAX)
        .map(|id| format!("`{id}`"))
        .collect();
    if alert.mention_ids.len() > SLACK_MENTIONS_MAX {
        mentions.push(format!(
            "and {} more",
            alert.mention_ids.len() - SLACK_MENTIONS_MAX
        ));
    }
    let mentions = if mentions.is_empty() {
        "none".to_string()
    } else {
        mentions.join(", ")
    };
    json!({
        "text": text,
        "blocks": [{
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": format!("{} *{level}* · *{kind}*\n{message}", emoji(alert.level)),
            },
        }],
        "attachments": [{
            "color": color(alert.level),
            "fallback": text,
            "blocks": [
                {
                    "type": "section",
                    "fields": [
                        field("Observed", &number(alert.observed)),
                        field("Baseline", &number(alert.baseline)),
                        field("Threshold", &number(alert.threshold)),
                        field("Key", &escape(&truncate(&format!("{key_kind}: {}", alert.key), 200))),
                        field("Window", &format!("{} → {}", rfc3339(alert.window_start), rfc3339(alert.window_end))),
                    ],
                },
                {
                    "type": "context",
                    "elements": [{
                        "type": "mrkdwn",
                        "text": format!("Mentions: {mentions} · alert `{}`", alert.id),
                    }],
                },
            ],
        }],
    })
}

/// [`slack_message`] as bytes.
pub fn slack_body(alert: &AlertEvent) -> Vec<u8> {
    serde_json::to_vec(&slack_message(alert)).expect("a JSON value always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{AlertType, KeyKind};
    use time::macros::datetime;
    use uuid::Uuid;

    fn alert(mentions: usize) -> AlertEvent {
        AlertEvent {
            id: Uuid::from_u128(7),
            org_id: Uuid::from_u128(1),
            kind: AlertType::VolumeSpike,
            level: Level::Critical,
            status: "NEW".into(),
            message: "42 mentions of <acme> & co in the last hour".into(),
            key_kind: KeyKind::Keyword,
            key: "acme".into(),
            source_id: None,
            keyword: Some("acme".into()),
            observed: 42.0,
            baseline: 3.5,
            threshold: 0.125,
            window_start: datetime!(2026-01-02 10:00 UTC),
            window_end: datetime!(2026-01-02 11:00 UTC),
            mention_ids: (0..mentions as u128).map(Uuid::from_u128).collect(),
            created_at: datetime!(2026-01-02 11:00:05 UTC),
            version: 1,
        }
    }

    #[test]
    fn json_body_is_the_alert_event() {
        let a = alert(2);
        let v: Value = serde_json::from_slice(&body(Format::Json, &a)).unwrap();
        assert_eq!(v["id"], a.id.to_string());
        assert_eq!(v["type"], "volume_spike");
        assert_eq!(v["level"], "critical");
        assert_eq!(v["created_at"], "2026-01-02T11:00:05Z");
        let back: AlertEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn slack_message_has_text_numbers_and_mentions_escaped() {
        let a = alert(12);
        let v: Value = serde_json::from_slice(&body(Format::Slack, &a)).unwrap();
        let text = v["text"].as_str().unwrap();
        assert!(text.contains("[CRITICAL]"), "{text}");
        assert!(text.contains("&lt;acme&gt; &amp; co"), "{text}");
        assert!(!text.contains("<acme>"), "{text}");
        let att = &v["attachments"][0];
        assert_eq!(att["color"], "#d00000");
        let fields = att["blocks"][0]["fields"].to_string();
        assert!(fields.contains("*Observed*\\n42"), "{fields}");
        assert!(fields.contains("*Baseline*\\n3.5"), "{fields}");
        assert!(fields.contains("*Threshold*\\n0.125"), "{fields}");
        assert!(fields.contains("keyword: acme"), "{fields}");
        let context = att["blocks"][1]["elements"][0]["text"].as_str().unwrap();
        assert!(
            context.contains(&Uuid::from_u128(0).to_string()),
            "{context}"
        );
        assert!(
            context.contains(&Uuid::from_u128(9).to_string()),
            "{context}"
        );
        assert!(
            !context.contains(&Uuid::from_u128(10).to_string()),
            "{context}"
        );
        assert!(context.contains("and 2 more"), "{context}");
        assert!(context.contains(&a.id.to_string()), "{context}");
        assert_eq!(v["blocks"][0]["type"], "section");
    }

    #[test]
    fn long_messages_are_truncated_on_a_char_boundary() {
        let mut a = alert(0);
        a.message = "é".repeat(5000);
        let v = slack_message(&a);
        let section = v["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(section.chars().count() < 3000, "{}", section.len());
        assert!(v["attachments"][0]["blocks"][1]["elements"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Mentions: none"));
    }

    #[test]
    fn headers_are_complete_and_signed() {
        let a = alert(0);
        let b = json_body(&a);
        let h = headers("whsec_test", &a, 3, 1_700_000_000, &b);
        let get = |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("Content-Type"), Some("application/json"));
        assert!(get("User-Agent").unwrap().starts_with("vigie-webhooks/"));
        assert_eq!(get(HEADER_TIMESTAMP), Some("1700000000"));
        assert_eq!(get(HEADER_ATTEMPT), Some("3"));
        assert_eq!(get(HEADER_IDEMPOTENCY_KEY), Some(a.id.to_string().as_str()));
        assert_eq!(get(HEADER_EVENT_ID), Some(a.id.to_string().as_str()));
        assert_eq!(
            get(HEADER_SIGNATURE),
            Some(sign("whsec_test", 1_700_000_000, &b).as_str())
        );
        assert_eq!(
            super::super::sign::verify(
                "whsec_test",
                "1700000000",
                get(HEADER_SIGNATURE).unwrap(),
                &b,
                1_700_000_000,
                300
            ),
            Ok(())
        );
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(42.0), "42");
        assert_eq!(number(0.4), "0.4");
        assert_eq!(number(0.12345), "0.123");
        assert_eq!(number(-1.5), "-1.5");
    }
}
