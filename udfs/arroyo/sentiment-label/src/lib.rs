/*
[dependencies]
vigie-udfs = { path = "{{ VIGIE_UDFS_DIR }}" }
*/
// The comment above is for Arroyo: this file is also the UDF definition to register (see
// udfs/arroyo/README.md). Arroyo reads its `[dependencies]` and adds `arroyo-udf-plugin` itself.

//! Arroyo UDF `sentiment_label(text TEXT) -> TEXT`: `positive`, `neutral` or `negative`.
//!
//! NULL text gives NULL (a non-`Option` argument: Arroyo skips the call).

use arroyo_udf_plugin::udf;

#[udf]
fn sentiment_label(text: &str) -> String {
    vigie_udfs::score(text, &vigie_udfs::ScoreConfig::default())
        .sentiment
        .label
        .as_str()
        .to_string()
}
