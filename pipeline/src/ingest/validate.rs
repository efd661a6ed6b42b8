//! Field-by-field validation of one mention record. Every rejection names its field.

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::Engagement;
use crate::graph::records::MentionBody;

use super::raw::{Field, RawMention, RawRecord};

/// Longest accepted text, in characters.
pub const MAX_TEXT_CHARS: usize = 20_000;
/// Longest accepted author, in characters.
pub const MAX_AUTHOR_CHARS: usize = 256;
/// Longest accepted URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// Earliest accepted event time (ClickHouse `DateTime` starts at the epoch).
const MIN_TIME: i64 = 0;
/// Latest accepted event time: 2100-01-01, well inside `DateTime`'s range.
const MAX_TIME: i64 = 4_102_444_800;
/// Event times further in the future than this are refused (clock skew allowance).
const MAX_FUTURE_SECS: i64 = 86_400;

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// Position of the record in the body (0-based).
    pub index: usize,
    /// The offending field (`(record)` when the record as a whole is wrong).
    pub field: String,
    /// What is wrong, in words.
    pub reason: String,
}

/// A record that passed field validation; its source is checked next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Client-supplied id, if any.
    pub id: Option<Uuid>,
    /// The mention as the dataflow carries it.
    pub body: MentionBody,
}

fn reject(index: usize, field: &str, reason: impl Into<String>) -> Rejection {
    Rejection {
        index,
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn string_field<'a>(
    value: &'a Option<Field<'_>>,
    index: usize,
    field: &str,
) -> Result<Option<&'a str>, Rejection> {
    match value {
        None | Some(Field::Null) => Ok(None),
        Some(Field::Str(s)) => Ok(Some(s)),
        Some(_) => Err(reject(index, field, "must be a string")),
    }
}

fn required<'a>(
    value: &'a Option<Field<'_>>,
    index: usize,
    field: &str,
) -> Result<&'a str, Rejection> {
    string_field(value, index, field)?.ok_or_else(|| reject(index, field, "is required"))
}

fn count_field(value: &Option<Field<'_>>, index: usize, field: &str) -> Result<u64, Rejection> {
    match value {
        None | Some(Field::Null) => Ok(0),
        Some(Field::Count(n)) => Ok(*n),
        Some(_) => Err(reject(index, field, "must be a non-negative integer")),
    }
}

/// Whether `url` is an absolute http(s) URL with a host, as the `url` crate (WHATWG URL
/// parsing) decides. The plain URLs scrapers send — lowercase scheme and domain name, no
/// port, user or IP address, printable ASCII after the host — are recognised by a scan of
/// their bytes, which accepts only what the parser accepts (unit test); anything else
/// goes to the parser, which took ~half of the validation's time on every record.
fn is_http_url(url: &str) -> bool {
    plain_http_url(url) || parsed_http_url(url)
}

/// The `url` parser's answer: an absolute http(s) URL with a host.
fn parsed_http_url(url: &str) -> bool {
    matches!(url::Url::parse(url),
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some())
}

/// `http://` or `https://`, a domain name of lowercase ASCII labels (letters, digits,
/// inner hyphens; no `xn--` label, the last one starting with a letter, so never an IP
/// address), then nothing or `/`, `?` or `#` followed by printable ASCII other than a
/// double quote, `<`, `>`, a backslash, `^`, a backtick, `{`, `|` and `}`. `false` says
/// "ask the parser", not "invalid".
fn plain_http_url(url: &str) -> bool {
    let b = url.as_bytes();
    let rest = if let Some(r) = b.strip_prefix(b"https://") {
        r
    } else if let Some(r) = b.strip_prefix(b"http://") {
        r
    } else {
        return false;
    };
    let host_end = rest
        .iter()
        .position(|c| matches!(c, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let (host, tail) = rest.split_at(host_end);
    let mut last_label_starts_with_letter = false;
    for label in host.split(|&c| c == b'.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && label[0] != b'-'
            && label[label.len() - 1] != b'-'
            && !label.starts_with(b"xn--");
        if !ok {
            return false;
        }
        last_label_starts_with_letter = label[0].is_ascii_lowercase();
    }
    last_label_starts_with_letter
        && host.len() <= 253
        && tail.iter().all(|&c| {
            (0x21..0x7f).contains(&c)
                && !matches!(
                    c,
                    b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
                )
        })
}

/// Validates one record for organisation `org` at wall-clock time `now` (seconds).
pub fn validate(
    index: usize,
    record: &RawRecord<'_>,
    org: Uuid,
    now: i64,
) -> Result<Candidate, Rejection> {
    let RawRecord::Object(obj) = record else {
        return Err(reject(index, "(record)", "must be a JSON object"));
    };
    let RawMention {
        id,
        org_id,
        source_id,
        text,
        author,
        url,
        created_at,
        likes,
        shares,
        replies,
        author_followers,
    } = obj;
    let id = match string_field(id, index, "id")? {
        None => None,
        Some(s) => Some(Uuid::parse_str(s).map_err(|_| reject(index, "id", "must be a UUID"))?),
    };
    if let Some(v) = org_id {
        let same = v.as_str().and_then(|s| Uuid::parse_str(s).ok()) == Some(org);
        if !same {
            return Err(reject(
                index,
                "org_id",
                "the organisation is decided by the API key; omit org_id",
            ));
        }
    }
    let source = required(source_id, index, "source_id")?;
    let source =
        Uuid::parse_str(source).map_err(|_| reject(index, "source_id", "must be a UUID"))?;

    let text = required(text, index, "text")?;
    if text.trim().is_empty() {
        return Err(reject(index, "text", "must not be empty"));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(reject(
            index,
            "text",
            format!("must be at most {MAX_TEXT_CHARS} characters"),
        ));
    }
    let author = required(author, index, "author")?;
    if author.trim().is_empty() {
        return Err(reject(index, "author", "must not be empty"));
    }
    if author.chars().count() > MAX_AUTHOR_CHARS {
        return Err(reject(
            index,
            "author",
            format!("must be at most {MAX_AUTHOR_CHARS} characters"),
        ));
    }
    let url = required(url, index, "url")?;
    if url.len() > MAX_URL_BYTES {
        return Err(reject(
            index,
            "url",
            format!("must be at most {MAX_URL_BYTES} bytes"),
        ));
    }
    if !is_http_url(url) {
        return Err(reject(index, "url", "must be an absolute http(s) URL"));
    }
    let created = required(created_at, index, "created_at")?;
    let created = OffsetDateTime::parse(created, &Rfc3339).map_err(|_| {
        reject(
            index,
            "created_at",
            "must be an RFC 3339 timestamp, e.g. 2026-11-24T18:30:00Z",
        )
    })?;
    let secs = created.unix_timestamp();
    if !(MIN_TIME..MAX_TIME).contains(&secs) {
        return Err(reject(
            index,
            "created_at",
            "must be between 1970-01-01 and 2100-01-01",
        ));
    }
    if secs > now + MAX_FUTURE_SECS {
        return Err(reject(
            index,
            "created_at",
            "is more than 24 hours in the future",
        ));
    }
    let created_at_us = secs * 1_000_000 + i64::from(created.microsecond());

    let engagement = Engagement {
        likes: count_field(likes, index, "likes")?,
        shares: count_field(shares, index, "shares")?,
        replies: count_field(replies, index, "replies")?,
        author_followers: count_field(author_followers, index, "author_followers")?,
    };
    Ok(Candidate {
        id,
        body: MentionBody {
            source,
            created_at_us,
            text: text.into(),
            author: author.into(),
            url: url.into(),
            engagement,
            keywords: Vec::new().into(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const NOW: i64 = 1_796_000_000;

    fn good() -> Value {
        json!({"source_id": "6b1f8c9e-6c55-4a8e-9d0e-2b7f7a0b8a11", "text": "love it", "author": "@a",
               "url": "https://x.com/a/1", "created_at": "2026-11-24T10:00:00.250Z", "likes": 3})
    }

    fn check(index: usize, v: &Value) -> Result<Candidate, Rejection> {
        let text = v.to_string();
        let record: RawRecord = serde_json::from_str(&text).unwrap();
        validate(index, &record, Uuid::nil(), NOW)
    }

    fn field_of(v: Value) -> String {
        check(7, &v).unwrap_err().field
    }

    #[test]
    fn a_good_record_passes_with_subsecond_time() {
        let c = check(0, &good()).unwrap();
        assert_eq!(c.body.created_at_us % 1_000_000, 250_000);
        assert_eq!(c.body.engagement.likes, 3);
        assert_eq!(c.id, None);
    }

    /// The byte scan accepts only what the parser accepts, and accepts the plain URLs.
    #[test]
    fn plain_urls_are_recognised_without_the_parser_and_only_valid_ones() {
        let by_parser = parsed_http_url;
        for u in [
            "https://x.com/a/1",
            "http://news.example.fr/2026/11/24/article-123?utm=x&y=%20#top",
            "https://www.reddit.com/r/acme/comments/abc123/title_here/",
            "https://a-b.c1.org",
            "https://x.com?q=1",
            "https://x.com#f",
        ] {
            assert!(plain_http_url(u), "{u}");
            assert!(by_parser(u), "{u}");
        }
        // Left to the parser (valid or not): the result is the parser's.
        let pieces = [
            "https://",
            "http://",
            "HTTPS://",
            "ftp://",
            "x.com",
            "X.com",
            "1.2.3.4",
            "999.1.1.1",
            "xn--bcher-kva.ch",
            "xn--zz.com",
            "-a.com",
            "a-.com",
            "a..com",
            ".a.com",
            "a.com.",
            "a.123",
            "[::1]",
            ":8080",
            "u@",
            "/p",
            "?q=1",
            "#f",
            " ",
            "\\",
            "%zz",
            "é",
            "|",
            "a",
            "-",
            ".",
            "/",
            "",
            "\t",
            "^",
            "{}",
        ];
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(9);
        for _ in 0..20_000 {
            let n = rng.random_range(1..=6);
            let u: String = (0..n)
                .map(|_| pieces[rng.random_range(0..pieces.len())])
                .collect();
            if plain_http_url(&u) {
                assert!(
                    by_parser(&u),
                    "the scan accepted {u:?}, the parser does not"
                );
            }
            assert_eq!(is_http_url(&u), by_parser(&u), "{u:?}");
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        let with = |k: &str, v: Value| {
            let mut g = good();
            g[k] = v;
            g
        };
        let without = |k: &str| {
            let mut g = good();
            g.as_object_mut().unwrap().remove(k);
            g
        };
        assert_eq!(field_of(with("id", json!("nope"))), "id");
        assert_eq!(field_of(without("source_id")), "source_id");
        assert_eq!(field_of(with("source_id", json!(12))), "source_id");
        assert_eq!(field_of(with("text", json!("  "))), "text");
        assert_eq!(
            field_of(with("text", json!("x".repeat(MAX_TEXT_CHARS + 1)))),
            "text"
        );
        assert_eq!(field_of(without("author")), "author");
        assert_eq!(field_of(with("url", json!("ftp://x/y"))), "url");
        assert_eq!(field_of(with("url", json!("not a url"))), "url");
        assert_eq!(
            field_of(with("created_at", json!("yesterday"))),
            "created_at"
        );
        assert_eq!(
            field_of(with("created_at", json!("2099-01-01T00:00:00Z"))),
            "created_at"
        );
        assert_eq!(field_of(with("likes", json!(-1))), "likes");
        assert_eq!(field_of(with("shares", json!("5"))), "shares");
        assert_eq!(
            field_of(with(
                "org_id",
                json!("6b1f8c9e-6c55-4a8e-9d0e-2b7f7a0b8a11")
            )),
            "org_id"
        );
        assert_eq!(field_of(json!([1, 2])), "(record)");
    }
}
