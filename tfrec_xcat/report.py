"""The run report: ``report.md`` and ``report.html`` (same content), with SVG plots, from ``metrics.json``.

``report.html`` is one self-contained page (plots inlined as SVG, no scripts, no external assets), laid out for
the reader who opens it: a headline (the winner, its lift over the best baseline and, when ``metrics.json`` has
it, the paired-bootstrap interval per seed), then the plots, then the tables with the best value of each column
marked. ``report.md`` says the same and links the same plots, written next to it as ``*.svg`` files.

Every model keeps one colour (and marker) in every plot: the hue says its family (count baselines, linear
mappings, the target-only two-tower, transfer variants), the shade and marker which member it is. Seeds are drawn
as points when there are fewer than three (an error bar over one or two seeds says nothing), as error bars (one
standard deviation) from three on.

``models[name]["bootstrap"]`` (optional) is the paired bootstrap of ``name`` minus a baseline on cold-start test
NDCG@10: one mapping with ``mean_diff``, ``rel_lift`` (a fraction: 0.12 is +12%), ``ci_low``, ``ci_high`` (the 95%
interval of the difference) and ``baseline``; per seed as a list of such mappings (each may name its ``seed``)
or as a mapping from seed to one. Anything missing is left out of the report, never guessed.
"""

from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass
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
#: New-item segments (present when the split had ``new_item_fraction`` > 0) and the columns shown for them.
NEW_ITEM_TITLES = {
    "new_items": "New items: test users' held-out interactions with items that had no training interaction",
    "new_items_val": "New items: validation users (reported only; selection uses cold-start validation)",
}
NEW_ITEM_COLUMNS = {
    "ndcg@10 (all items)": ("full", "ndcg@10"),
    "recall@50 (all items)": ("full", "recall@50"),
    "ndcg@10 (among new)": ("among_new", "ndcg@10"),
    "recall@50 (among new)": ("among_new", "recall@50"),
}
LOWER_IS_BETTER = frozenset({"mae", "rmse"})

# ------------------------------------------------------------------------------------------ model styles
# Families in legend order: (label, shades from dark to light). Members take shades in KNOWN_ORDER, so a
# model has the same colour in every plot and in every run, whichever other models ran with it.
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "count": ("item-to-item baselines", ("#525252", "#969696", "#bdbdbd", "#737373", "#d9d9d9")),
    "mapping": ("linear-mapping baselines", ("#6a51a3", "#9e9ac8", "#3f007d")),
    "target_only": ("target-only two-tower", ("#d95f02", "#fdae6b")),
    "transfer": (
        "transfer variants",
        ("#00796b", "#1b9e77", "#006d2c", "#41ab5d", "#66c2a4", "#238b45", "#a1d99b", "#00441b", "#2ca25f"),
    ),
    "other": ("other models", ("#e7298a", "#c51b7d", "#f768a1", "#ae017e")),
}
FAMILY_OF = {
    "popularity": "count",
    "cooccurrence": "count",
    "itemknn": "count",
    "rp3beta": "count",
    "content_knn": "count",
    "ridge_map": "mapping",
    "emcdr": "mapping",
    "target_only": "target_only",
}
KNOWN_ORDER = (
    "popularity",
    "cooccurrence",
    "itemknn",
    "rp3beta",
    "content_knn",
    "ridge_map",
    "emcdr",
    "target_only",
    "transfer",
    "transfer_full",
    "transfer_deep",
    "transfer_wide_deep",
    "transfer_frozen",
    "transfer_partial",
    "transfer_joint",
    "transfer_no_grl",
    "transfer_id_only",
)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h")


@dataclass(frozen=True)
class Style:
    family: str
    color: str
    marker: str


def family(name: str) -> str:
    if name in FAMILY_OF:
        return FAMILY_OF[name]
    if name.startswith("transfer"):
        return "transfer"
    return "other"


def model_styles(names: list[str]) -> dict[str, Style]:
    """One colour and marker per model: the family's hue, the member's shade (stable across runs)."""
    rank = {n: i for i, n in enumerate(KNOWN_ORDER)}
    styles = {}
    for fam in FAMILIES:
        members = sorted((n for n in names if family(n) == fam), key=lambda n: (rank.get(n, len(rank)), n))
        known = [n for n in KNOWN_ORDER if family(n) == fam]
        shades = FAMILIES[fam][1]
        for i, name in enumerate(members):
            slot = known.index(name) if name in known else len(known) + i
            styles[name] = Style(fam, shades[slot % len(shades)], MARKERS[slot % len(MARKERS)])
    return styles


# ------------------------------------------------------------------------------------------ text helpers
def _best(values: dict[str, float], metric: str) -> float | None:
    if not values:
        return None
    return min(values.values()) if metric in LOWER_IS_BETTER else max(values.values())


def _cell(stats: dict[str, float], name: str) -> str:
    std = stats.get(f"{name}_std", 0.0)
    return f"{stats[name]:.4f} ± {std:.4f}" if std else f"{stats[name]:.4f}"


def _inline_html(text: str) -> str:
    """The tiny Markdown subset the report's sentences use (``**bold**``, ```code```) as escaped HTML."""
    out = html.escape(text, quote=False)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


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


BOOTSTRAP_KEYS = ("mean_diff", "rel_lift", "ci_low", "ci_high", "baseline")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value  # not NaN


def _has_interval(e: dict[str, Any]) -> bool:
    return _number(e.get("ci_low")) and _number(e.get("ci_high"))


def bootstrap_entries(entry: Any, seeds: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    """``models[name]["bootstrap"]`` in any of its documented shapes as (seed, result) pairs; [] when absent.
    Also accepted: a mapping whose ``per_seed`` (or ``seeds``) list holds the per-seed results, its other keys
    (e.g. ``baseline``) applying to each."""
    if not entry:
        return []
    if isinstance(entry, dict) and isinstance(entry.get("per_seed", entry.get("seeds")), list):
        shared = {k: v for k, v in entry.items() if k not in ("per_seed", "seeds")}
        entry = [{**shared, **e} for e in entry.get("per_seed", entry.get("seeds")) if isinstance(e, dict)]
    if isinstance(entry, dict) and any(k in entry for k in BOOTSTRAP_KEYS):
        seed = entry.get("seed", seeds[0] if len(seeds) == 1 else "all")
        pairs = [(str(seed), entry)]
    elif isinstance(entry, dict):
        pairs = [(str(seed), value) for seed, value in entry.items()]
    elif isinstance(entry, list):
        pairs = [
            (str(e.get("seed", seeds[i] if i < len(seeds) else i)), e)
            for i, e in enumerate(entry)
            if isinstance(e, dict)
        ]
    else:
        return []
    return [(seed, e) for seed, e in pairs if isinstance(e, dict) and _number(e.get("mean_diff"))]


def _signed(value: Any, digits: int = 4) -> str:
    return f"{float(value):+.{digits}f}" if _number(value) else "?"


def bootstrap_lines(metrics: dict[str, Any]) -> list[str]:
    """One sentence per model with a paired bootstrap: its difference to the baseline, 95% interval, lift."""
    lines = []
    for name, r in metrics["models"].items():
        entries = bootstrap_entries(r.get("bootstrap"), list(metrics.get("seeds", [])))
        if not entries:
            continue
        parts, above = [], 0
        for seed, e in entries:
            text = f"seed {seed}: {_signed(e['mean_diff'])}"
            if _has_interval(e):
                text += f" [{_signed(e['ci_low'])}, {_signed(e['ci_high'])}]"
                above += float(e["ci_low"]) > 0
            if _number(e.get("rel_lift")):
                text += f" ({e['rel_lift'] * 100:+.1f}%)"
            parts.append(text)
        baselines = sorted({str(e.get("baseline", "the best baseline")) for _, e in entries})
        with_ci = sum(_has_interval(e) for _, e in entries)
        summary = f"the interval is above 0 on {above} of {with_ci} seed(s)" if with_ci else "no interval given"
        lines.append(
            f"Paired bootstrap of **{name}** − {' / '.join(baselines)} on cold-start test {HEADLINE.upper()}, "
            f"difference [95% interval] (relative lift) — {'; '.join(parts)}; {summary}."
        )
    return lines


def headline(metrics: dict[str, Any]) -> list[str]:
    """The headline sentences: the verdict, then the bootstrap intervals when ``metrics.json`` has them."""
    return [verdict(metrics), *bootstrap_lines(metrics)]


# ------------------------------------------------------------------------------------------------ tables
@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    best: list[list[bool]]  # per cell: the best value of its column


def _metric_table(title: str, models: dict[str, Any], names: list[str], get: Any, extra: Any = None) -> Table:
    header = ["model", *names] + (["users"] if extra else [])
    rows, best = [], []
    columns = {n: {m: get(r, n)[n] for m, r in models.items() if get(r, n) is not None} for n in names}
    tops = {n: _best(columns[n], n) for n in names}
    for model, r in models.items():
        cells, marks = [model], [False]
        for n in names:
            stats = get(r, n)
            cells.append(_cell(stats, n) if stats is not None else "-")
            marks.append(stats is not None and len(models) > 1 and stats[n] == tops[n])
        if extra:
            cells.append(extra(r))
            marks.append(False)
        rows.append(cells)
        best.append(marks)
    return Table(title, header, rows, best)


def _tables(metrics: dict[str, Any]) -> list[Table]:
    models = metrics["models"]
    names = metric_names()
    if any("rmse" in r["cold_start_test"] for r in models.values()):
        names += ["mae", "rmse"]  # rating error, for the models that predict ratings
    tables = []
    for segment, title in SEGMENT_TITLES.items():

        def get(r: dict[str, Any], n: str, segment: str = segment) -> dict[str, float] | None:
            return r[segment] if n in r[segment] else None

        tables.append(_metric_table(title, models, names, get, lambda r, s=segment: f"{r[s]['users']:.0f}"))
    buckets = next(iter(models.values()))["cold_start_test_by_history"]
    by_history = _metric_table(
        f"Cold-start test {HEADLINE.upper()} by source-history length",
        models,
        list(buckets),
        lambda r, b: {b: r["cold_start_test_by_history"][b][HEADLINE], f"{b}_std": _std(r, b)},
    )
    by_history.header = ["model", *(f"{b} ({s['users']:.0f} users)" for b, s in buckets.items())]
    tables.append(by_history)
    tables += _new_item_tables(metrics)
    boot = [
        [name, seed, str(e.get("baseline", "-")), _signed(e["mean_diff"]), _interval(e), _lift(e)]
        for name, r in models.items()
        for seed, e in bootstrap_entries(r.get("bootstrap"), list(metrics.get("seeds", [])))
    ]
    if boot:
        header = ["model", "seed", "baseline", f"Δ {HEADLINE}", "95% interval", "relative lift"]
        tables.append(Table("Paired bootstrap on cold-start test users", header, boot, [[False] * 6 for _ in boot]))
    cost = [
        [model, f"{r['train_seconds']:.2f}", f"{r['examples_per_second']:,.0f}", json_params(r.get("params", []))]
        for model, r in models.items()
    ]
    tables.append(
        Table(
            "Training cost and chosen settings",
            ["model", "train seconds", "examples/s", "chosen (per seed)"],
            cost,
            [[False] * 4 for _ in cost],
        )
    )
    return tables


def _new_item_tables(metrics: dict[str, Any]) -> list[Table]:
    """The new-item segments (ranked over all target items and among new items only) and the paired bootstrap
    on them, for the runs whose split had new items."""
    tables = []
    for segment, title in NEW_ITEM_TITLES.items():
        models = {name: r for name, r in metrics["models"].items() if segment in r}
        if not models:
            continue

        def get(r: dict[str, Any], n: str, segment: str = segment) -> dict[str, float]:
            view, metric = NEW_ITEM_COLUMNS[n]
            stats = r[segment][view]
            return {n: stats[metric], f"{n}_std": stats.get(f"{metric}_std", 0.0)}

        def users(r: dict[str, Any], segment: str = segment) -> str:
            return f"{r[segment]['full']['users']:.0f}"

        tables.append(_metric_table(title, models, list(NEW_ITEM_COLUMNS), get, users))
    boot = [
        [name, seed, str(e.get("baseline", "-")), _signed(e["mean_diff"]), _interval(e), _lift(e)]
        for name, r in metrics["models"].items()
        for seed, e in bootstrap_entries(r.get("new_items_bootstrap"), list(metrics.get("seeds", [])))
    ]
    if boot:
        header = ["model", "seed", "baseline", f"Δ {HEADLINE} (all items)", "95% interval", "relative lift"]
        title = "Paired bootstrap on new items (test users, ranking over all target items)"
        tables.append(Table(title, header, boot, [[False] * 6 for _ in boot]))
    return tables


def _std(r: dict[str, Any], bucket: str) -> float:
    return r["cold_start_test_by_history"][bucket].get(f"{HEADLINE}_std", 0.0)


def _interval(e: dict[str, Any]) -> str:
    return f"[{_signed(e['ci_low'])}, {_signed(e['ci_high'])}]" if _has_interval(e) else "-"


def _lift(e: dict[str, Any]) -> str:
    return f"{e['rel_lift'] * 100:+.1f}%" if _number(e.get("rel_lift")) else "-"


def json_params(params: list[dict[str, Any]]) -> str:
    return "; ".join(", ".join(f"{k}={v}" for k, v in p.items()) or "-" for p in params)


# ------------------------------------------------------------------------------------------------- plots
@dataclass
class Figure:
    name: str  # file name of the SVG next to the report
    caption: str
    svg: str  # the SVG document, without XML prolog, ready to inline


def seed_values(stats: dict[str, float], name: str, n_seeds: int) -> list[float]:
    """The per-seed values behind a mean when they can be recovered exactly: one seed is the mean, two are
    mean ± (population) std. Empty from three seeds on (drawn as an error bar instead)."""
    if f"{name}_seeds" in stats:
        return [float(v) for v in stats[f"{name}_seeds"]]  # type: ignore[attr-defined]
    mean, std = float(stats[name]), float(stats.get(f"{name}_std", 0.0))
    if n_seeds <= 1:
        return [mean]
    if n_seeds == 2:
        return [mean - std, mean + std]
    return []


def _svg(fig: Any, prefix: str, caption: str) -> str:
    """The figure as an SVG element to inline: no XML prolog, no metadata, every id prefixed (several plots
    share one page, and matplotlib numbers each figure's ids from 1)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text[text.index("<svg") :], flags=re.S)
    text = re.sub(r'\bid="', f'id="{prefix}-', text)
    text = text.replace("url(#", f"url(#{prefix}-").replace('href="#', f'href="#{prefix}-')
    return text.replace("<svg ", f'<svg role="img" aria-label="{html.escape(caption)}" ', 1)


def _curves(r: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Per-epoch validation values and training losses of a model, from ``history`` and ``stages``."""
    history = r.get("history") or []
    loss: list[float] = []
    if isinstance(history, dict):
        loss = list(history.get("loss") or [])
        history = history.get("val") or history.get("validation") or []
    for stage in (r.get("stages") or {}).values():
        if isinstance(stage, dict):
            loss += [float(v) for v in stage.get("loss") or []]
    return [float(v) for v in history], loss


STAGE_ORDER = ("source", "joint", "target")


def logged_stages(out: Path, seed: Any, name: str) -> dict[str, Any]:
    """A neural model's per-stage training log (``done.json``: epochs, loss, validation) that ``run`` leaves in
    ``out/work/seed<seed>/<name>/stages/``, for models whose metrics.json entry has no ``stages``; {} if none."""
    import json

    found = {}
    for path in sorted((Path(out) / "work" / f"seed{seed}" / name / "stages").glob("*/done.json")):
        try:
            found[path.parent.name] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    rank = {s: i for i, s in enumerate(STAGE_ORDER)}
    return dict(sorted(found.items(), key=lambda kv: rank.get(kv[0], len(rank))))


def plot(metrics: dict[str, Any], out: Path) -> list[Figure]:
    """Write the SVG plots into ``out``; returns them (name, caption, inline SVG) in reading order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    models = metrics["models"]
    names = list(models)
    styles = model_styles(names)
    n_seeds = len(metrics.get("seeds") or [0])
    figures = []
    rc = {"svg.fonttype": "none", "svg.hashsalt": "tfrec-xcat", "font.size": 10, "axes.titleweight": "bold"}
    with plt.rc_context(rc):
        # 1. the headline metrics, one horizontal bar per model (labels stay readable however many models)
        order = sorted(names, key=lambda m: models[m]["cold_start_test"][HEADLINE])
        fig, axes = plt.subplots(1, 2, figsize=(11, 1.6 + 0.32 * len(order)), sharey=True)
        baseline_best = [m for m in names if m in BASELINE_NAMES]
        for ax, metric in zip(axes, (HEADLINE, "recall@50"), strict=True):
            for y, m in enumerate(order):
                stats = models[m]["cold_start_test"]
                ax.barh(y, stats[metric], height=0.7, color=styles[m].color, edgecolor="white")
                points = seed_values(stats, metric, n_seeds)
                if points:
                    ax.plot(points, [y] * len(points), "o", ms=5, mfc="white", mec="black", mew=1, zorder=3)
                else:
                    ax.errorbar(stats[metric], y, xerr=stats.get(f"{metric}_std", 0.0), fmt="none", ecolor="black")
            if baseline_best:
                top = max(models[m]["cold_start_test"][metric] for m in baseline_best)
                ax.axvline(top, color="black", ls="--", lw=1)
            ax.set_yticks(range(len(order)), order)
            ax.set_xlabel(f"{metric} (mean over {n_seeds} seed{'s' if n_seeds != 1 else ''})")
            ax.set_title(f"Cold-start test {metric.upper()}")
            ax.grid(axis="x", alpha=0.3)
            ax.set_axisbelow(True)
        axes[0].set_ylabel("model")
        first = {f: next(s.color for s in styles.values() if s.family == f) for f in _families(styles)}
        handles: list[Any] = [Patch(color=first[f], label=FAMILIES[f][0]) for f in _families(styles)]
        seeds_label = "one seed" if n_seeds == 1 else "seeds" if n_seeds == 2 else "± 1 std over seeds"
        if n_seeds < 3:
            handles.append(Line2D([], [], ls="", marker="o", mfc="white", mec="black", label=seeds_label))
        else:
            handles.append(Line2D([], [], color="black", marker="|", ls="-", label=seeds_label))
        if baseline_best:
            handles.append(Line2D([], [], color="black", ls="--", lw=1, label="best baseline"))
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False)
        fig.tight_layout(rect=(0, 0.6 / fig.get_figheight(), 1, 1))
        caption = f"Cold-start test {HEADLINE.upper()} and RECALL@50 per model"
        figures.append(Figure("models.svg", caption, _svg(fig, "models", caption)))
        plt.close(fig)

        # 2. the headline metric by source-history length
        buckets = list(next(iter(models.values()))["cold_start_test_by_history"])
        fig, ax = plt.subplots(figsize=(9, 4.2))
        lines: dict[tuple[float, ...], list[str]] = {}  # identical results (a model trained twice): one line
        for m in names:
            stats = models[m]["cold_start_test_by_history"]
            lines.setdefault(tuple(stats[b][HEADLINE] for b in buckets), []).append(m)
        for values, members in lines.items():
            style = styles[members[0]]
            ax.plot(
                range(len(buckets)), values, marker=style.marker, color=style.color, label=" = ".join(members), lw=1.8
            )
        users = next(iter(models.values()))["cold_start_test_by_history"]
        ax.set_xticks(range(len(buckets)), [f"{b}\n({users[b]['users']:.0f} users)" for b in buckets])
        ax.set_xlabel("source-history length (items)")
        ax.set_ylabel(f"cold-start test {HEADLINE}")
        ax.set_title(f"Cold-start test {HEADLINE.upper()} by source-history length")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False, title="model")
        fig.tight_layout()
        caption = f"{HEADLINE.upper()} by how much source history a user has"
        figures.append(Figure("history.svg", caption, _svg(fig, "history", caption)))
        plt.close(fig)

        # 3. training curves: validation per epoch (and training loss when recorded); identical curves merged
        curves: dict[tuple[tuple[float, ...], tuple[float, ...]], list[str]] = {}
        for m in names:
            r = models[m]
            if not r.get("stages") and r.get("history"):  # run's metrics.json: the losses are in the work dir
                r = {**r, "stages": logged_stages(out, (metrics.get("seeds") or [0])[0], m)}
            val, loss = _curves(r)
            if val or loss:
                curves.setdefault((tuple(val), tuple(loss)), []).append(m)
        if curves:
            with_loss = any(loss for _, loss in curves)
            fig, axes = plt.subplots(1, 2 if with_loss else 1, figsize=(11 if with_loss else 9, 4.2), squeeze=False)
            for (val, loss), members in curves.items():
                style = styles[members[0]]
                label = " = ".join(members)
                kw = {"marker": style.marker, "color": style.color, "label": label, "lw": 1.8}
                if val:
                    axes[0][0].plot(range(1, len(val) + 1), val, **kw)
                if with_loss and loss:
                    axes[0][1].plot(range(1, len(loss) + 1), loss, **kw)
            axes[0][0].set_xlabel("epoch (target stage)")
            axes[0][0].set_ylabel(f"cold-start validation {HEADLINE}")
            axes[0][0].set_title(f"Validation {HEADLINE.upper()} per epoch")
            if with_loss:
                axes[0][1].set_xlabel("epoch (all stages)")
                axes[0][1].set_ylabel("training loss")
                axes[0][1].set_title("Training loss per epoch")
            for ax in axes[0]:
                ax.grid(alpha=0.3)
                ax.xaxis.get_major_locator().set_params(integer=True)
            axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False, title="model")
            fig.tight_layout()
            caption = "Training curves" + (" (validation and loss)" if with_loss else " (validation)")
            figures.append(Figure("training.svg", caption, _svg(fig, "training", caption)))
            plt.close(fig)
    for f in figures:
        (out / f.name).write_text(f.svg)
    return figures


def _families(styles: dict[str, Style]) -> list[str]:
    present = {s.family for s in styles.values()}
    return [f for f in FAMILIES if f in present]


# ------------------------------------------------------------------------------------------------ report
def _intro(metrics: dict[str, Any]) -> list[str]:
    sizes = metrics["split"]["sizes"]
    first = next(iter(sizes.values()))
    return [
        f"Data: `{metrics['data']}`; transfer {metrics['source']} → {metrics['target']}; "
        f"seeds {', '.join(map(str, metrics['seeds']))} "
        + ("(mean ± std over seeds)." if len(metrics["seeds"]) > 1 else "(one seed: no spread to show)."),
        f"Split (seed {next(iter(sizes))}): {first['cold_start_test_users']:,} cold-start test users, "
        f"{first['cold_start_val_users']:,} validation users, {first['warm_test_users']:,} warm test users, "
        f"{first['train_interactions']:,} training interactions. Rankings are over ALL target items."
        + (
            f" New items: {first['new_items']:,} target items have no training interaction "
            f"({first['new_items_withheld_interactions']:,} withheld); {first['new_items_interactions']:,} held-out "
            "test interactions are with them."
            if "new_items" in first
            else ""
        ),
    ]


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1200px;margin:1em auto;
 padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.5em;margin:.2em 0}.meta{color:#555;margin:.2em 0 .6em}
.headline{border-left:5px solid #00796b;background:#f3f8f7;padding:.5em 1em;margin:.5em 0 1em}
.headline p{margin:.3em 0}.headline p:first-child{font-size:1.15em}
figure{margin:0 0 1.5em}figure svg{max-width:100%;height:auto;display:block}
figcaption{color:#555;font-size:.9em}
.scroll{overflow-x:auto;margin-bottom:1.5em}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:.92em}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right;white-space:nowrap}
td:first-child,th:first-child{text-align:left}
td.best{font-weight:bold;background:#e3f1ee}code{background:#f2f2f2;padding:0 .2em}
"""


def write_report(metrics: dict[str, Any], out: Path) -> None:
    """Write ``report.md``, ``report.html`` and the SVG plots into ``out``."""
    out = Path(out)
    figures = plot(metrics, out)
    tables = _tables(metrics)
    intro = _intro(metrics)
    top = headline(metrics)

    md = ["# tfrec-xcat run report", "", intro[0], "", "> " + "\n>\n> ".join(top), ""]
    md += ["## Plots", ""] + [f"![{f.caption}]({f.name})\n" for f in figures]
    md += [intro[1], "", "Bold: the best value of its column.", ""]
    for t in tables:
        md += [f"## {t.title}", "", "| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
        md += [
            "| " + " | ".join(f"**{c}**" if b else c for c, b in zip(r, marks, strict=True)) + " |"
            for r, marks in zip(t.rows, t.best, strict=True)
        ]
        md.append("")
    (out / "report.md").write_text("\n".join(md))

    esc = html.escape
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>tfrec-xcat report: {esc(str(metrics['source']))} → {esc(str(metrics['target']))}</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>tfrec-xcat run report</h1>",
        f"<p class='meta'>{_inline_html(intro[0])}</p>",
        "<section class='headline'>",
        *(f"<p>{_inline_html(line)}</p>" for line in top),
        "</section>",
    ]
    for f in figures:
        parts.append(f"<figure id='{esc(f.name)}'>{f.svg}<figcaption>{esc(f.caption)}</figcaption></figure>")
    parts += [f"<p>{_inline_html(intro[1])}</p>", "<p>Highlighted: the best value of its column.</p>"]
    for t in tables:
        parts.append(f"<h2>{esc(t.title)}</h2><div class='scroll'><table><tr>")
        parts[-1] += "".join(f"<th>{esc(h)}</th>" for h in t.header) + "</tr>"
        parts += [
            "<tr>"
            + "".join(
                f"<td class='best'>{esc(c)}</td>" if b else f"<td>{esc(c)}</td>" for c, b in zip(r, marks, strict=True)
            )
            + "</tr>"
            for r, marks in zip(t.rows, t.best, strict=True)
        ]
        parts.append("</table></div>")
    parts.append("</body></html>")
    (out / "report.html").write_text("\n".join(parts))
