//! Independent checks of what vigie stored, used by the tests and the chaos harness: the
//! trends as BI tools read them, and the same recomputed from scratch with plain SQL over
//! `mentions FINAL` (the oracle). Both queries return the same columns in the same form.
//! Also the two ways they stage a ClickHouse outage: connections cut at a proxy
//! ([`CutProxy`]) and a real server stopped and started again ([`LocalClickHouse`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The trend rows as BI tools see them, canonicalised for comparison (callers sort: 18.16
/// has no positional `ORDER BY`).
pub const TRENDS_SQL: &str = "SELECT toString(org_id), toInt8(granularity), toUInt32(bucket), toString(source_id), \
    total, positive, neutral, negative, toInt64(round(sentiment_sum * 1000000)), toInt64(round(virality_sum * 1000000)), \
    anger, anticipation, disgust, fear, joy, sadness, surprise, trust \
    FROM trends_current";

/// The same rows recomputed from scratch over `mentions FINAL` with plain SQL (the oracle).
/// Scores are summed as integer micro-units: a Float64 sum over a million mentions drifts
/// by more than 1e-6.
pub const TRENDS_ORACLE_SQL: &str = "SELECT toString(org_id), g, b, toString(source_id), \
    count(), countIf(sentiment = 'positive'), countIf(sentiment = 'neutral'), countIf(sentiment = 'negative'), \
    sum(toInt64(round(sentiment_score * 1000000))), sum(toInt64(round(virality_score * 1000000))), \
    countIf(has(emotions, 'anger')), countIf(has(emotions, 'anticipation')), countIf(has(emotions, 'disgust')), \
    countIf(has(emotions, 'fear')), countIf(has(emotions, 'joy')), countIf(has(emotions, 'sadness')), \
    countIf(has(emotions, 'surprise')), countIf(has(emotions, 'trust')) \
    FROM (SELECT org_id, source_id, sentiment, sentiment_score, virality_score, emotions, \
            arrayJoin([(toInt8(1), toUInt32(toStartOfHour(created_at, 'UTC'))), \
                       (toInt8(2), toUInt32(toDate(created_at, 'UTC')) * 86400), \
                       (toInt8(3), toUInt32(toMonday(created_at, 'UTC')) * 86400), \
                       (toInt8(4), toUInt32(toStartOfMonth(created_at, 'UTC')) * 86400)]) AS gb, \
            gb.1 AS g, gb.2 AS b \
          FROM mentions FINAL) \
    GROUP BY org_id, g, b, source_id";

/// Rows of `sql` (tab-separated, sorted) from ClickHouse's HTTP interface.
pub async fn sorted_rows(
    client: &reqwest::Client,
    url: &str,
    database: &str,
    sql: &str,
) -> Result<Vec<String>, String> {
    let resp = client
        .post(format!(
            "{}/?database={database}",
            url.trim_end_matches('/')
        ))
        .body(format!("{sql} FORMAT TabSeparated"))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {text}"));
    }
    let mut rows: Vec<String> = text.lines().map(str::to_string).collect();
    rows.sort();
    Ok(rows)
}

/// Ok when `trends_current` equals the recompute over `mentions FINAL`; otherwise how many
/// rows differ.
pub async fn trends_match(
    client: &reqwest::Client,
    url: &str,
    database: &str,
) -> Result<usize, String> {
    let got = sorted_rows(client, url, database, TRENDS_SQL).await?;
    let want = sorted_rows(client, url, database, TRENDS_ORACLE_SQL).await?;
    if got == want {
        Ok(got.len())
    } else {
        let differing = got
            .iter()
            .filter(|r| want.binary_search(r).is_err())
            .count()
            + want
                .iter()
                .filter(|r| got.binary_search(r).is_err())
                .count();
        Err(format!(
            "{differing} trend rows differ from the recompute ({} vs {})",
            got.len(),
            want.len()
        ))
    }
}

/// A TCP proxy (on 127.0.0.1) to a ClickHouse whose connections can be cut: while it is
/// down, new connections are dropped and open ones closed, as in an outage.
pub struct CutProxy {
    /// `http://127.0.0.1:PORT`, to give vigie as its ClickHouse URL.
    pub url: String,
    up: Arc<AtomicBool>,
}

impl CutProxy {
    /// Starts a proxy to `target` (an `http://host:port` URL); it starts up.
    pub async fn start(target: &str) -> std::io::Result<CutProxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let up = Arc::new(AtomicBool::new(true));
        let flag = up.clone();
        let target = target
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees a reset
                }
                let target = target.clone();
                let flag = flag.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    let cut = async {
                        while flag.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! { _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}, _ = cut => {} }
                });
            }
        });
        Ok(CutProxy { url, up })
    }

    /// Cuts (`false`) or restores (`true`) the connection to ClickHouse.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}

/// A private ClickHouse server (Debian's `clickhouse-server`), run as a child process with
/// its data under a directory of its own, so that a harness can stop the real server (a
/// clean SIGTERM or a SIGKILL) and start it again on the same data and ports.
pub struct LocalClickHouse {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    dir: std::path::PathBuf,
    ports: [u16; 3], // http, native, interserver
    child: Option<std::process::Child>,
}

/// The server's configuration file (Debian's package installs it).
const CLICKHOUSE_CONFIG: &str = "/etc/clickhouse-server/config.xml";

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl LocalClickHouse {
    /// Starts a server with its data under `dir` on free ports of 127.0.0.1 and waits until
    /// it answers `/ping`.
    pub fn start(dir: &std::path::Path) -> std::io::Result<LocalClickHouse> {
        let ports = [free_port()?, free_port()?, free_port()?];
        let mut server = LocalClickHouse {
            url: format!("http://127.0.0.1:{}", ports[0]),
            dir: dir.to_path_buf(),
            ports,
            child: None,
        };
        server.restart()?;
        Ok(server)
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the server again (same data, same ports) and waits until it answers.
    pub fn restart(&mut self) -> std::io::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let data = self.dir.join("data");
        for sub in ["tmp", "uf", "fs"] {
            std::fs::create_dir_all(data.join(sub))?;
        }
        let path = |sub: &str| format!("{}/", data.join(sub).display());
        let child = std::process::Command::new("clickhouse-server")
            .arg(format!("--config-file={CLICKHOUSE_CONFIG}"))
            .arg("--")
            .arg(format!("--path={}/", data.display()))
            .arg(format!("--tmp_path={}", path("tmp")))
            .arg(format!("--user_files_path={}", path("uf")))
            .arg(format!("--format_schema_path={}", path("fs")))
            .arg(format!(
                "--logger.log={}",
                self.dir.join("server.log").display()
            ))
            .arg(format!(
                "--logger.errorlog={}",
                self.dir.join("err.log").display()
            ))
            .arg(format!("--http_port={}", self.ports[0]))
            .arg(format!("--tcp_port={}", self.ports[1]))
            .arg(format!("--interserver_http_port={}", self.ports[2]))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if self.pings() {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Err(std::io::Error::other(format!(
                    "clickhouse-server exited with {status}; see {}",
                    self.dir.join("err.log").display()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(std::io::Error::other(format!(
            "clickhouse-server did not answer within 30 s; see {}",
            self.dir.join("err.log").display()
        )))
    }

    /// Stops the server: SIGKILL when `kill`, else SIGTERM (a clean stop; SIGKILL after 20 s).
    pub fn stop(&mut self, kill: bool) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if !kill {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn pings(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.ports[0])) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if s.write_all(b"GET /ping HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200")
    }
}

impl Drop for LocalClickHouse {
    fn drop(&mut self) {
        self.stop(true);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
