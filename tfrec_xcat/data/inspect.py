"""``tfrec-xcat data inspect``: what is in a data set, how it splits, and what was bad in it."""

from __future__ import annotations

from itertools import combinations
from typing import Any

from tfrec_xcat.data.dataset import ShopData
from tfrec_xcat.data.problems import KINDS
from tfrec_xcat.data.split import SEGMENTS, SplitSpec, make_split


def inspect_shop(data: ShopData, source: str | None, target: str | None, spec: SplitSpec, seed: int) -> dict[str, Any]:
    """Summary counts, overlap users per category pair, split sizes (when source and target are given), bad rows."""
    out: dict[str, Any] = {"data": data.name, **data.summary()}
    cats = data.categories()
    out["overlap_users"] = {f"{a}|{b}": len(data.overlap_users(a, b)) for a, b in combinations(cats, 2)}
    if source and target:
        data.require_category(source)
        data.require_category(target)
        split = make_split(data, source, target, spec, seed=seed)
        out["source"], out["target"], out["seed"] = source, target, seed
        out["split"] = split.sizes()
    out["bad_rows"] = data.report.by_kind()
    out["bad_row_details"] = data.report.lines()
    out["rows_read"] = dict(data.report.rows)
    return out


def format_inspection(info: dict[str, Any]) -> str:
    """The inspection as an aligned plain-text report."""
    lines = [f"data: {info['data']}", ""]
    width = max(len("category"), *(len(c) for c in info["categories"]))
    lines.append(f"{'category':<{width}}  {'users':>10}  {'items':>10}  {'interactions':>12}")
    for cat, c in info["categories"].items():
        lines.append(f"{cat:<{width}}  {c['users']:>10,}  {c['items']:>10,}  {c['interactions']:>12,}")
    lines.append(f"{'total':<{width}}  {info['users']:>10,}  {info['items']:>10,}  {info['interactions']:>12,}")
    lines.append("")
    for pair, n in info["overlap_users"].items():
        a, b = pair.split("|")
        lines.append(f"overlap users ({a} & {b}): {n:,}")
    lines.append(
        f"text columns: {', '.join(info['text_columns']) or 'none'}; ratings: {'yes' if info['has_ratings'] else 'no'}"
        f"; timestamps: {'yes' if info['has_timestamps'] else 'no'}"
    )
    if info.get("vector_columns"):
        lines.append("vector columns: " + ", ".join(f"{n} ({d} floats)" for n, d in info["vector_columns"].items()))
    if "split" in info:
        s = info["split"]
        lines += ["", f"cold-start split {info['source']} -> {info['target']} (seed {info['seed']}):"]
        for seg in SEGMENTS:
            lines.append(
                f"  {seg:<16} {s[f'{seg}_users']:>8,} users  {s[f'{seg}_interactions']:>10,} held-out interactions"
            )
        lines.append(f"  {'train':<16} {s['train_interactions']:>30,} interactions")
        if "new_items" in s:
            lines.append(
                f"  new items: {s['new_items']:,} target items without training interactions "
                f"({s['new_items_withheld_interactions']:,} withheld); held out with them: "
                f"{s['new_items_interactions']:,} test, {s['new_items_val_interactions']:,} validation interactions"
            )
    lines += ["", "bad rows (counted; dropped unless noted):"]
    bad = {k: n for k, n in info["bad_rows"].items() if n}
    if not bad:
        lines.append("  none")
    for kind, n in bad.items():
        lines.append(f"  {kind:<22} {n:>8,}  {KINDS[kind]}")
    lines += [f"  {d}" for d in info["bad_row_details"]]
    return "\n".join(lines)
