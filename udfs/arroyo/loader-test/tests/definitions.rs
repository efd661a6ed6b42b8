//! Each plugin's `src/lib.rs` is also the definition to register with Arroyo (README.md):
//! Arroyo parses it with arroyo-udf-common's parser to get the function's name and SQL
//! signature, and reads the `/*\n[dependencies]\n…*/` comment for its Cargo.toml.

use std::path::Path;

use arrow::datatypes::DataType;
use arroyo_udf_common::parse::{NullableType, ParsedUdf};

fn check(dir: &str, name: &str, args: &[DataType], ret: DataType) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(dir)
        .join("src/lib.rs");
    let source = std::fs::read_to_string(&path).unwrap();

    // What arroyo-udf-host's `parse_dependencies` looks for, then the dependency itself.
    assert!(
        source.starts_with("/*\n[dependencies]\n"),
        "{dir}: no dependencies comment first"
    );
    let deps = &source[..source.find("*/").expect("comment closed")];
    assert!(
        deps.contains(r#"vigie-udfs = { path = "{{ VIGIE_UDFS_DIR }}" }"#),
        "{dir}: vigie-udfs dependency"
    );

    // Exactly one `#[udf]` function (one `__run` per library), of the documented signature.
    let file = syn::parse_file(&source).unwrap();
    let udfs: Vec<&syn::ItemFn> = file
        .items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Fn(f) if f.attrs.iter().any(|a| a.path().is_ident("udf")) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(udfs.len(), 1, "{dir}: one #[udf] function");
    let udf = ParsedUdf::try_parse(udfs[0]).unwrap();
    assert_eq!(udf.name, name, "{dir}: name");
    let expected: Vec<NullableType> = args.iter().cloned().map(NullableType::not_null).collect();
    assert_eq!(udf.args, expected, "{dir}: arguments");
    assert_eq!(
        udf.ret_type,
        NullableType::not_null(ret),
        "{dir}: return type"
    );
    assert!(!udf.udf_type.is_async(), "{dir}: sync");
    assert_eq!(udf.vec_arguments, 0, "{dir}: not an aggregate");
}

#[test]
fn definitions_parse_as_arroyo_parses_them() {
    use DataType::{Float64, Int64, Utf8};
    check("sentiment-score", "sentiment_score", &[Utf8], Float64);
    check("sentiment-label", "sentiment_label", &[Utf8], Utf8);
    check("emotions", "emotions", &[Utf8], Utf8);
    check("language", "language", &[Utf8], Utf8);
    check(
        "virality",
        "virality",
        &[Int64, Int64, Int64, Int64],
        Float64,
    );
}
