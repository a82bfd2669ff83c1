"""The new-arrival slots measured (docs/results.md, session 8): ``python tools/new_item_slots.py DATA SOURCE TARGET
SEED OUT``. Fit transfer + content_knn once on a new-item split, then measure, for s
reserved positions at the end of the top 10 filled by the best new items (by a slot scorer), the cold-start NDCG@10
and the new-item NDCG@10 (full ranking), on validation and test. ``slotted`` orders as
:func:`tfrec_xcat.training.new_arrivals.reserve` does (head, then the best new items, then the rest); the
``bm25`` and ``mix`` orders are lab-only (not in the exported graph).

A new-arrivals slot policy. Fit transfer + content_knn once on a new-item split, then measure, for s
reserved positions at the end of the top 10 filled by the best new items (by a slot scorer), the cold-start NDCG@10
and the new-item NDCG@10 (full ranking), on validation and test."""

import json
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
from pathlib import Path

import numpy as np

from tfrec_xcat.baselines.content_knn import ContentKnn
from tfrec_xcat.config import load_config
from tfrec_xcat.evaluation.bootstrap import paired_bootstrap
from tfrec_xcat.evaluation.evaluate import evaluate_new_items, evaluate_segment, summarize
from tfrec_xcat.pipeline import load_data, prepare_seed
from tfrec_xcat.training.hybrid import Transfer, popularity_of

data_dir, source, target, seed, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), Path(sys.argv[5])
out.mkdir(parents=True, exist_ok=True)
config = load_config(
    None,
    {
        "data": {"path": data_dir, "source": source, "target": target},
        "split": {"new_item_fraction": 0.1},
        "run": {"seeds": [seed]},
    },
)
t0 = time.time()
data = load_data(config)
prepared = prepare_seed(config, seed, data, workdir=out / "work")
m = prepared.m
new = popularity_of(m) == 0
print("new/unseen items", int(new.sum()), "of", len(new), flush=True)

ck_best = None
for params in ContentKnn.grid:
    ck = ContentKnn(**params)
    ck.fit(prepared)
    v = prepared.validate(ck.score)
    if ck_best is None or v > ck_best[0]:
        ck_best = (v, ck, params)
print("content_knn", ck_best[2], ck_best[0], time.time() - t0, flush=True)
ck = ck_best[1]

tr = Transfer()
tr.fit(prepared.in_workdir("transfer"))
print("transfer fitted", tr.choices["chosen"], time.time() - t0, flush=True)


def slotted(base: np.ndarray, slot: np.ndarray, s: int, k: int = 10) -> np.ndarray:
    if s == 0:
        return base
    order = np.argsort(-base, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(order.shape[1])[None, :].repeat(len(order), 0), axis=1)
    out = -ranks.astype(np.float64)
    head = ranks < (k - s)
    cand = np.where(new[None, :] & ~head, slot, -np.inf)
    top = np.argsort(-cand, axis=1, kind="stable")[:, :s]
    for j in range(s):
        out[np.arange(len(base)), top[:, j]] = -(k - s - 1) - 0.5 - 0.01 * j
    return out


deep_cache = {}


def deep(rows):
    return np.asarray(tr.deep.score(rows), dtype=np.float64)


def bm25(rows):
    return np.asarray(ck.score(rows), dtype=np.float64)


def mix(rows):
    d, b = deep(rows), bm25(rows)
    d = np.where(new[None, :], d, np.nan)
    b = np.where(new[None, :], b, np.nan)

    def z(x):
        return (x - np.nanmean(x, 1, keepdims=True)) / (np.nanstd(x, 1, keepdims=True) + 1e-12)

    return np.nan_to_num(z(d) + z(b), nan=-np.inf)


results = {}
per_user = {}
for name, slot in (("deep", deep), ("bm25", bm25), ("mix", mix)):
    for s in (0, 1, 2, 3, 5):
        if s == 0 and name != "deep":
            continue

        def scorer(rows, s=s, slot=slot):
            return slotted(np.asarray(tr.score(rows), dtype=np.float64), slot(rows), s)

        row = {}
        for seg in ("cold_start_val", "cold_start_test"):
            f = evaluate_segment(scorer, m, seg)
            row[seg] = summarize(f)["ndcg@10"]
            if seg == "cold_start_test":
                per_user[(name, s, seg)] = f.set_index("user_row")["ndcg@10"]
        for seg in ("new_items_val", "new_items"):
            f = evaluate_new_items(scorer, m, seg)["full"]
            row[seg] = summarize(f)["ndcg@10"]
            if seg == "new_items":
                per_user[(name, s, seg)] = f.set_index("user_row")["ndcg@10"]
        results[f"{name}/{s}"] = row
        print(name, s, {k: round(v, 4) for k, v in row.items()}, round(time.time() - t0), flush=True)

ckrow = {}
for seg in ("cold_start_val", "cold_start_test"):
    ckrow[seg] = summarize(evaluate_segment(ck.score, m, seg))["ndcg@10"]
for seg in ("new_items_val", "new_items"):
    f = evaluate_new_items(ck.score, m, seg)["full"]
    ckrow[seg] = summarize(f)["ndcg@10"]
    if seg == "new_items":
        ck_new = f.set_index("user_row")["ndcg@10"]
results["content_knn"] = ckrow
print("content_knn", {k: round(v, 4) for k, v in ckrow.items()}, flush=True)
boot = {}
for key, series in per_user.items():
    if key[2] == "new_items":
        a = series.reindex(ck_new.index).to_numpy()
        boot[f"{key[0]}/{key[1]}"] = paired_bootstrap(a, ck_new.to_numpy())
        b = boot[f"{key[0]}/{key[1]}"]
        print("vs content_knn new_items", key[:2], f"{b['mean_diff']:+.4f} [{b['ci_low']:+.4f}, {b['ci_high']:+.4f}]")
base = per_user[("deep", 0, "cold_start_test")]
for key, series in per_user.items():
    if key[2] == "cold_start_test" and key[1] > 0:
        b = paired_bootstrap(series.reindex(base.index).to_numpy(), base.to_numpy())
        print("cold-start cost", key[:2], f"{b['mean_diff']:+.4f} [{b['ci_low']:+.4f}, {b['ci_high']:+.4f}]")
(out / "slots.json").write_text(
    json.dumps({"results": results, "boot": boot, "choices": tr.choices}, default=str, indent=1)
)
print("done", time.time() - t0)
