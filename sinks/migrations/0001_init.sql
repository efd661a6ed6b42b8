-- vigie schema, version 1. Written for ClickHouse 18.16 and current releases alike:
-- MergeTree family only, no DateTime64/Map/TTL/CODEC/LowCardinality.
-- Statements are separated by a line holding only ';'.

CREATE TABLE IF NOT EXISTS organizations (
    id          UUID,
    name        String,
    created_at  DateTime,
    version     UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY id
;
CREATE TABLE IF NOT EXISTS api_keys (
    key_hash    String,
    org_id      UUID,
    created_at  DateTime,
    revoked     UInt8,
    version     UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY key_hash
;
CREATE TABLE IF NOT EXISTS users (
    email          String,
    id             UUID,
    org_id         UUID,
    password_hash  String,
    role           Enum8('USER' = 1, 'ADMIN' = 2),
    created_at     DateTime,
    version        UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY email
;
CREATE TABLE IF NOT EXISTS sources (
    org_id      UUID,
    id          UUID,
    type        Enum8('reddit' = 1, 'twitter' = 2, 'discord' = 3, 'news' = 4, 'forum' = 5, 'other' = 6),
    name        String,
    keywords    Array(String),
    is_active   UInt8,
    created_at  DateTime,
    version     UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY (org_id, id)
;
CREATE TABLE IF NOT EXISTS mentions (
    org_id            UUID,
    id                UUID,
    source_id         UUID,
    text              String,
    author            String,
    url               String,
    created_at        DateTime,
    created_at_us     UInt32,
    likes             UInt64,
    shares            UInt64,
    replies           UInt64,
    author_followers  UInt64,
    lang              String,
    sentiment         Enum8('negative' = -1, 'neutral' = 0, 'positive' = 1),
    sentiment_score   Float64,
    confidence        Float64,
    emotions          Array(String),
    virality_score    Float64,
    analyzed_at       DateTime,
    version           UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY (org_id, id)
;
CREATE TABLE IF NOT EXISTS trends (
    org_id         UUID,
    granularity    Enum8('hour' = 1, 'day' = 2, 'week' = 3, 'month' = 4),
    bucket         DateTime,
    source_id      UUID,
    total          UInt64,
    positive       UInt64,
    neutral        UInt64,
    negative       UInt64,
    sentiment_sum  Float64,
    virality_sum   Float64,
    anger          UInt64,
    anticipation   UInt64,
    disgust        UInt64,
    fear           UInt64,
    joy            UInt64,
    sadness        UInt64,
    surprise       UInt64,
    trust          UInt64,
    top_emotions   Array(String),
    version        UInt64
) ENGINE = ReplacingMergeTree(version) ORDER BY (org_id, granularity, bucket, source_id)
;
CREATE VIEW IF NOT EXISTS trends_current AS
SELECT
    org_id, granularity, bucket, source_id,
    total, positive, neutral, negative,
    sentiment_sum / total AS avg_sentiment,
    virality_sum / total AS avg_virality,
    top_emotions,
    anger, anticipation, disgust, fear, joy, sadness, surprise, trust,
    sentiment_sum, virality_sum, version
FROM trends FINAL
WHERE total > 0
;
CREATE VIEW IF NOT EXISTS trends_org_current AS
SELECT
    org_id, granularity, bucket,
    n_total AS total, n_positive AS positive, n_neutral AS neutral, n_negative AS negative,
    s_sentiment / n_total AS avg_sentiment,
    s_virality / n_total AS avg_virality,
    n_anger AS anger, n_anticipation AS anticipation, n_disgust AS disgust, n_fear AS fear,
    n_joy AS joy, n_sadness AS sadness, n_surprise AS surprise, n_trust AS trust,
    n_sources AS sources
FROM (
    SELECT
        org_id, granularity, bucket,
        sum(total) AS n_total, sum(positive) AS n_positive, sum(neutral) AS n_neutral, sum(negative) AS n_negative,
        sum(sentiment_sum) AS s_sentiment, sum(virality_sum) AS s_virality,
        sum(anger) AS n_anger, sum(anticipation) AS n_anticipation, sum(disgust) AS n_disgust, sum(fear) AS n_fear,
        sum(joy) AS n_joy, sum(sadness) AS n_sadness, sum(surprise) AS n_surprise, sum(trust) AS n_trust,
        uniqExact(source_id) AS n_sources
    FROM trends_current
    GROUP BY org_id, granularity, bucket
)
