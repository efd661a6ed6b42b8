#!/usr/bin/env python3
"""Proves the schema on a current ClickHouse engine (chdb, in-process): applies every
migration under sinks/migrations/, inserts a few rows, and runs every ```sql block of
README.md. The Rust test suite runs the same migrations and queries on ClickHouse 18.16."""
import pathlib
import re
import sys

from chdb import session

ROOT = pathlib.Path(__file__).resolve().parent.parent


def statements(text):
    for chunk in text.split("\n;\n"):
        lines = [l for l in chunk.splitlines() if not l.lstrip().startswith("--")]
        stmt = "\n".join(lines).strip().rstrip(";").strip()
        if stmt:
            yield stmt


def main():
    s = session.Session()
    version = s.query("SELECT version()", "CSV").bytes().decode().strip()
    s.query("DROP DATABASE IF EXISTS vigie_chdb")
    s.query("CREATE DATABASE vigie_chdb")
    s.query("USE vigie_chdb")
    migrations = sorted((ROOT / "sinks" / "migrations").glob("*.sql"))
    n = 0
    for m in migrations:
        for stmt in statements(m.read_text()):
            s.query(stmt)
            n += 1
    org = "11111111-1111-1111-1111-111111111111"
    src = "22222222-2222-2222-2222-222222222222"
    s.query(
        "INSERT INTO mentions (org_id, id, source_id, text, author, url, created_at, lang, sentiment, "
        "sentiment_score, confidence, emotions, virality_score, analyzed_at, version) VALUES "
        f"('{org}', '33333333-3333-3333-3333-333333333333', '{src}', 'love it', '@a', 'https://e.com', "
        "'2026-11-20 10:00:00', 'en', 'positive', 0.6, 0.8, ['joy'], 0.1, '2026-11-20 10:00:01', 1)"
    )
    s.query(
        "INSERT INTO trends (org_id, granularity, bucket, source_id, total, positive, sentiment_sum, "
        f"virality_sum, joy, top_emotions, version) VALUES ('{org}', 'day', '2026-11-20 00:00:00', '{src}', "
        "1, 1, 0.6, 0.1, 1, ['joy'], 1)"
    )
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)```", readme, re.S)
    if not blocks:
        sys.exit("README.md has no ```sql blocks")
    ran = 0
    for block in blocks:
        for stmt in (q for q in re.split(r";\s*\n", block) if q.strip()):
            stmt = "\n".join(l for l in stmt.splitlines() if not l.lstrip().startswith("--")).strip()
            if not stmt:
                continue
            out = s.query(stmt, "JSONCompact").bytes().decode()
            if '"data"' not in out:
                sys.exit(f"query returned no data section:\n{stmt}\n{out}")
            ran += 1
    total = s.query("SELECT total FROM trends_current", "CSV").bytes().decode().strip()
    if total != "1":
        sys.exit(f"trends_current should show the inserted row, got {total!r}")
    print(f"chdb {version}: {n} migration statements and {ran} README queries OK")


if __name__ == "__main__":
    main()
