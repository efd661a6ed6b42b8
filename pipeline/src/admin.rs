//! `vigie migrate`, `vigie org …`, `vigie source …`, `vigie rules …`, `vigie webhook …`.

use anyhow::Context;
use serde_json::json;
use vigie_sinks::clickhouse::{catalog, migrations, ClickHouseConfig};

use crate::cli::{OrgCommand, RulesCommand, SourceCommand, WebhookCommand};
use crate::domain::{Source, SourceType};

/// `vigie migrate`.
pub async fn migrate(ch: &ClickHouseConfig) -> anyhow::Result<()> {
    let report = migrations::migrate(ch)
        .await
        .with_context(|| format!("migrating {} at {}", ch.database, ch.url))?;
    if report.applied.is_empty() {
        println!(
            "database {} is up to date (version {})",
            ch.database, report.version
        );
    } else {
        println!(
            "database {}: applied {:?}, now at version {}",
            ch.database, report.applied, report.version
        );
    }
    Ok(())
}

/// `vigie org …`.
pub async fn org(ch: &ClickHouseConfig, cmd: OrgCommand) -> anyhow::Result<()> {
    match cmd {
        OrgCommand::Create { name, json } => {
            let (org, key) = catalog::create_org(&ch.client(), &name)
                .await
                .context("creating organisation")?;
            if json {
                println!("{}", json!({"org_id": org.id, "ingest_key": key}));
            } else {
                println!(
                    "organisation {} created: {}\ningest key (shown once): {}",
                    org.name, org.id, key
                );
            }
        }
    }
    Ok(())
}

/// `vigie source …`.
pub async fn source(ch: &ClickHouseConfig, cmd: SourceCommand) -> anyhow::Result<()> {
    let client = ch.client();
    match cmd {
        SourceCommand::Add {
            org,
            kind,
            name,
            keywords,
            json,
        } => {
            if catalog::get_org(&client, org).await?.is_none() {
                anyhow::bail!("no organisation {org}");
            }
            let keywords = keywords
                .into_iter()
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
                .collect();
            let row = catalog::add_source(&client, org, kind.code(), &name, keywords).await?;
            if json {
                println!("{}", json!({"source_id": row.id}));
            } else {
                println!("source {} added: {}", row.name, row.id);
            }
        }
        SourceCommand::List { org, json } => {
            for row in catalog::list_sources(&client, org).await? {
                let s = Source {
                    id: row.id,
                    org_id: row.org_id,
                    kind: SourceType::from_code(row.kind).unwrap_or(SourceType::Other),
                    name: row.name,
                    keywords: row.keywords,
                    is_active: row.is_active == 1,
                };
                if json {
                    println!("{}", serde_json::to_string(&s)?);
                } else {
                    let state = if s.is_active { "active" } else { "disabled" };
                    println!(
                        "{}  {:<8} {:<9} {}  [{}]",
                        s.id,
                        s.kind.as_str(),
                        state,
                        s.name,
                        s.keywords.join(", ")
                    );
                }
            }
        }
        SourceCommand::Disable { org, id } | SourceCommand::Enable { org, id } => {
            let active = matches!(cmd, SourceCommand::Enable { .. });
            match catalog::set_source_active(&client, org, id, active).await? {
                Some(row) => println!(
                    "source {} {}",
                    row.id,
                    if active { "enabled" } else { "disabled" }
                ),
                None => anyhow::bail!("organisation {org} has no source {id}"),
            }
        }
    }
    Ok(())
}

/// `vigie rules …`.
pub async fn rules(ch: &ClickHouseConfig, cmd: RulesCommand) -> anyhow::Result<()> {
    let client = ch.client();
    match cmd {
        RulesCommand::Get { org } => {
            let rules = crate::rules::load(&client, org).await?;
            println!("{}", serde_json::to_string_pretty(&rules)?);
        }
        RulesCommand::Set { org, json } => {
            if catalog::get_org(&client, org).await?.is_none() {
                anyhow::bail!("no organisation {org}");
            }
            let rules = crate::rules::AlertRules::from_json(&json)
                .map_err(|e| anyhow::anyhow!("invalid rules: {e}"))?;
            crate::rules::store(&client, org, &rules).await?;
            println!("{}", serde_json::to_string_pretty(&rules)?);
        }
    }
    Ok(())
}

/// `vigie webhook …`.
pub async fn webhook(ch: &ClickHouseConfig, cmd: WebhookCommand) -> anyhow::Result<()> {
    use vigie_sinks::webhook::{self as wh, Format};
    let client = ch.client();
    match cmd {
        WebhookCommand::Add {
            org,
            url,
            secret,
            min_level,
            types,
            format,
            json,
        } => {
            if catalog::get_org(&client, org).await?.is_none() {
                anyhow::bail!("no organisation {org}");
            }
            let format: Format = format
                .parse()
                .map_err(|e| anyhow::anyhow!("--format: {e}"))?;
            let row = wh::add_webhook(&client, org, &url, secret, min_level, types, format).await?;
            if json {
                println!("{}", json!({"webhook_id": row.id, "secret": row.secret}));
            } else {
                println!(
                    "webhook {} added for {}\nsigning secret (shown once): {}",
                    row.id, row.url, row.secret
                );
            }
        }
        WebhookCommand::List { org } => {
            for row in wh::list_webhooks(&client, org).await? {
                println!(
                    "{}",
                    json!({"webhook_id": row.id, "url": row.url, "enabled": row.enabled == 1,
                        "min_level": vigie_sinks::alert::Level::from_code(row.min_level).map(|l| l.as_str()),
                        "types": row.types, "format": row.body_format().map(|f| f.as_str())})
                );
            }
        }
        WebhookCommand::Disable { org, id } | WebhookCommand::Enable { org, id } => {
            let enabled = matches!(cmd, WebhookCommand::Enable { .. });
            match wh::set_webhook_enabled(&client, org, id, enabled).await? {
                Some(row) => println!(
                    "webhook {} {}",
                    row.id,
                    if enabled { "enabled" } else { "disabled" }
                ),
                None => anyhow::bail!("organisation {org} has no webhook {id}"),
            }
        }
    }
    Ok(())
}
