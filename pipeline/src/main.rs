//! The `vigie` binary.

use clap::Parser;
use tracing_subscriber::EnvFilter;
use vigie_pipeline::cli::{Cli, Command, FileConfig};
use vigie_pipeline::{admin, app, gen, memory, replay, scoring};

// The dataflow allocates and frees many small records across threads; glibc's allocator
// spent ~45% of the CPU on that under load (benches/README.md, "Profile").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // Before anything large is allocated: see `vigie_pipeline::memory`.
    memory::no_transparent_huge_pages();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_new(&cli.global.log).unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Command::Score(opts) = &cli.command {
        // Pure scoring: no runtime, no ClickHouse.
        return scoring::score_stdin(opts);
    }
    let file = FileConfig::load(cli.global.config.as_ref())?;
    let mut ch = cli.global.clickhouse(&file);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Run(opts) => {
                let settings = opts.resolve(&file, &mut ch);
                app::run(ch, settings).await
            }
            Command::Migrate => admin::migrate(&ch).await,
            Command::Org(cmd) => admin::org(&ch, cmd).await,
            Command::Source(cmd) => admin::source(&ch, cmd).await,
            Command::Rules(cmd) => admin::rules(&ch, cmd).await,
            Command::Webhook(cmd) => admin::webhook(&ch, cmd).await,
            Command::Gen(opts) => gen::run(opts).await,
            Command::Replay(opts) => replay::run(opts).await,
            Command::Score(_) => unreachable!("handled above"),
        }
    })
}
