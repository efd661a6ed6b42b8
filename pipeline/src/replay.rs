//! `vigie replay FILE`: posts an NDJSON file to a running vigie in batches, with progress.

use std::io::BufRead;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::ReplayOpts;
use crate::post::post_batch;

/// `vigie replay`.
pub async fn run(opts: ReplayOpts) -> anyhow::Result<()> {
    let file = std::fs::File::open(&opts.file)
        .with_context(|| format!("opening {}", opts.file.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = ProgressBar::new(size);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let client = reqwest::Client::new();
    let reader = std::io::BufReader::new(file);
    let (mut body, mut n, mut accepted, mut rejected) = (String::new(), 0usize, 0u64, 0u64);
    for line in reader.lines() {
        let line = line.context("reading the file")?;
        bar.inc(line.len() as u64 + 1);
        if line.trim().is_empty() {
            continue;
        }
        body.push_str(&line);
        body.push('\n');
        n += 1;
        if n >= opts.batch.max(1) {
            let a = post_batch(&client, &opts.url, &opts.key, std::mem::take(&mut body)).await?;
            accepted += a.accepted;
            rejected += a.rejected;
            n = 0;
            bar.set_message(format!("{accepted} accepted, {rejected} rejected"));
        }
    }
    if n > 0 {
        let a = post_batch(&client, &opts.url, &opts.key, body).await?;
        accepted += a.accepted;
        rejected += a.rejected;
    }
    bar.finish_with_message(format!("{accepted} accepted, {rejected} rejected"));
    println!(
        "replayed {}: {accepted} accepted, {rejected} rejected",
        opts.file.display()
    );
    Ok(())
}
