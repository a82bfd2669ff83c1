"""The run report: ``report.md`` and ``report.html`` (same content) with PNG plots, from ``metrics.json``.

Tables of every model × metric × segment (mean ± std over seeds), NDCG@10 by source-history length, and a
sentence saying which model wins on cold-start test NDCG@10 and by how much over the best baseline.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from tfrec_xcat.evaluation.metrics import metric_names
from tfrec_xcat.recommender import BASELINES as BASELINE_NAMES

SEGMENT_TITLES = {
    "cold_start_test": "Cold-start test users (the headline)",
    "cold_start_val": "Cold-start validation users (used for model selection)",
    "warm_test": "Warm test users (last target interaction held out)",
}
HEADLINE = "ndcg@10"


def _cell(stats: dict[str, float], name: str) -> str:
    std = stats.get(f"{name}_std", 0.0)
    return f"{stats[name]:.4f} ± {std:.4f}" if std else f"{stats[name]:.4f}"


def verdict(metrics: dict[str, Any]) -> str:
    """Which model wins on cold-start test NDCG@10, and by how much over the best baseline."""
    models = metrics["models"]
    score = {name: r["cold_start_test"][HEADLINE] for name, r in models.items()}
    winner = max(score, key=lambda n: score[n])
    baselines = [n for n in score if n in BASELINE_NAMES]
    others = [n for n in score if n not in BASELINE_NAMES]
    text = f"Best on cold-start test {HEADLINE.upper()}: **{winner}** ({score[winner]:.4f})."
    if winner in BASELINE_NAMES:
        rest = [n for n in baselines if n != winner]
        if rest:
            second = max(rest, key=lambda n: score[n])
            gain = (score[winner] / score[second] - 1) * 100 if score[second] > 0 else float("inf")
            text += f" The runner-up baseline is {second} ({score[second]:.4f}); {winner} leads by {gain:+.1f}%."
        if not others:
            text += " No transfer model was part of this run."
        return text
    if baselines:
        best = max(baselines, key=lambda n: score[n])
        gain = (score[winner] / score[best] - 1) * 100 if score[best] > 0 else float("inf")
        text += f" Best baseline: {best} ({score[best]:.4f}); {winner} beats it by {gain:+.1f}%."
    return text


def _tables(metrics: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    names = metric_names()
    if any("rmse" in r["cold_start_test"] for r in metrics["models"].values()):
        names += ["mae", "rmse"]  # rating error, for the models that predict ratings
    tables = []
    for segment, title in SEGMENT_TITLES.items():
        header = ["model", *names, "users"]
        rows = [
            [model, *(_cell(r[segment], n) if n in r[segment] else "-" for n in names), f"{r[segment]['users']:.0f}"]
            for model, r in metrics["models"].items()
        ]
        tables.append((title, header, rows))
    buckets = next(iter(metrics["models"].values()))["cold_start_test_by_history"]
    header = ["model", *(f"{b} ({s['users']:.0f} users)" for b, s in buckets.items())]
    rows = [
        [model, *(_cell(r["cold_start_test_by_history"][b], HEADLINE) for b in buckets)]
        for model, r in metrics["models"].items()
    ]
    tables.append((f"Cold-start test {HEADLINE.upper()} by source-history length", header, rows))
    cost = [
        [model, f"{r['train_seconds']:.2f}", f"{r['examples_per_second']:,.0f}", json_params(r["params"])]
        for model, r in metrics["models"].items()
    ]
    tables.append(
        ("Training cost and chosen settings", ["model", "train seconds", "examples/s", "chosen (per seed)"], cost)
    )
    return tables


def json_params(params: list[dict[str, Any]]) -> str:
    return "; ".join(", ".join(f"{k}={v}" for k, v in p.items()) or "-" for p in params)


def plot(metrics: dict[str, Any], out: Path) -> list[str]:
    """Write the PNG plots; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models = list(metrics["models"])
    written = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, name in zip(axes, ("ndcg@10", "recall@50"), strict=True):
        means = [metrics["models"][m]["cold_start_test"][name] for m in models]
        stds = [metrics["models"][m]["cold_start_test"].get(f"{name}_std", 0.0) for m in models]
        ax.bar(models, means, yerr=stds, capsize=4, color=["#888" if m in BASELINE_NAMES else "#2a7" for m in models])
        ax.set_title(f"cold-start test {name}")
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(out / "models.png", dpi=110)
    plt.close(fig)
    written.append("models.png")

    fig, ax = plt.subplots(figsize=(8, 4))
    buckets = list(next(iter(metrics["models"].values()))["cold_start_test_by_history"])
    width = 0.8 / max(len(models), 1)
    for i, m in enumerate(models):
        stats = metrics["models"][m]["cold_start_test_by_history"]
        ax.bar(np.arange(len(buckets)) + i * width, [stats[b][HEADLINE] for b in buckets], width, label=m)
    ax.set_xticks(np.arange(len(buckets)) + 0.4 - width / 2, buckets)
    ax.set_xlabel("source-history length")
    ax.set_ylabel(HEADLINE)
    ax.set_title(f"cold-start test {HEADLINE} by source-history length")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "history.png", dpi=110)
    plt.close(fig)
    written.append("history.png")

    curves = {m: r["history"] for m, r in metrics["models"].items() if r.get("history")}
    if curves:
        fig, ax = plt.subplots(figsize=(8, 4))
        for m, hist in curves.items():
            ax.plot(range(1, len(hist) + 1), hist, marker="o", label=m)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"cold-start val {HEADLINE}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "training.png", dpi=110)
        plt.close(fig)
        written.append("training.png")
    return written


def _intro(metrics: dict[str, Any]) -> list[str]:
    sizes = metrics["split"]["sizes"]
    first = next(iter(sizes.values()))
    return [
        f"Data: `{metrics['data']}`; transfer {metrics['source']} → {metrics['target']}; "
        f"seeds {', '.join(map(str, metrics['seeds']))} (mean ± std over seeds).",
        f"Split (seed {next(iter(sizes))}): {first['cold_start_test_users']:,} cold-start test users, "
        f"{first['cold_start_val_users']:,} validation users, {first['warm_test_users']:,} warm test users, "
        f"{first['train_interactions']:,} training interactions. Rankings are over ALL target items.",
    ]


def write_report(metrics: dict[str, Any], out: Path) -> None:
    """Write ``report.md``, ``report.html`` and the plots into ``out``."""
    images = plot(metrics, out)
    tables = _tables(metrics)
    md = ["# tfrec-xcat run report", "", *_intro(metrics), "", verdict(metrics), ""]
    for title, header, rows in tables:
        md += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(r) + " |" for r in rows]
        md.append("")
    md += ["## Plots", ""] + [f"![{name}]({name})" for name in images] + [""]
    (out / "report.md").write_text("\n".join(md))

    def esc(text: str) -> str:
        return html.escape(text).replace("**", "")

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>tfrec-xcat report</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse;"
        "margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,"
        "th:first-child{text-align:left}</style></head><body><h1>tfrec-xcat run report</h1>",
        *(f"<p>{esc(p)}</p>" for p in _intro(metrics)),
        f"<p><b>{esc(verdict(metrics))}</b></p>",
    ]
    for title, header, rows in tables:
        parts.append(f"<h2>{esc(title)}</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</table>")
    parts += ["<h2>Plots</h2>", *(f"<p><img src='{n}' alt='{n}'></p>" for n in images), "</body></html>"]
    (out / "report.html").write_text("\n".join(parts))
