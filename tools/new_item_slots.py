"""The new-arrival slots measured (docs/results.md, sessions 8 and 9): ``python tools/new_item_slots.py DATA SOURCE
TARGET SEED OUT``. Fit transfer + content_knn once on a split with ``new_item_fraction = 0.1``, then measure the
shipped rule (``Transfer.score`` with ``[ranker] new_item_slots`` s and ``new_item_order`` deep / content / mix)
for s in 0, 1, 3, 5: the cold-start NDCG@10 and the new-item NDCG@10 (full ranking), on validation and test, and
paired bootstraps against content_knn (new items) and against no slots (cold-start)."""

import json
import os
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
from pathlib import Path

import numpy as np
import pandas as pd

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
print("transfer fitted", tr.choices["chosen"], tr.choices.get("content"), time.time() - t0, flush=True)

# the shipped rule (Transfer.score with new_item_slots / new_item_order), the stage's and the deep model's scores
# cached per block of users so each setting costs only the slots
cache: dict[tuple[str, bytes], np.ndarray] = {}


def cached(name, fn):
    def wrapped(rows):
        key = (name, np.asarray(rows).tobytes())
        if key not in cache:
            cache[key] = fn(rows)
        return cache[key]

    return wrapped


tr._stage_scores = cached("stage", tr._stage_scores)
tr.deep.score = cached("deep", tr.deep.score)
tr.content_scores = cached("content", tr.content_scores)

results = {}
per_user = {}
for name in ("deep", "content", "mix"):
    for s in (0, 1, 3, 5):
        if s == 0 and name != "deep":
            continue
        tr.new_item_slots, tr.new_item_order = s, name
        row = {}
        for seg in ("cold_start_val", "cold_start_test"):
            f = evaluate_segment(tr.score, m, seg)
            row[seg] = summarize(f)["ndcg@10"]
            if seg == "cold_start_test":
                per_user[(name, s, seg)] = f.set_index("user_row")["ndcg@10"]
        for seg in ("new_items_val", "new_items"):
            f = evaluate_new_items(tr.score, m, seg)["full"]
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
# the new-item segment by kind of user: cold-start test users (no target history; validation has only these) and
# warm test users; the slot rule is per user, so a rule that orders by one setting for cold-start users and by
# another for warm users has exactly these per-user values
cold = set(m.segment_users["cold_start_test"].tolist())
split = {}
for key, series in per_user.items():
    if key[2] == "new_items":
        is_cold = series.index.isin(list(cold))
        split[f"{key[0]}/{key[1]}"] = {
            "cold": float(series[is_cold].mean()),
            "warm": float(series[~is_cold].mean()),
            "users_cold": int(is_cold.sum()),
            "users_warm": int((~is_cold).sum()),
        }
        print("new items by user", key[:2], {k: round(v, 4) for k, v in split[f"{key[0]}/{key[1]}"].items()})
is_cold_ck = ck_new.index.isin(list(cold))
split["content_knn"] = {"cold": float(ck_new[is_cold_ck].mean()), "warm": float(ck_new[~is_cold_ck].mean())}
print("new items by user content_knn", split["content_knn"])
for s in (1, 3, 5):
    combined = per_user[("deep", s, "new_items")].where(
        per_user[("deep", s, "new_items")].index.isin(list(cold)), per_user[("mix", s, "new_items")]
    )
    b = paired_bootstrap(combined.reindex(ck_new.index).to_numpy(), ck_new.to_numpy())
    split[f"deep-cold+mix-warm/{s}"] = {"new_items": float(combined.mean()), "boot": b}
    print(
        "deep for cold-start users, mix for warm",
        s,
        round(float(combined.mean()), 4),
        f"{b['mean_diff']:+.4f} [{b['ci_low']:+.4f}, {b['ci_high']:+.4f}]",
    )
pd.DataFrame({f"{k[0]}/{k[1]}/{k[2]}": v for k, v in per_user.items()}).to_parquet(out / "per_user.parquet")
(out / "slots.json").write_text(
    json.dumps({"results": results, "boot": boot, "split": split, "choices": tr.choices}, default=str, indent=1)
)
print("done", time.time() - t0)
