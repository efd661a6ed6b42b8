-- vigie schema, version 2: keywords and stories of mentions, trends per keyword, alerts, per-organisation alert
-- rules, webhooks and their deliveries. Same subset as version 1 (18.16 and current releases).
-- ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS: the migrator treats "column already
-- exists" (code 44) on ALTER … ADD COLUMN as done, so an interrupted migration re-runs.

ALTER TABLE mentions ADD COLUMN keywords Array(String)
;
ALTER TABLE mentions ADD COLUMN story_id UInt64
;
CREATE TABLE IF NOT EXISTS keyword_trends (
    org_id         UUID,
    granularity    Enum8('hour' = 1, 'day' = 2, 'week' = 3, 'month' = 4),
    bucket         DateTime,
    keyword        String,
    total          UInt64,
    positive       UInt64,
    neutral        UInt64,
    negative       UInt64,
    sentiment_sum  Float64,
    virality_sum   Float64,
    emotions       Array(UInt64),
    top_emotions   Array(String),
    version        UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY (org_id, granularity, bucket, keyword)
;
CREATE VIEW IF NOT EXISTS keyword_trends_current AS
SELECT
    org_id, granularity, bucket, keyword,
    total, positive, neutral, negative,
    sentiment_sum / total AS avg_sentiment,
    virality_sum / total AS avg_virality,
    top_emotions, emotions, sentiment_sum, virality_sum, version
FROM keyword_trends FINAL
WHERE total > 0
;
CREATE TABLE IF NOT EXISTS alerts (
    org_id        UUID,
    id            UUID,
    type          Enum8('critical_mention' = 1, 'volume_spike' = 2, 'sentiment_dip' = 3),
    level         Enum8('low' = 1, 'medium' = 2, 'critical' = 3),
    status        Enum8('NEW' = 1, 'ACKNOWLEDGED' = 2, 'IN_PROGRESS' = 3, 'RESOLVED' = 4, 'DISMISSED' = 5),
    key_kind      Enum8('org' = 1, 'source' = 2, 'keyword' = 3, 'story' = 4),
    key           String,
    source_id     UUID,
    keyword       String,
    message       String,
    observed      Float64,
    baseline      Float64,
    threshold     Float64,
    window_start  DateTime,
    window_end    DateTime,
    mention_ids   Array(UUID),
    created_at    DateTime,
    version       UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY (org_id, id)
;
CREATE VIEW IF NOT EXISTS alerts_current AS
SELECT * FROM alerts FINAL
;
CREATE TABLE IF NOT EXISTS alert_rules (
    org_id      UUID,
    config      String,
    updated_at  DateTime,
    version     UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY org_id
;
CREATE TABLE IF NOT EXISTS webhooks (
    org_id      UUID,
    id          UUID,
    url         String,
    secret      String,
    enabled     UInt8,
    min_level   Enum8('low' = 1, 'medium' = 2, 'critical' = 3),
    types       Array(String),
    format      Enum8('json' = 1, 'slack' = 2),
    created_at  DateTime,
    version     UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY (org_id, id)
;
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    org_id        UUID,
    webhook_id    UUID,
    alert_id      UUID,
    attempt       UInt16,
    attempted_at  DateTime,
    status_code   UInt16,
    outcome       Enum8('delivered' = 1, 'retrying' = 2, 'failed' = 3, 'dead_letter' = 4, 'dropped' = 5),
    error         String,
    duration_ms   UInt32
) ENGINE = MergeTree ORDER BY (org_id, webhook_id, attempted_at)
;
CREATE TABLE IF NOT EXISTS webhook_dead_letters (
    org_id        UUID,
    webhook_id    UUID,
    alert_id      UUID,
    payload       String,
    attempts      UInt16,
    last_status   UInt16,
    last_error    String,
    failed_at     DateTime,
    version       UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY (org_id, webhook_id, alert_id)
