//! What the end-to-end benchmarks share: arguments, the `vigie` CLI, a running `vigie run`,
//! a webhook receiver on 127.0.0.1, percentiles, and a process's RSS and CPU time.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What every end-to-end benchmark binary is pointed at: the `vigie` binary it runs and
/// the ClickHouse it uses.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The `vigie` binary to run.
    #[arg(long, value_name = "PATH", default_value = "target/release/vigie")]
    pub vigie: String,
    /// ClickHouse's HTTP endpoint.
    #[arg(
        long,
        value_name = "URL",
        env = "VIGIE_TEST_CLICKHOUSE_URL",
        default_value = "http://127.0.0.1:8123"
    )]
    pub clickhouse: String,
}

/// Sets this process's memory up as `vigie run` starts (`vigie_pipeline::memory`), for the
/// benchmarks that measure RSS in-process: without it mimalloc backs its arenas with
/// transparent huge pages (`madvise`), and RSS counts whole 2 MiB pages.
pub fn memory_as_in_vigie_run() {
    let thp_off = vigie_pipeline::memory::no_transparent_huge_pages();
    eprintln!("transparent huge pages off for this process: {thp_off}");
}

/// Parser of a count option that must be at least 1.
pub fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::new().range(1..)
}

/// Runs a `vigie` admin command against `url`/`db` and returns its stdout (panics on failure).
pub fn cli(vigie: &str, url: &str, db: &str, args: &[&str]) -> String {
    let out = Command::new(vigie)
        .args(["--clickhouse-url", url, "--database", db, "--log", "warn"])
        .args(args)
        .output()
        .expect("running vigie");
    assert!(
        out.status.success(),
        "vigie {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `cli` whose output is JSON.
pub fn cli_json(vigie: &str, url: &str, db: &str, args: &[&str]) -> Value {
    serde_json::from_str(&cli(vigie, url, db, args)).expect("vigie printed JSON")
}

/// A `vigie run` child process, killed (SIGKILL) when dropped.
pub struct Vigie {
    child: Child,
    /// Its base URL (`http://127.0.0.1:PORT`).
    pub base: String,
    /// Its data dir.
    pub data_dir: PathBuf,
}

impl Vigie {
    /// Starts `vigie run` on a free loopback port with `data_dir`, plus `extra` arguments of
    /// `run`, and waits until it listens.
    pub fn start(vigie: &str, url: &str, db: &str, data_dir: &Path, extra: &[&str]) -> Vigie {
        let mut child = Command::new(vigie)
            .args(["--clickhouse-url", url, "--database", db, "--log", "warn"])
            .args(["run", "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting vigie run");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = lines.next().expect("vigie exited").unwrap();
            if let Some(u) = line.strip_prefix("vigie listening on ") {
                break u.trim().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Vigie {
            child,
            base,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reap.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Vigie {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One webhook delivery.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// When it arrived.
    pub at: Instant,
    /// When it arrived, milliseconds since the Unix epoch.
    pub wall_ms: u64,
    /// The alert's `version`: the dataflow time (milliseconds since the Unix epoch) of the
    /// epoch whose update raised it.
    pub version: u64,
}

/// Webhook deliveries, by the first mention id of their alert.
pub type Arrivals = Arc<Mutex<HashMap<String, Arrival>>>;

/// A webhook receiver on 127.0.0.1 answering 200 to every delivery; returns its URL.
pub async fn receiver(arrivals: Arrivals) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let arrivals = arrivals.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 16384];
                loop {
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            let at = Instant::now();
                            let wall_ms = SystemTime::now()
                                .duration_since(UNIX_EPOCH)
                                .map_or(0, |d| d.as_millis() as u64);
                            let body: Value = serde_json::from_slice(&buf[end + 4..end + 4 + len])
                                .unwrap_or_default();
                            buf.drain(..end + 4 + len);
                            if let Some(m) = body["mention_ids"][0].as_str() {
                                let version = body["version"].as_u64().unwrap_or(0);
                                arrivals.lock().unwrap().insert(
                                    m.to_string(),
                                    Arrival {
                                        at,
                                        wall_ms,
                                        version,
                                    },
                                );
                            }
                            let _ = sock
                                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                                .await;
                            continue;
                        }
                    }
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    url
}

/// The `p` quantile of sorted values (NaN when empty).
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Resident set size of process `pid`, bytes (0 when gone).
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// CPU time (user + system) of process `pid`, seconds (0 when gone).
pub fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The pid of a ClickHouse server on this machine serving HTTP at `url`'s port (found by
/// its `--http_port=` argument, as `scripts/clickhouse.sh` starts it), to read its CPU time
/// beside vigie's; `None` when the server is elsewhere or started otherwise.
pub fn clickhouse_pid(url: &str) -> Option<u32> {
    let port = url.rsplit(':').next()?.trim_end_matches('/');
    let wanted = format!("--http_port={port}");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        cmdline
            .split(|b| *b == 0)
            .any(|a| a == wanted.as_bytes())
            .then_some(pid)
    })
}

/// Creates an organisation; returns its id and ingest key.
pub fn create_org(vigie: &str, url: &str, db: &str, name: &str) -> (String, String) {
    let org = cli_json(vigie, url, db, &["org", "create", name, "--json"]);
    (
        org["org_id"].as_str().expect("org_id").to_string(),
        org["ingest_key"].as_str().expect("ingest_key").to_string(),
    )
}

/// Adds a source of `kind` watching `keywords` (comma-separated) to `org`; returns its id.
pub fn add_source(
    vigie: &str,
    url: &str,
    db: &str,
    org: &str,
    (kind, name): (&str, &str),
    keywords: &str,
) -> String {
    let args = [
        "source",
        "add",
        "--org",
        org,
        "--type",
        kind,
        "--name",
        name,
        "--keywords",
        keywords,
        "--json",
    ];
    cli_json(vigie, url, db, &args)["source_id"]
        .as_str()
        .expect("source_id")
        .to_string()
}
