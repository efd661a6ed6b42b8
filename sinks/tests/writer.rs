//! The batching writer against a real ClickHouse: permanent errors are not retried and
//! surface with the server's code; transient ones are retried until the batch lands once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;
use vigie_sinks::clickhouse::retry::RetryPolicy;
use vigie_sinks::clickhouse::rows::OrgRow;
use vigie_sinks::clickhouse::writer::BatchWriter;
use vigie_sinks::clickhouse::{migrations, ClickHouseConfig, SinkError};
use vigie_sinks::SinkMetrics;

fn url() -> String {
    std::env::var("VIGIE_TEST_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

struct Db(ClickHouseConfig);

impl Db {
    async fn new(migrate: bool) -> Db {
        let cfg = ClickHouseConfig {
            url: url(),
            database: format!("vigie_test_{}", Uuid::new_v4().simple()),
            retry: RetryPolicy {
                initial: Duration::from_millis(10),
                max: Duration::from_millis(50),
            },
            ..ClickHouseConfig::default()
        };
        if migrate {
            migrations::migrate(&cfg).await.unwrap();
        } else {
            cfg.server_client()
                .query(&format!("CREATE DATABASE {}", cfg.database))
                .execute()
                .await
                .unwrap();
        }
        Db(cfg)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let cfg = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let _ = cfg
                    .server_client()
                    .query(&format!("DROP DATABASE IF EXISTS {}", cfg.database))
                    .execute()
                    .await;
            })
        })
        .join();
    }
}

fn org(i: u128) -> OrgRow {
    OrgRow {
        id: Uuid::from_u128(i),
        name: format!("org {i}"),
        created_at: 1_790_000_000,
        version: 1,
    }
}

fn tmp_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("vigie-dlq-{}", Uuid::new_v4().simple()))
}

#[tokio::test]
async fn a_missing_table_is_permanent_reported_with_its_code_and_dead_lettered() {
    let db = Db::new(false).await; // no schema: `organizations` does not exist
    let metrics = Arc::new(SinkMetrics::default());
    let dir = tmp_dir();
    let mut w = BatchWriter::<OrgRow>::new(&db.0, "organizations", metrics.clone(), dir.clone());
    w.push(org(1));
    w.push(org(2));
    let err = w
        .flush()
        .await
        .expect_err("an unknown table cannot succeed");
    match &err {
        SinkError::Server { code, message } => {
            assert_eq!(*code, 60, "{message}");
            assert!(message.contains("organizations"), "{message}");
        }
        other => panic!("expected the server's error, got {other}"),
    }
    assert!(w.is_empty());
    let dead = std::fs::read_to_string(dir.join("organizations.ndjson")).unwrap();
    assert_eq!(
        dead.lines().count(),
        2,
        "the rejected batch is kept, not dropped"
    );
    assert!(dead.contains("00000000-0000-0000-0000-000000000001"));
    assert_eq!(
        metrics.other.retries.load(Ordering::Relaxed),
        0,
        "permanent errors are not retried"
    );
    assert_eq!(
        metrics.other.dead_lettered_batches.load(Ordering::Relaxed),
        1
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A TCP proxy to ClickHouse that drops the first `fail` connections.
async fn flaky_proxy(target: String, fail: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let target = target.trim_start_matches("http://").to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let target = target.clone();
            tokio::spawn(async move {
                if n < fail {
                    let _ = inbound.shutdown().await;
                    return;
                }
                if let Ok(mut outbound) = TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test]
async fn transient_network_errors_are_retried_until_the_batch_lands_once() {
    let db = Db::new(true).await;
    let (proxy, connections) = flaky_proxy(url(), 3).await;
    let cfg = ClickHouseConfig {
        url: proxy,
        ..db.0.clone()
    };
    let metrics = Arc::new(SinkMetrics::default());
    let mut w = BatchWriter::<OrgRow>::new(&cfg, "organizations", metrics.clone(), tmp_dir());
    for i in 0..100 {
        w.push(org(i));
    }
    let n = tokio::time::timeout(Duration::from_secs(30), w.flush())
        .await
        .expect("retries end")
        .expect("batch lands");
    assert_eq!(n, 100);
    assert!(connections.load(Ordering::SeqCst) >= 4);
    assert!(
        metrics.other.retries.load(Ordering::Relaxed) >= 1,
        "the dropped connections were retried"
    );
    assert_eq!(metrics.other.rows.load(Ordering::Relaxed), 100);
    let stored: u64 =
        db.0.client()
            .query("SELECT count() FROM organizations")
            .fetch_one()
            .await
            .unwrap();
    assert_eq!(stored, 100, "written exactly once");
}

#[tokio::test]
async fn migrating_twice_is_a_no_op_and_readiness_follows_the_schema() {
    let db = Db::new(false).await;
    assert!(matches!(
        migrations::check_ready(&db.0).await,
        Err(SinkError::NotMigrated { found: 0, .. })
    ));
    let first = migrations::migrate(&db.0).await.unwrap();
    assert_eq!(first.applied, vec![1, 2]);
    let second = migrations::migrate(&db.0).await.unwrap();
    assert!(second.applied.is_empty());
    migrations::check_ready(&db.0).await.unwrap();
    let recorded: u64 =
        db.0.client()
            .query("SELECT count() FROM schema_migrations FINAL")
            .fetch_one()
            .await
            .unwrap();
    assert_eq!(recorded, 2);
}

#[tokio::test]
async fn a_migration_interrupted_after_its_alter_runs_again() {
    let db = Db::new(false).await;
    // Version 1 applied, then a crash right after 0002's first ALTER.
    let client = db.0.client();
    migrations::migrate(&db.0).await.unwrap();
    client
        .query("ALTER TABLE schema_migrations DELETE WHERE version = 2")
        .execute()
        .await
        .unwrap();
    client.query("DROP TABLE alerts").execute().await.unwrap();
    // (the mutation is asynchronous on 18.16: wait until version 2 is gone)
    for _ in 0..100 {
        let n: u64 = client
            .query("SELECT count() FROM schema_migrations FINAL WHERE version = 2")
            .fetch_one()
            .await
            .unwrap();
        if n == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = migrations::migrate(&db.0).await.unwrap();
    assert_eq!(again.applied, vec![2]);
    migrations::check_ready(&db.0).await.unwrap();
    let alerts: u64 = client
        .query("SELECT count() FROM alerts")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(alerts, 0);
}
