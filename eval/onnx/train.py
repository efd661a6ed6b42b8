#!/usr/bin/env python3
"""Train vigie's small ONNX sentiment classifier (TF-IDF + logistic regression).

Reads the *tune* sets only (eval/data/vigie-{en,fr}-tune.ndjson), never the
holdout sets, which are used here for evaluation and nothing else.  Writes
eval/onnx/sentiment.onnx, a graph that takes raw strings: the lower-casing,
the tokenizer, the n-grams and the TF-IDF weights live inside the graph
(StringNormalizer -> Tokenizer -> TfIdfVectorizer -> ... -> Scan(LinearClassifier)).

Graph contract (see README.md):
  input   "text"           string  [N, 1]
  output  "label"          int64   [N]     0 = negative, 1 = neutral, 2 = positive
  output  "probabilities"  float32 [N, 3]  columns in that same order

The StringNormalizer in the graph uses the "C" locale, which exists on every
libc (ONNX Runtime's default, en_US.UTF-8, is missing from most containers and
makes session creation fail) but lower-cases ASCII only.  Callers therefore
lower-case the text with full Unicode rules before feeding it (Rust:
str::to_lowercase, Python: str.lower); the Rust scorer does it for you.

Usage:
  pip install -r eval/onnx/requirements.txt
  python eval/onnx/train.py [--data-dir eval/data] [--out eval/onnx/sentiment.onnx]
                            [--reference-out /tmp/reference.json]
Deterministic: fixed random_state, fixed hyper-parameter grid, stable ordering.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper
import skl2onnx
import sklearn
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import StringTensorType
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

# Class index order of the `probabilities` columns and of the int64 `label`.
CLASSES = ["negative", "neutral", "positive"]
LANGS = ["en", "fr"]
SEED = 0

# One token pattern that means the same thing to Python's `re` (scikit-learn)
# and to RE2 (ONNX Runtime's Tokenizer).  RE2's \w is ASCII-only, so letters
# with accents are listed explicitly (as literal characters, which both engines
# read the same way; the text is already lower-case when it is tokenized):
#   - words of 2+ chars: ASCII letters/digits/_ and Latin-1/Latin Extended-A
#     lower-case letters (à..ö, ø..ÿ, œ, æ is in the range already);
#     apostrophes split words, so "j'adore" -> "adore";
#   - any single emoji / pictograph / dingbat / skin-tone modifier;
#   - a few ASCII emoticons (after lower-casing ":D" is ":d").
WORD = "[0-9a-z_\u00e0-\u00f6\u00f8-\u00ff\u0153]{2,}"
EMOJI = "[\U0001F300-\U0001FAFF\u2600-\u27BF\u2B50\u2B55\u2764]"
EMOTICON = "[:;=]-?[()\\[\\]dp/|]|<3"
TOKEN_PATTERN = f"{WORD}|{EMOJI}|{EMOTICON}"

# Hyper-parameter grid, chosen by stratified 5-fold CV on the tune sets only.
GRID_C = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
MIN_DF = 1
MAX_FEATURES = 30000  # keeps the .onnx well under 2 MB


def load(path: Path) -> tuple[list[str], list[int]]:
    texts, labels = [], []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            row = json.loads(line)
            label = row["label"]
            if label not in CLASSES:
                sys.exit(f"{path}:{n}: unknown label {label!r}")
            texts.append(str(row["text"]))
            labels.append(CLASSES.index(label))
    if not texts:
        sys.exit(f"{path}: empty")
    return texts, labels


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_pipeline(c: float) -> Pipeline:
    return Pipeline(
        [
            (
                "tfidf",
                TfidfVectorizer(
                    lowercase=True,
                    token_pattern=TOKEN_PATTERN,
                    ngram_range=(1, 2),
                    sublinear_tf=True,
                    min_df=MIN_DF,
                    max_features=MAX_FEATURES,
                    dtype=np.float32,
                ),
            ),
            (
                "clf",
                LogisticRegression(C=c, max_iter=5000, random_state=SEED, class_weight="balanced"),
            ),
        ]
    )


def fix_sublinear_tf(onx: onnx.ModelProto) -> onnx.ModelProto:
    """skl2onnx 1.20 writes sublinear_tf as log(tf + 1); scikit-learn computes
    1 + log(tf) for tf > 0 (and 0 for tf = 0).  Rewrite Add(tf, ones) -> Log
    into Where(tf > 0, Log(tf) + 1, 0) so the graph matches scikit-learn."""
    g = onx.graph
    inits = {i.name: i for i in g.initializer}
    nodes = list(g.node)
    for i, add in enumerate(nodes[:-1]):
        log = nodes[i + 1]
        if not (
            add.op_type == "Add"
            and log.op_type == "Log"
            and list(log.input) == [add.output[0]]
            and add.input[1] in inits
            and np.all(numpy_helper.to_array(inits[add.input[1]]) == 1)
        ):
            continue
        tf, out = add.input[0], log.output[0]
        g.initializer.remove(inits[add.input[1]])
        g.initializer.extend(
            [
                numpy_helper.from_array(np.array(1, dtype=np.float32), "sublinear_one"),
                numpy_helper.from_array(np.array(0, dtype=np.float32), "sublinear_zero"),
            ]
        )
        new = [
            helper.make_node("Log", [tf], ["sublinear_log"], name="SublinearLog"),
            helper.make_node("Add", ["sublinear_log", "sublinear_one"], ["sublinear_log1"], name="SublinearAdd"),
            helper.make_node("Greater", [tf, "sublinear_zero"], ["sublinear_pos"], name="SublinearPos"),
            helper.make_node("Where", ["sublinear_pos", "sublinear_log1", "sublinear_zero"], [out], name="SublinearWhere"),
        ]
        del g.node[:]
        g.node.extend(nodes[:i] + new + nodes[i + 2 :])
        onnx.checker.check_model(onx)
        return onx
    raise RuntimeError("sublinear_tf pattern Add(tf, ones) -> Log not found in the converted graph")


def make_batch_invariant(onx: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX Runtime's LinearClassifier runs one GEMM over the whole batch, and
    MLAS picks different kernels (summation orders) for different batch sizes:
    the same text then gets probabilities that differ in the last bit with the
    batch it is in.  Run the classifier (LinearClassifier + its L1 Normalizer)
    inside a Scan over the rows instead: every row is a [1, V] x [V, 3] product
    whatever the batch, so the outputs are bit-identical however texts are
    batched.  Everything before it (tokenizer, TF-IDF, L2 norm) is row-wise."""
    g = onx.graph
    nodes = list(g.node)
    idx = {n.op_type: i for i, n in enumerate(nodes)}
    i = idx.get("LinearClassifier")
    lin = nodes[i]
    norm = nodes[i + 1] if i + 1 < len(nodes) else None
    if norm is None or norm.op_type != "Normalizer" or list(norm.input) != [lin.output[1]] or i + 2 != len(nodes):
        raise RuntimeError("expected the graph to end with LinearClassifier -> Normalizer")
    features = lin.input[0]
    label_out, probs_out = lin.output[0], norm.output[0]

    shape_row = numpy_helper.from_array(np.array([1, -1], dtype=np.int64), "row_shape")
    body = helper.make_graph(
        [
            helper.make_node("Constant", [], ["row_shape"], value=shape_row),
            helper.make_node("Reshape", ["row", "row_shape"], ["row2d"]),
            helper.make_node(
                "LinearClassifier", ["row2d"], ["row_label", "row_raw"], domain="ai.onnx.ml",
                **{a.name: helper.get_attribute_value(a) for a in lin.attribute},
            ),
            helper.make_node(
                "Normalizer", ["row_raw"], ["row_probs"], domain="ai.onnx.ml",
                **{a.name: helper.get_attribute_value(a) for a in norm.attribute},
            ),
        ],
        "classify_row",
        [helper.make_tensor_value_info("row", onnx.TensorProto.FLOAT, [None])],
        [
            helper.make_tensor_value_info("row_label", onnx.TensorProto.INT64, [1]),
            helper.make_tensor_value_info("row_probs", onnx.TensorProto.FLOAT, [1, 3]),
        ],
    )
    g.initializer.extend(
        [
            numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat_shape"),
            numpy_helper.from_array(np.array([-1, 3], dtype=np.int64), "probs_shape"),
        ]
    )
    new = [
        helper.make_node("Scan", [features], ["scan_label", "scan_probs"], name="ClassifyRows",
                         body=body, num_scan_inputs=1),
        helper.make_node("Reshape", ["scan_label", "flat_shape"], [label_out], name="LabelShape"),
        helper.make_node("Reshape", ["scan_probs", "probs_shape"], [probs_out], name="ProbsShape"),
    ]
    del g.node[:]
    g.node.extend(nodes[:i] + new)
    onnx.checker.check_model(onx, full_check=True)
    return onx


def metrics(y_true, y_pred) -> dict:
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", labels=[0, 1, 2], zero_division=0)),
        "confusion": confusion_matrix(y_true, y_pred, labels=[0, 1, 2]).tolist(),
    }


def onnx_lower(texts: list[str]) -> np.ndarray:
    """The graph's input: Unicode-lower-cased text, shape [N, 1]."""
    return np.array([t.lower() for t in texts], dtype=object).reshape(-1, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=REPO / "eval" / "data")
    ap.add_argument("--out", type=Path, default=HERE / "sentiment.onnx")
    ap.add_argument("--reference-out", type=Path, help="write ONNX Runtime outputs on the holdout texts (JSON)")
    args = ap.parse_args()

    tune_texts, tune_y, sources = [], [], {}
    for lang in LANGS:
        p = args.data_dir / f"vigie-{lang}-tune.ndjson"
        t, y = load(p)
        tune_texts += t
        tune_y += y
        sources[p.name] = sha256(p)
        print(f"tune {lang}: {len(t)} texts, " + ", ".join(f"{c}={y.count(i)}" for i, c in enumerate(CLASSES)))
    tune_y = np.array(tune_y)

    # Model selection on the tune sets only (5-fold, or fewer on tiny data).
    folds = max(2, min(5, int(np.bincount(tune_y, minlength=3).min())))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=SEED)
    best = None
    for c in GRID_C:
        pred = cross_val_predict(make_pipeline(c), tune_texts, tune_y, cv=cv)
        f1 = f1_score(tune_y, pred, average="macro")
        print(f"  cv C={c:<5} macro-F1={f1:.4f} acc={accuracy_score(tune_y, pred):.4f}")
        if best is None or f1 > best[1] + 1e-12:
            best = (c, f1)
    c = best[0]
    print(f"chosen C={c} (cv macro-F1 {best[1]:.4f})")

    model = make_pipeline(c).fit(tune_texts, tune_y)
    assert list(model.classes_) == [0, 1, 2], model.classes_
    print(f"vocabulary: {len(model.named_steps['tfidf'].vocabulary_)} n-grams")

    onx = convert_sklearn(
        model,
        "vigie-sentiment",
        initial_types=[("text", StringTensorType([None, 1]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
        options={
            TfidfVectorizer: {"locale": "C"},
            LogisticRegression: {"zipmap": False},
        },
    )
    onx = fix_sublinear_tf(onx)
    onx = make_batch_invariant(onx)
    # skl2onnx collects opsets in a set: sort them so the file is byte-reproducible.
    opsets = sorted((o.domain, o.version) for o in onx.opset_import)
    del onx.opset_import[:]
    onx.opset_import.extend(helper.make_opsetid(d, v) for d, v in opsets)
    onx.doc_string = (
        "vigie sentiment: TF-IDF (1-2 grams) + logistic regression. "
        "Input 'text' string [N,1], Unicode-lower-cased by the caller. "
        "Outputs 'label' int64 [N] and 'probabilities' float32 [N,3], classes "
        + ",".join(CLASSES)
    )
    meta = {
        "classes": ",".join(CLASSES),
        "token_pattern": TOKEN_PATTERN,
        "input_lowercase": "unicode, by the caller",
        "C": str(c),
        "train_data": json.dumps(sources, sort_keys=True),
        "versions": f"scikit-learn {sklearn.__version__}, skl2onnx {skl2onnx.__version__}, onnx {onnx.__version__}",
    }
    for k, v in meta.items():
        p = onx.metadata_props.add()
        p.key, p.value = k, v
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(onx.SerializeToString())
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size} bytes, {size / 1048576:.2f} MiB)")
    if size >= 2 * 1048576:
        sys.exit("model is 2 MiB or more: lower MAX_FEATURES")

    out_names = [o.name for o in onx.graph.output]
    assert out_names == ["label", "probabilities"], out_names
    sess = ort.InferenceSession(str(args.out), providers=["CPUExecutionProvider"])

    # Held-out evaluation + agreement scikit-learn <-> ONNX Runtime.
    all_texts, all_y = list(tune_texts), list(tune_y)
    reference = {"classes": CLASSES, "onnxruntime": ort.__version__, "sets": {}}
    report = {}
    for lang in LANGS:
        p = args.data_dir / f"vigie-{lang}-holdout.ndjson"
        if not p.exists():
            print(f"holdout {lang}: {p} missing, skipped")
            continue
        t, y = load(p)
        all_texts += t
        all_y += y
        sk_pred = model.predict(t)
        label, probs = sess.run(None, {"text": onnx_lower(t)})
        m_sk, m_onnx = metrics(y, sk_pred), metrics(y, label)
        report[lang] = m_onnx
        print(
            f"holdout {lang}: n={len(t)} accuracy={m_onnx['accuracy']:.4f} macro-F1={m_onnx['macro_f1']:.4f} "
            f"(scikit-learn: {m_sk['accuracy']:.4f} / {m_sk['macro_f1']:.4f}) confusion(rows=true {CLASSES})={m_onnx['confusion']}"
        )
        reference["sets"][p.name] = [
            {"text": tx, "label": int(l), "probabilities": [float(x) for x in pr]}
            for tx, l, pr in zip(t, label, probs)
        ]

    sk_label = model.predict(all_texts)
    sk_probs = model.predict_proba(all_texts)
    label, probs = sess.run(None, {"text": onnx_lower(all_texts)})
    agree = float(np.mean(sk_label == label))
    max_diff = float(np.abs(sk_probs - probs).max())
    print(
        f"scikit-learn vs onnxruntime {ort.__version__} on {len(all_texts)} tune+holdout texts: "
        f"label agreement {100 * agree:.2f}%, max |dprob| {max_diff:.2e}"
    )
    # argmax(probabilities) is the label (ties aside): what the Rust scorer relies on.
    assert (np.argmax(probs, axis=1) == label).mean() > 0.999

    # Batch invariance: each text alone, in chunks of 7 and 64, and all at once
    # must give bit-identical probabilities.
    lowered = onnx_lower(all_texts)
    alone = np.concatenate([sess.run(["probabilities"], {"text": lowered[i : i + 1]})[0] for i in range(len(lowered))])
    for bs in (7, 64, len(lowered)):
        chunked = np.concatenate(
            [sess.run(["probabilities"], {"text": lowered[i : i + bs]})[0] for i in range(0, len(lowered), bs)]
        )
        if not np.array_equal(alone.view(np.uint32), chunked.view(np.uint32)):
            sys.exit(f"batch size {bs}: probabilities are not bit-identical to single-text runs")
    print("batch invariance: bit-identical alone / 7 / 64 / all")

    if args.reference_out:
        reference["agreement"] = agree
        reference["max_prob_diff_vs_sklearn"] = max_diff
        reference["holdout"] = report
        args.reference_out.write_text(json.dumps(reference, ensure_ascii=False, indent=1), encoding="utf-8")
        print(f"wrote {args.reference_out}")


if __name__ == "__main__":
    main()
