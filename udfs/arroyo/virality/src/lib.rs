/*
[dependencies]
vigie-udfs = { path = "{{ VIGIE_UDFS_DIR }}" }
*/
// The comment above is for Arroyo: this file is also the UDF definition to register (see
// udfs/arroyo/README.md). Arroyo reads its `[dependencies]` and adds `arroyo-udf-plugin` itself.

//! Arroyo UDF `virality(likes BIGINT, shares BIGINT, replies BIGINT, author_followers BIGINT)
//! -> DOUBLE`: vigie's virality score of a post's engagement.
//!
//! The counts are `BIGINT` (i64), the integer type Arroyo's SQL uses by default, so the UDF
//! applies to ordinary columns without a cast; a negative count is taken as 0. Any NULL count
//! gives NULL (non-`Option` arguments: Arroyo skips the call).

use arroyo_udf_plugin::udf;

#[udf]
fn virality(likes: i64, shares: i64, replies: i64, author_followers: i64) -> f64 {
    vigie_udfs::virality(&vigie_udfs::Engagement {
        likes: count(likes),
        shares: count(shares),
        replies: count(replies),
        author_followers: count(author_followers),
    })
}

/// A count from SQL: negative means nothing, so 0.
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
