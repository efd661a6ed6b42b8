/*
[dependencies]
vigie-udfs = { path = "{{ VIGIE_UDFS_DIR }}" }
*/
// The comment above is for Arroyo: this file is also the UDF definition to register (see
// udfs/arroyo/README.md). Arroyo reads its `[dependencies]` and adds `arroyo-udf-plugin` itself.

//! Arroyo UDF `language(text TEXT) -> TEXT`: `en`, `fr` or `other`.
//!
//! NULL text gives NULL (a non-`Option` argument: Arroyo skips the call).

use arroyo_udf_plugin::udf;

#[udf]
fn language(text: &str) -> String {
    vigie_udfs::score(text, &vigie_udfs::ScoreConfig::default())
        .lang
        .as_str()
        .to_string()
}
