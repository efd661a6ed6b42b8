//! Trends stage: per (org, granularity, bucket, source), the accumulated [`Sums`] of the
//! mentions whose event time falls in the bucket.
//!
//! Each scored mention is exploded into one record per granularity whose *difference* is
//! the mention's sums; `count_total` arranges them by key and reports each key's
//! accumulated value whenever it changes (retracting the previous value). A retracted or
//! re-scored mention therefore updates every trend row it counted in.

use differential_dataflow::lattice::Lattice;
use differential_dataflow::operators::CountTotal;
use differential_dataflow::VecCollection;
use timely::order::TotalOrder;
use timely::progress::Timestamp;

use super::records::{KeywordTrendKey, Scored, Sums, TrendKey};
use crate::domain::Granularity;

/// The trend keys a mention counts in, one per granularity.
pub fn trend_keys(m: &Scored) -> [TrendKey; 4] {
    let t = m.created_at_secs();
    Granularity::ALL.map(|g| TrendKey {
        org: m.key.org,
        granularity: g,
        bucket: g.bucket_start(t),
        source: m.body.source,
    })
}

/// The trends stage: `(key, accumulated sums)`, updated incrementally.
pub fn trends<'s, T>(scored: VecCollection<'s, T, Scored>) -> VecCollection<'s, T, (TrendKey, Sums)>
where
    T: Timestamp + Lattice + TotalOrder,
{
    scored
        .explode(|m| {
            let sums = m.sums();
            trend_keys(&m).map(|k| (k, sums))
        })
        .count_total()
}

/// The keyword trends stage: per (org, granularity, bucket, keyword), the accumulated sums of
/// the mentions that matched the keyword (a mention counts once per keyword it matched).
pub fn keyword_trends<'s, T>(
    scored: VecCollection<'s, T, Scored>,
) -> VecCollection<'s, T, (KeywordTrendKey, Sums)>
where
    T: Timestamp + Lattice + TotalOrder,
{
    scored
        .filter(|m| !m.body.keywords.is_empty())
        .explode(|m| {
            let sums = m.sums();
            let t = m.created_at_secs();
            let mut keywords: Vec<&String> = m.body.keywords.iter().collect();
            keywords.sort();
            keywords.dedup();
            let mut out = Vec::with_capacity(keywords.len() * 4);
            for k in keywords {
                for g in Granularity::ALL {
                    out.push((
                        KeywordTrendKey {
                            org: m.key.org,
                            granularity: g,
                            bucket: g.bucket_start(t),
                            keyword: k.clone(),
                        },
                        sums,
                    ));
                }
            }
            out
        })
        .count_total()
}
