"""The run report as a reader sees it: headline, marked tables, consistent colours, inline SVG plots, and the
page rendered by headless Chromium (skipped where no ``chromium`` is installed)."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tfrec_xcat.evaluation.metrics import metric_names
from tfrec_xcat.report import KNOWN_ORDER, headline, logged_stages, model_styles, seed_values, write_report

BUCKETS = {"1-2": 40, "3-5": 30, "6-10": 20, ">10": 10}
ALL_MODELS = list(KNOWN_ORDER)


def _stats(value: float, std: float, users: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for i, name in enumerate(metric_names()):
        out[name] = value * (1 + 0.1 * i)
        out[f"{name}_std"] = std
    out["users"] = float(users)
    return out


def fake_metrics(models: list[str], seeds: list[int], *, bootstrap: Any = None) -> dict[str, Any]:
    """A small metrics.json of baselines and neural models (made up, shaped like ``tfrec-xcat run`` writes it);
    ``transfer`` and ``transfer_full`` train identically, as in the demo."""
    out: dict[str, Any] = {}
    for i, name in enumerate(models):
        value = 0.05 + 0.01 * i
        std = 0.002 if len(seeds) > 1 else 0.0
        neural = name.startswith("transfer") or name == "target_only"
        rng = np.random.default_rng(i)
        history = [round(float(v), 4) for v in np.sort(rng.uniform(0.02, value, 4))] if neural else []
        r: dict[str, Any] = {
            "cold_start_test": _stats(value, std, 100),
            "cold_start_val": _stats(value * 0.9, std, 50),
            "warm_test": _stats(value * 0.5, std, 80),
            "cold_start_test_by_history": {
                b: {"ndcg@10": value * (1 + 0.2 * j), "ndcg@10_std": std, "users": float(u)}
                for j, (b, u) in enumerate(BUCKETS.items())
            },
            "train_seconds": 1.5 * (i + 1),
            "examples_per_second": 1000.0 * (i + 1),
            "params": [{"l2": 10.0}] * len(seeds),
            "history": history,
        }
        if neural:
            loss = [round(float(v), 3) for v in np.sort(rng.uniform(1, 5, 6))[::-1]]
            r["stages"] = {"source": {"loss": loss[:2]}, "target": {"loss": loss[2:], "history": history}}
        out[name] = r
    if "transfer" in out and "transfer_full" in out:  # the same model trained twice: the same curves
        out["transfer_full"].update(history=out["transfer"]["history"], stages=out["transfer"]["stages"])
    metrics = {
        "data": "synthetic",
        "source": "Food",
        "target": "Kitchen",
        "seeds": seeds,
        "split": {
            "sizes": {
                str(s): {
                    "cold_start_test_users": 100,
                    "cold_start_val_users": 50,
                    "warm_test_users": 80,
                    "train_interactions": 5000,
                }
                for s in seeds
            }
        },
        "models": out,
    }
    if bootstrap is not None:
        metrics["models"]["transfer"]["bootstrap"] = bootstrap
    return metrics


BOOTSTRAP = [
    {"seed": 0, "mean_diff": 0.0123, "rel_lift": 0.12, "ci_low": 0.004, "ci_high": 0.02, "baseline": "target_only"},
    {"seed": 1, "mean_diff": 0.003, "rel_lift": 0.03, "ci_low": -0.001, "ci_high": 0.007, "baseline": "target_only"},
]


def _visible_text(page: str) -> str:
    """The page's text outside tags and inline SVG (what a reader sees as prose)."""
    page = re.sub(r"<svg.*?</svg>", "", page, flags=re.S)
    page = re.sub(r"<style>.*?</style>", "", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


# ------------------------------------------------------------------------------------------- content tests
def test_headline_winner_lift_and_bootstrap_per_seed(tmp_path: Path) -> None:
    metrics = fake_metrics(ALL_MODELS, [0, 1], bootstrap=BOOTSTRAP)
    lines = headline(metrics)
    assert "**transfer_id_only**" in lines[0] and "Best baseline: target_only" in lines[0]
    boot = lines[1]
    assert "**transfer** − target_only" in boot
    assert "seed 0: +0.0123 [+0.0040, +0.0200] (+12.0%)" in boot
    assert "seed 1: +0.0030 [-0.0010, +0.0070] (+3.0%)" in boot
    assert "above 0 on 1 of 2 seed(s)" in boot
    write_report(metrics, tmp_path)
    page = (tmp_path / "report.html").read_text()
    section = page[page.index("<section class='headline'>") : page.index("</section>")]
    assert "<strong>transfer</strong> − target_only" in section and "[+0.0040, +0.0200]" in section
    md = (tmp_path / "report.md").read_text()
    assert "| transfer | 1 | target_only | +0.0030 | [-0.0010, +0.0070] | +3.0% |" in md


@pytest.mark.parametrize(
    "shape",
    [
        BOOTSTRAP[0],  # one mapping
        {"0": {k: v for k, v in BOOTSTRAP[0].items() if k != "seed"}},  # seed → mapping
        {"baseline": "target_only", "per_seed": [{k: v for k, v in BOOTSTRAP[0].items() if k != "baseline"}]},
    ],
)
def test_bootstrap_shapes(shape: Any) -> None:
    lines = headline(fake_metrics(["target_only", "transfer"], [0], bootstrap=shape))
    assert "seed 0: +0.0123 [+0.0040, +0.0200] (+12.0%)" in lines[1] and "− target_only" in lines[1]


def test_bootstrap_with_missing_values_shows_what_is_there(tmp_path: Path) -> None:
    partial = [{"seed": 0, "mean_diff": 0.01, "ci_low": None, "ci_high": None}, {"seed": 1, "rel_lift": 0.2}]
    metrics = fake_metrics(["target_only", "transfer"], [0, 1], bootstrap=partial)
    (line,) = headline(metrics)[1:]
    assert "seed 0: +0.0100;" in line and "seed 1" not in line and "no interval given" in line
    write_report(metrics, tmp_path)
    assert "| transfer | 0 | - | +0.0100 | - | - |" in (tmp_path / "report.md").read_text()


def test_without_bootstrap_the_report_says_nothing_about_it(tmp_path: Path) -> None:
    metrics = fake_metrics(["popularity", "cooccurrence", "ridge_map"], [0, 1])
    assert len(headline(metrics)) == 1
    write_report(metrics, tmp_path)
    assert "bootstrap" not in (tmp_path / "report.html").read_text().lower()
    assert "bootstrap" not in (tmp_path / "report.md").read_text().lower()
    assert not (tmp_path / "training.svg").exists()  # no model has curves


def test_no_markdown_leaks_into_html_and_no_external_assets(tmp_path: Path) -> None:
    write_report(fake_metrics(ALL_MODELS, [0], bootstrap=BOOTSTRAP), tmp_path)
    page = (tmp_path / "report.html").read_text()
    text = _visible_text(page)
    assert "`" not in text and "**" not in text
    assert "<code>synthetic</code>" in page
    assert not re.search(r"<(script|link|img|iframe)\b", page)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert page.count("<svg") == 3 and "<?xml" not in page
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids)), "element ids repeat across the inline plots"
    md = (tmp_path / "report.md").read_text()
    for name in ("models.svg", "history.svg", "training.svg"):
        assert f"]({name})" in md and (tmp_path / name).read_text().startswith("<svg")


def test_plots_come_before_the_tables(tmp_path: Path) -> None:
    write_report(fake_metrics(ALL_MODELS, [0]), tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert page.index("<section class='headline'>") < page.index("<svg") < page.index("<table")


def test_best_value_per_column_is_marked(tmp_path: Path) -> None:
    metrics = fake_metrics(["popularity", "cooccurrence", "transfer"], [0])
    metrics["models"]["cooccurrence"]["cold_start_test"]["mrr"] = 0.99  # best only on mrr
    for name, rmse in (("popularity", 0.8), ("cooccurrence", 0.9), ("transfer", 1.1)):
        metrics["models"][name]["cold_start_test"].update(mae=rmse, rmse=rmse)  # lower is better
    write_report(metrics, tmp_path)
    md = (tmp_path / "report.md").read_text()
    table = md.split("## Cold-start test users")[1].split("##")[0]
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in table.splitlines() if line.startswith("|")}
    header = rows["model"]
    col = {name: header.index(name) for name in ("ndcg@10", "mrr", "rmse")}
    assert rows["transfer"][col["ndcg@10"]].startswith("**") and not rows["popularity"][col["ndcg@10"]].startswith("**")
    assert rows["cooccurrence"][col["mrr"]] == "**0.9900**" and not rows["transfer"][col["mrr"]].startswith("**")
    assert rows["popularity"][col["rmse"]] == "**0.8000**" and rows["transfer"][col["rmse"]] == "1.1000"
    page = (tmp_path / "report.html").read_text()
    assert "<td class='best'>0.9900</td>" in page and "<td class='best'>0.8000</td>" in page


def test_one_colour_per_model_stable_across_runs_and_plots(tmp_path: Path) -> None:
    styles = model_styles(ALL_MODELS)
    assert len({s.color for s in styles.values()}) == len(ALL_MODELS), "two models share a colour"
    assert styles["popularity"].color != styles["transfer_id_only"].color
    assert model_styles(["transfer_id_only", "popularity"]) == {
        n: styles[n] for n in ("transfer_id_only", "popularity")
    }
    assert {styles[n].family for n in ("popularity", "cooccurrence")} == {"count"}
    assert len({styles[n].family for n in ("popularity", "ridge_map", "target_only", "transfer")}) == 4
    write_report(fake_metrics(ALL_MODELS, [0]), tmp_path)
    for plot in ("models.svg", "history.svg"):
        svg = (tmp_path / plot).read_text()
        for name in ALL_MODELS:
            assert styles[name].color in svg, f"{name}'s colour is missing from {plot}"


def test_seeds_are_points_below_three_and_error_bars_from_three() -> None:
    stats = {"ndcg@10": 0.3, "ndcg@10_std": 0.1}
    assert seed_values(stats, "ndcg@10", 1) == [0.3]
    assert seed_values(stats, "ndcg@10", 2) == pytest.approx([0.2, 0.4])
    assert seed_values(stats, "ndcg@10", 3) == []


def _markers(svg: str) -> int:
    """Hollow point markers (the seeds) in an SVG: white fill, black edge."""
    return len(re.findall(r'<use [^>]*style="fill: #ffffff; stroke: #000000"', svg))


def test_models_plot_draws_seed_points_only_below_three_seeds(tmp_path: Path) -> None:
    few, many = tmp_path / "few", tmp_path / "many"
    few.mkdir(), many.mkdir()
    models = ["popularity", "cooccurrence", "transfer"]
    write_report(fake_metrics(models, [0, 1]), few)
    write_report(fake_metrics(models, [0, 1, 2]), many)
    few_svg, many_svg = (few / "models.svg").read_text(), (many / "models.svg").read_text()
    # 3 models × 2 panels × 2 seeds, plus the legend's marker
    assert _markers(few_svg) == 3 * 2 * 2 + 1
    assert "± 1 std over seeds" in many_svg and "± 1 std over seeds" not in few_svg


def test_identical_models_share_one_labelled_line_and_curves_show_loss(tmp_path: Path) -> None:
    metrics = fake_metrics(ALL_MODELS, [0])
    same = metrics["models"]["transfer"]["cold_start_test_by_history"]
    metrics["models"]["transfer_full"]["cold_start_test_by_history"] = same
    write_report(metrics, tmp_path)
    svg = (tmp_path / "training.svg").read_text()
    assert "transfer = transfer_full" in svg  # trained identically: one line with both names, not one hidden
    assert "training loss" in svg and "cold-start validation ndcg@10" in svg
    assert "transfer = transfer_full" in (tmp_path / "history.svg").read_text()


# --------------------------------------------------------------------------------------- headless browser
PROBE = """
<script>
(() => {
  const box = (e) => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; };
  const texts = (root, sel) => [...root.querySelectorAll(sel)].map((t) => ({text: t.textContent, box: box(t)}));
  const figures = [...document.querySelectorAll("figure")].map((f) => {
    const svg = f.querySelector("svg");
    return {
      id: f.id, box: box(svg),
      legend: texts(svg, "g[id*='-legend_'] text"),
      axes: [...svg.querySelectorAll("g[id*='-axes_']")].map((a) => ({
        xticks: texts(a, "g[id*='-xtick_'] text"),
        yticks: texts(a, "g[id*='-ytick_'] text"),
      })),
      text: texts(svg, "text"),
    };
  });
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({viewport: [innerWidth, innerHeight], figures});
  document.body.appendChild(out);
})();
</script>
"""


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _browse(browser: str, page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,800"]
    return subprocess.run([*cmd, *args, page.as_uri()], capture_output=True, text=True, timeout=120, check=True)


def _overlap(a: list[float], b: list[float]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium; `make test` installs it as root)")
    metrics = fake_metrics(ALL_MODELS, [0, 1], bootstrap=BOOTSTRAP)
    write_report(metrics, tmp_path)
    report = tmp_path / "report.html"
    shot = tmp_path / "report.png"  # kept in the test's tmp dir as the artifact a person can look at
    _browse(browser, report, f"--screenshot={shot}")

    probed = tmp_path / "probe.html"
    probed.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    dom = _browse(browser, probed, "--dump-dom").stdout
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, flags=re.S)
    assert found, "the page did not load in chromium"
    probe = json.loads(html.unescape(found.group(1)))
    width, height = probe["viewport"]
    figures = {f["id"]: f for f in probe["figures"]}
    assert list(figures) == ["models.svg", "history.svg", "training.svg"]

    first = figures["models.svg"]
    assert first["box"][1] < height * 0.5, "the first plot starts below the middle of the first screen"
    for name, fig in figures.items():
        left, _top, w, h = fig["box"]
        assert w > 500 and h > 150 and left + w <= width + 1, f"{name} is not drawn at a readable size: {fig['box']}"
        assert len(fig["legend"]) >= 3, f"{name} has no legend"
        shown = {t["text"] for t in fig["text"] if t["box"][2] > 0 and t["box"][3] > 0}
        for axes in fig["axes"]:
            for ticks in (axes["xticks"], axes["yticks"]):
                boxes = [t["box"] for t in ticks if t["text"].strip()]
                pairs = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :]]
                assert not any(_overlap(a, b) for a, b in pairs), f"{name}: tick labels overlap: {ticks}"
        assert shown, f"{name} shows no text"
        legend = " ".join(t["text"] for t in fig["legend"])
        if name == "models.svg":
            assert {"model", "transfer", "popularity"} <= shown
            assert "transfer variants" in legend and "seeds" in legend and "best baseline" in legend
            assert any(t.startswith("ndcg@10") for t in shown)
        elif name == "history.svg":
            assert "cold-start test ndcg@10" in shown and "transfer_id_only" in legend and "popularity" in legend
        else:
            assert {"cold-start validation ndcg@10", "training loss"} <= shown
            assert "transfer = transfer_full" in legend

    # the screenshot: the first screen shows the plots in the models' colours, not a blank or broken page
    from PIL import Image

    image = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert image.shape[1] == width and image.shape[0] >= height
    styles = model_styles(ALL_MODELS)
    for name in ("transfer_id_only", "popularity", "target_only"):
        rgb = np.array([int(styles[name].color[i : i + 2], 16) for i in (1, 3, 5)])
        close = (np.abs(image - rgb).sum(axis=2) < 12).sum()
        assert close > 200, f"{name}'s bar colour is not on the first screen ({close} pixels)"


def test_run_reports_loss_from_the_stage_logs_in_its_work_dir(tmp_path: Path) -> None:
    """``run`` keeps no ``stages`` in metrics.json; the trainer's per-stage done.json in out/work has the loss."""
    metrics = fake_metrics(["cooccurrence", "transfer"], [3])
    metrics["models"]["transfer"].pop("stages")
    write_report(metrics, tmp_path)
    assert "training loss" not in (tmp_path / "training.svg").read_text()
    for stage, loss in (("target", [2.0, 1.5]), ("source", [3.0])):
        done = tmp_path / "work" / "seed3" / "transfer" / "stages" / stage
        done.mkdir(parents=True)
        (done / "done.json").write_text(json.dumps({"epochs_run": len(loss), "loss": loss}))
    write_report(metrics, tmp_path)
    assert "training loss" in (tmp_path / "training.svg").read_text()
    assert [s["loss"] for s in logged_stages(tmp_path, 3, "transfer").values()] == [[3.0], [2.0, 1.5]]
