#!/usr/bin/env python3
"""The baseline of benches/src/bin/e2e.rs: the original design's worker shape.

One Python process reads a corpus of mentions (NDJSON, one object per line with
`org_id`), scores each text with the `vaderSentiment` package (compound score, the usual
±0.05 neutral band), and inserts batches of 5,000 rows of the `mentions` table's shape
into `baseline_mentions` over ClickHouse's HTTP interface (JSONEachRow). It does no
aggregation: no trends, no windows, no alerts.

Prints one JSON object: {"mentions": N, "seconds": S} — S from the first score to the
last insert acknowledged (reading the file and creating the table are not timed).

    python3 benches/baseline/vader_worker.py --clickhouse http://127.0.0.1:18123 \
        --database DB --input corpus.ndjson
"""
import argparse
import json
import time
import urllib.error
import urllib.parse
import urllib.request

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

BATCH = 5000


def query(url, sql, body=None):
    req = urllib.request.Request(
        url + "/?" + urllib.parse.urlencode({"query": sql}),
        data=(body if body is not None else b""),
        method="POST",
    )
    try:
        with urllib.request.urlopen(req) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        raise SystemExit(f"ClickHouse: {sql[:80]}: {e.read().decode(errors='replace')[:500]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clickhouse", required=True)
    ap.add_argument("--database", required=True)
    ap.add_argument("--input", required=True)
    a = ap.parse_args()
    ch = a.clickhouse.rstrip("/")
    table = f"{a.database}.baseline_mentions"
    query(ch, f"CREATE TABLE {table} AS {a.database}.mentions")
    with open(a.input, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    analyzer = SentimentIntensityAnalyzer()
    insert = f"INSERT INTO {table} FORMAT JSONEachRow"
    started = time.perf_counter()
    rows = []
    for m in records:
        s = analyzer.polarity_scores(m["text"])
        c = s["compound"]
        label = "positive" if c >= 0.05 else ("negative" if c <= -0.05 else "neutral")
        now = int(time.time())
        rows.append(
            json.dumps(
                {
                    "org_id": m["org_id"],
                    "id": m["id"],
                    "source_id": m["source_id"],
                    "text": m["text"],
                    "author": m["author"],
                    "url": m["url"],
                    "created_at": m["created_at"][:19].replace("T", " "),
                    "likes": m.get("likes", 0),
                    "shares": m.get("shares", 0),
                    "replies": m.get("replies", 0),
                    "author_followers": m.get("author_followers", 0),
                    "lang": "other",
                    "sentiment": label,
                    "sentiment_score": c,
                    "confidence": abs(c),
                    "emotions": [],
                    "virality_score": 0.0,
                    "keywords": [],
                    "story_id": 0,
                    "analyzed_at": now,
                    "version": now * 1000,
                },
                ensure_ascii=False,
            )
        )
        if len(rows) >= BATCH:
            query(ch, insert, ("\n".join(rows) + "\n").encode())
            rows = []
    if rows:
        query(ch, insert, ("\n".join(rows) + "\n").encode())
    seconds = time.perf_counter() - started
    n = int(query(ch, f"SELECT count() FROM {table}").decode().strip())
    assert n == len(records), f"{n} rows stored, {len(records)} read"
    print(json.dumps({"mentions": len(records), "seconds": seconds}))


if __name__ == "__main__":
    main()
