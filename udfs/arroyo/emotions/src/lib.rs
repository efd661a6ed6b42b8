/*
[dependencies]
vigie-udfs = { path = "{{ VIGIE_UDFS_DIR }}" }
*/
// The comment above is for Arroyo: this file is also the UDF definition to register (see
// udfs/arroyo/README.md). Arroyo reads its `[dependencies]` and adds `arroyo-udf-plugin` itself.

//! Arroyo UDF `emotions(text TEXT) -> TEXT`: the Plutchik emotions present in the text,
//! comma-separated, strongest first (`joy,trust`); the empty string when there are none.
//!
//! NULL text gives NULL (a non-`Option` argument: Arroyo skips the call).

use arroyo_udf_plugin::udf;

#[udf]
fn emotions(text: &str) -> String {
    vigie_udfs::score(text, &vigie_udfs::ScoreConfig::default())
        .emotions
        .present()
        .map(|(e, _)| e.as_str())
        .collect::<Vec<_>>()
        .join(",")
}
