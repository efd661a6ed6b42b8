//! Request bodies: content type, gzip, size cap, and splitting into records.

use std::io::Read;

use bytes::Bytes;

use super::raw::{OneOrMany, RawRecord};

/// Why a body could not be turned into records (each maps to one HTTP status).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    /// 415: not JSON or NDJSON.
    #[error("unsupported content type {0:?}: send application/json (one object or an array) or application/x-ndjson")]
    UnsupportedMediaType(String),
    /// 415: an encoding other than gzip.
    #[error("unsupported content encoding {0:?}: send gzip or no encoding")]
    UnsupportedEncoding(String),
    /// 413: over the limit (compressed or decompressed).
    #[error("body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// 400: gzip stream is broken.
    #[error("body is not valid gzip: {0}")]
    BadGzip(String),
    /// 400: not JSON at all.
    #[error("body is not JSON: {0}")]
    NotJson(String),
}

/// How the records are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One JSON object or an array of objects.
    Json,
    /// One JSON object per line.
    Ndjson,
}

/// Decides framing from the `Content-Type` header.
pub fn framing(content_type: Option<&str>) -> Result<Framing, BodyError> {
    let raw = content_type.unwrap_or("");
    let mime = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Ok(Framing::Json),
        "application/x-ndjson"
        | "application/ndjson"
        | "application/jsonl"
        | "application/x-jsonlines" => Ok(Framing::Ndjson),
        _ => Err(BodyError::UnsupportedMediaType(raw.to_string())),
    }
}

/// Checks `Content-Encoding`; true when the body is gzip.
pub fn is_gzip(content_encoding: Option<&str>) -> Result<bool, BodyError> {
    match content_encoding.map(|s| s.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(e) if e.is_empty() || e == "identity" => Ok(false),
        Some(e) if e == "gzip" || e == "x-gzip" => Ok(true),
        Some(e) => Err(BodyError::UnsupportedEncoding(e)),
    }
}

/// Inflates a gzip body, refusing to produce more than `limit` bytes (zip bombs).
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let decoder = flate2::read::MultiGzDecoder::new(body);
    let n = decoder
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| BodyError::BadGzip(e.to_string()))?;
    if n > limit {
        return Err(BodyError::TooLarge { limit });
    }
    Ok(out)
}

/// One record of a body: parsed, or the reason its line was not JSON.
pub type Record<'a> = Result<RawRecord<'a>, String>;

/// Splits a body into records. A body where nothing parses as JSON is [`BodyError::NotJson`].
pub fn records(body: &Bytes, framing: Framing) -> Result<Vec<Record<'_>>, BodyError> {
    match framing {
        Framing::Json => {
            let OneOrMany(items) =
                serde_json::from_slice(body).map_err(|e| BodyError::NotJson(e.to_string()))?;
            Ok(items.into_iter().map(Ok).collect())
        }
        Framing::Ndjson => {
            let mut out = Vec::new();
            let mut first_error = None;
            for line in body.split(|b| *b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if line.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                match serde_json::from_slice::<RawRecord>(line) {
                    Ok(v) => out.push(Ok(v)),
                    Err(e) => {
                        let msg = format!("line is not JSON: {e}");
                        first_error.get_or_insert_with(|| msg.clone());
                        out.push(Err(msg));
                    }
                }
            }
            if !out.is_empty() && out.iter().all(|r| r.is_err()) {
                return Err(BodyError::NotJson(first_error.unwrap_or_default()));
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn content_types_decide_framing() {
        assert_eq!(
            framing(Some("application/json; charset=utf-8")),
            Ok(Framing::Json)
        );
        assert_eq!(framing(Some("Application/X-NDJSON")), Ok(Framing::Ndjson));
        assert!(matches!(
            framing(Some("text/plain")),
            Err(BodyError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            framing(None),
            Err(BodyError::UnsupportedMediaType(_))
        ));
    }

    #[test]
    fn ndjson_keeps_good_lines_beside_bad_ones() {
        let body = Bytes::from_static(b"{\"a\":1}\n\nnot json\r\n{\"b\":2}\n");
        let r = records(&body, Framing::Ndjson).unwrap();
        assert_eq!(r.len(), 3);
        assert!(r[0].is_ok() && r[1].is_err() && r[2].is_ok());
    }

    #[test]
    fn a_body_with_no_json_at_all_is_rejected_whole() {
        assert!(matches!(
            records(&Bytes::from_static(b"hello\nworld"), Framing::Ndjson),
            Err(BodyError::NotJson(_))
        ));
        assert!(matches!(
            records(&Bytes::from_static(b"{oops"), Framing::Json),
            Err(BodyError::NotJson(_))
        ));
    }

    #[test]
    fn json_array_and_object_are_records() {
        assert_eq!(
            records(&Bytes::from_static(b"[{},{}]"), Framing::Json)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            records(&Bytes::from_static(b"{}"), Framing::Json)
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn gzip_round_trips_and_bombs_are_capped() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&vec![b'a'; 10_000]).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(gunzip(&gz, 10_000).unwrap().len(), 10_000);
        assert_eq!(
            gunzip(&gz, 9_999),
            Err(BodyError::TooLarge { limit: 9_999 })
        );
        assert!(matches!(
            gunzip(b"not gzip", 100),
            Err(BodyError::BadGzip(_))
        ));
    }
}
