"""Print markdown tables from one or more run directories' metrics.json (for docs/results.md).

python tools/results_table.py runs/fk-baselines runs/fk-transfer --title "Food → Kitchen"
python tools/results_table.py --bar runs/fk-s0 runs/fk-s1 runs/fk-s2      # transfer vs the best baseline, per seed
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

METRICS = ("ndcg@10", "recall@10", "recall@50", "mrr")
SEGMENTS = (("cold_start_test", "cold-start test"), ("cold_start_val", "cold-start val"), ("warm_test", "warm test"))


def cell(stats: dict, name: str) -> str:
    std = stats.get(f"{name}_std")
    return f"{stats[name]:.4f} ± {std:.4f}" if std else f"{stats[name]:.4f}"


def bar_table(runs: list[Path]) -> None:
    """Per seed: transfer and the best baseline (on cold-start test) NDCG@10, their ratio, the paired bootstrap
    interval of the difference, and which final scorer transfer chose on validation; then the means."""
    print("| seed | transfer | best baseline | ratio | difference [95% interval] | transfer chose (val) |")
    print("|---|---|---|---|---|---|")
    ratios, ours_all, theirs_all = [], [], []
    for run in runs:
        metrics = json.loads((run / "metrics.json").read_text())
        models = metrics["models"]
        for i, boot in enumerate(models["transfer"].get("bootstrap", [])):
            name = boot["baseline"]
            ours = models["transfer"]["cold_start_test"]["ndcg@10"]
            theirs = models[name]["cold_start_test"]["ndcg@10"]
            chosen = models["transfer"]["choices"][i]["chosen"]
            how = chosen["stage"] + (f" N={chosen['candidates']}" if "candidates" in chosen else "")
            ratios.append(ours / theirs)
            ours_all.append(ours)
            theirs_all.append(theirs)
            interval = f"{boot['mean_diff']:+.4f} [{boot['ci_low']:+.4f}, {boot['ci_high']:+.4f}]"
            print(
                f"| {boot['seed']} | {ours:.4f} | {theirs:.4f} ({name}) | {ours / theirs:.3f} | {interval} | "
                f"{how} ({chosen['val']:.4f}) |"
            )
    if ratios:
        mean_ours, mean_theirs = sum(ours_all) / len(ours_all), sum(theirs_all) / len(theirs_all)
        print(f"| mean | {mean_ours:.4f} | {mean_theirs:.4f} | {mean_ours / mean_theirs:.3f} | | |")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--title", default="")
    parser.add_argument("--bar", action="store_true", help="transfer vs the best baseline per seed (bootstrap)")
    args = parser.parse_args()
    if args.bar:
        bar_table(args.runs)
        return
    models: dict[str, dict] = {}
    seeds = set()
    for run in args.runs:
        metrics = json.loads((run / "metrics.json").read_text())
        seeds.add(tuple(metrics["seeds"]))
        models.update(metrics["models"])
    if args.title:
        print(f"### {args.title}\n")
    print(f"Seeds: {', '.join(str(list(s)) for s in seeds)}; mean ± std over seeds.\n")
    header = ["model"] + [f"{label} {m}" for key, label in SEGMENTS[:1] for m in METRICS]
    header += ["val ndcg@10", "warm ndcg@10", "train s"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, r in models.items():
        row = [name, *(cell(r["cold_start_test"], m) for m in METRICS)]
        row += [cell(r["cold_start_val"], "ndcg@10"), cell(r["warm_test"], "ndcg@10"), f"{r['train_seconds']:.0f}"]
        print("| " + " | ".join(row) + " |")
    print()
    buckets = next(iter(models.values()))["cold_start_test_by_history"]
    print("Cold-start test NDCG@10 by source-history length:\n")
    print("| model | " + " | ".join(f"{b} ({s['users']:.0f} users)" for b, s in buckets.items()) + " |")
    print("|" + "---|" * (len(buckets) + 1))
    for name, r in models.items():
        print(f"| {name} | " + " | ".join(cell(r["cold_start_test_by_history"][b], "ndcg@10") for b in buckets) + " |")
    print()


if __name__ == "__main__":
    main()
