//! Webhook signatures: `v1=` + lowercase hex HMAC-SHA256 of `"<timestamp>." + raw body`.
//!
//! The key is the endpoint's secret string exactly as stored (including its `whsec_`
//! prefix). The timestamp is the `X-Vigie-Timestamp` header (unix seconds) and is part of
//! the signed content, so a captured request cannot be replayed later with a fresh
//! timestamp; receivers reject timestamps outside a tolerance window.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Scheme prefix of a signature in `X-Vigie-Signature`.
pub const SCHEME: &str = "v1=";

/// Tolerance receivers should use unless they have a reason not to: five minutes.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// Why a signature was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The timestamp header is not an integer number of seconds.
    #[error("timestamp header is not unix seconds")]
    BadTimestamp,
    /// The timestamp is further from now than the tolerance (replayed or clock skew).
    #[error("timestamp is {age_secs} s away from now, more than the {tolerance_secs} s tolerance")]
    Stale {
        /// |now − timestamp| in seconds.
        age_secs: u64,
        /// The tolerance given.
        tolerance_secs: u64,
    },
    /// The signature header holds no `v1=` value.
    #[error("signature header holds no v1= signature")]
    NoSignature,
    /// No `v1=` value matches the body, timestamp and secret.
    #[error("no signature matches")]
    Mismatch,
}

fn mac(secret: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Vigie-Signature` value of `body` sent at `timestamp_secs`:
/// `v1=<lowercase hex HMAC-SHA256(secret, "<timestamp_secs>." + body)>`.
pub fn sign(secret: &str, timestamp_secs: i64, body: &[u8]) -> String {
    let tag = mac(secret, &timestamp_secs.to_string(), body)
        .finalize()
        .into_bytes();
    format!("{SCHEME}{}", to_hex(&tag))
}

/// Checks a received request: `timestamp_header` (`X-Vigie-Timestamp`, used verbatim in
/// the signed content), `signature_header` (`X-Vigie-Signature`, one or more
/// comma-separated `v1=` values — any one matching is enough, which lets a secret be
/// rotated), the raw `body` bytes, the receiver's clock `now_secs` and the accepted clock
/// distance `tolerance_secs` (see [`DEFAULT_TOLERANCE_SECS`]). Comparison is constant-time.
pub fn verify(
    secret: &str,
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: u64,
) -> Result<(), VerifyError> {
    let timestamp = timestamp_header.trim();
    if timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::BadTimestamp);
    }
    let ts: i64 = timestamp.parse().map_err(|_| VerifyError::BadTimestamp)?;
    let age_secs = now_secs.abs_diff(ts);
    if age_secs > tolerance_secs {
        return Err(VerifyError::Stale {
            age_secs,
            tolerance_secs,
        });
    }
    let expected = mac(secret, timestamp, body);
    let mut any = false;
    for part in signature_header.split(',') {
        let Some(hex) = part.trim().strip_prefix(SCHEME) else {
            continue;
        };
        any = true;
        let Some(tag) = from_hex(hex) else {
            continue;
        };
        // `verify_slice` compares in constant time.
        if expected.clone().verify_slice(&tag).is_ok() {
            return Ok(());
        }
    }
    Err(if any {
        VerifyError::Mismatch
    } else {
        VerifyError::NoSignature
    })
}

/// Lowercase hex of `bytes`.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"hello":"world"}"#;
    /// python3 -c 'import hmac,hashlib; print(hmac.new(b"whsec_test",
    ///   b"1700000000." + b"{\"hello\":\"world\"}", hashlib.sha256).hexdigest())'
    const KNOWN: &str = "v1=f592bbf3951cfc94e560eecfb5d9dd4da6b0fff2e626235f8ab4b54860925d0b";
    /// The same with the secret `whsec_other`.
    const OTHER: &str = "v1=1656f2f015282baacb5e44d4438e73d5d66fe3fee77b64aaf473c49d19af1e81";
    const TS: i64 = 1_700_000_000;

    #[test]
    fn matches_an_independently_computed_vector() {
        assert_eq!(sign("whsec_test", TS, BODY), KNOWN);
        assert_eq!(sign("whsec_other", TS, BODY), OTHER);
        assert_eq!(
            verify("whsec_test", "1700000000", KNOWN, BODY, TS, 300),
            Ok(())
        );
    }

    #[test]
    fn rejects_a_tampered_body_a_wrong_secret_or_a_moved_timestamp() {
        let tampered = br#"{"hello":"World"}"#;
        assert_eq!(
            verify("whsec_test", "1700000000", KNOWN, tampered, TS, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify("whsec_nope", "1700000000", KNOWN, BODY, TS, 300),
            Err(VerifyError::Mismatch)
        );
        // A signature is bound to its timestamp: replaying it with a fresh one fails.
        assert_eq!(
            verify("whsec_test", "1700000100", KNOWN, BODY, TS + 100, 300),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn rejects_stale_and_future_timestamps() {
        assert_eq!(
            verify("whsec_test", "1700000000", KNOWN, BODY, TS + 301, 300),
            Err(VerifyError::Stale {
                age_secs: 301,
                tolerance_secs: 300
            })
        );
        assert!(matches!(
            verify("whsec_test", "1700000000", KNOWN, BODY, TS - 301, 300),
            Err(VerifyError::Stale { age_secs: 301, .. })
        ));
        assert_eq!(
            verify("whsec_test", "1700000000", KNOWN, BODY, TS + 300, 300),
            Ok(())
        );
    }

    #[test]
    fn accepts_any_of_several_signatures_for_rotation() {
        let both = format!("{OTHER}, {KNOWN}");
        assert_eq!(
            verify("whsec_test", "1700000000", &both, BODY, TS, 300),
            Ok(())
        );
        assert_eq!(
            verify("whsec_other", "1700000000", &both, BODY, TS, 300),
            Ok(())
        );
        let with_junk = format!("v0=abc,v1=zz,{KNOWN}");
        assert_eq!(
            verify("whsec_test", "1700000000", &with_junk, BODY, TS, 300),
            Ok(())
        );
    }

    #[test]
    fn rejects_malformed_headers() {
        for ts in ["", "abc", "-1700000000", "1.5e9", "99999999999999999999999"] {
            assert_eq!(
                verify("whsec_test", ts, KNOWN, BODY, TS, 300),
                Err(VerifyError::BadTimestamp),
                "{ts:?}"
            );
        }
        assert_eq!(
            verify("whsec_test", "1700000000", "", BODY, TS, 300),
            Err(VerifyError::NoSignature)
        );
        assert_eq!(
            verify("whsec_test", "1700000000", "sha256=abcd", BODY, TS, 300),
            Err(VerifyError::NoSignature)
        );
        // Truncated hex never matches.
        assert_eq!(
            verify("whsec_test", "1700000000", &KNOWN[..40], BODY, TS, 300),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn hex_round_trips() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(from_hex(&to_hex(&bytes)), Some(bytes));
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz"), None);
    }
}
