//! The `vigie` command line end to end: migrate, readiness, sources, gen → replay, --help.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

#[tokio::test]
async fn readyz_is_503_until_the_schema_is_migrated() {
    let db = TestDb::empty().await;
    let v = Vigie::start(&db, &[]);
    let resp = reqwest::get(v.url("/readyz")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["reason"].as_str().unwrap().contains("vigie migrate"),
        "{body}"
    );
    assert!(db.cli(&["migrate"]).contains("applied [1, 2]"));
    assert!(db.cli(&["migrate"]).contains("up to date"));
    assert_eq!(status_of(&v, "/readyz").await, 200);
    assert_eq!(status_of(&v, "/healthz").await, 200);
}

#[tokio::test]
async fn sources_are_listed_disabled_and_enabled() {
    let db = TestDb::new().await;
    let (org, _) = db.create_org("acme");
    let a = db.add_source(org, "alpha");
    let org_s = org.to_string();
    let list = |db: &TestDb| -> Vec<Value> {
        db.cli(&["source", "list", "--org", &org_s, "--json"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let before = list(&db);
    assert_eq!(before.len(), 1);
    assert_eq!(before[0]["id"], a.to_string());
    assert_eq!(before[0]["type"], "reddit");
    assert_eq!(before[0]["keywords"], serde_json::json!(["acme", "nimbus"]));
    assert_eq!(before[0]["is_active"], true);
    db.cli(&["source", "disable", "--org", &org_s, "--id", &a.to_string()]);
    assert_eq!(list(&db)[0]["is_active"], false);
    db.cli(&["source", "enable", "--org", &org_s, "--id", &a.to_string()]);
    assert_eq!(list(&db)[0]["is_active"], true);
    // Another organisation sees none of them.
    let (other, _) = db.create_org("other");
    assert!(db
        .cli(&["source", "list", "--org", &other.to_string(), "--json"])
        .trim()
        .is_empty());
}

#[tokio::test]
async fn generated_mentions_replayed_from_a_file_are_all_stored() {
    let db = TestDb::new().await;
    let (org, key) = db.create_org("acme");
    let src = db.add_source(org, "r/acme");
    let file = std::env::temp_dir().join(format!(
        "vigie-gen-{}.ndjson",
        uuid::Uuid::new_v4().simple()
    ));
    let out = db.cli(&[
        "gen",
        "--count",
        "300",
        "--seed",
        "5",
        "--source-id",
        &src.to_string(),
    ]);
    assert_eq!(out.lines().count(), 300);
    std::fs::write(&file, &out).unwrap();
    let v = Vigie::start(&db, &[]);
    let replayed = db.cli(&[
        "replay",
        file.to_str().unwrap(),
        "--url",
        &v.base,
        "--key",
        &key,
        "--batch",
        "70",
    ]);
    assert!(replayed.contains("300 accepted, 0 rejected"), "{replayed}");
    eventually(Duration::from_secs(20), "300 mentions stored", || async {
        (scalar(&db, "SELECT count() FROM mentions FINAL").await == 300.0).then_some(())
    })
    .await;
    assert_trends_match_oracle(&db, Duration::from_secs(20)).await;
    let _ = std::fs::remove_file(file);
}

#[test]
fn every_subcommand_has_help() {
    for args in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["migrate", "--help"],
        vec!["org", "--help"],
        vec!["org", "create", "--help"],
        vec!["source", "--help"],
        vec!["source", "add", "--help"],
        vec!["source", "list", "--help"],
        vec!["source", "disable", "--help"],
        vec!["gen", "--help"],
        vec!["replay", "--help"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_vigie"))
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}
