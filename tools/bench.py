"""Performance benchmarks: training throughput against a TFRS-tutorial reference, in-process latency, the endpoint
under load, batch scoring against the matmul bound, growth with data size, and peak training memory.

    python tools/bench.py --quick                          # synthetic data, small budgets (< 10 minutes)
    python tools/bench.py --data ../shared/data/amazon-food-kitchen \\
        --source Grocery_and_Gourmet_Food --target Home_and_Kitchen --out runs/bench-real

Every figure is measured in this run, side by side with what it is compared to, as a median over repetitions
(epochs for training, calls for latency), and printed as tables with ratios; ``OUT/bench.json`` and
``OUT/bench.md`` keep them. Nothing here is a test: goals are printed next to the numbers, never asserted.
The endpoint load runs on loopback only and stops by itself after a fixed time per level.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

import tfrec_xcat  # noqa: F401  (legacy Keras switch before TensorFlow)

ROOT = Path(__file__).resolve().parents[1]
RESULT = "BENCH_RESULT "


# ------------------------------------------------------------------------------------------------ helpers
def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_config(args: argparse.Namespace) -> Any:
    """The benchmark's config: the real data if given, else a synthetic shop (smaller with --quick)."""
    from tfrec_xcat.config import load_config

    overrides: dict[str, dict[str, Any]] = {
        "data": {"path": args.data, "source": args.source, "target": args.target},
        "training": {"source_epochs": 1, "epochs": args.epochs, "patience": args.epochs, "verbose": 0},
    }
    if args.quick:
        overrides["synthetic"] = {"n_users": 1500}
    return load_config(args.config, overrides)


def run_child(kind: str, config_path: Path, out: Path) -> dict[str, Any]:
    """Run one training benchmark in its own process, so its peak RSS is its own."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--config", str(config_path)]
    cmd += ["--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT):
            return json.loads(line[len(RESULT) :])
    raise RuntimeError(f"{kind} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


# ------------------------------------------------------------------------------------------------ 1 + 6 training
def child_train_ours(config_path: Path, out: Path) -> dict[str, Any]:
    from tfrec_xcat.config import load_config
    from tfrec_xcat.train import run_training

    config = load_config(config_path)
    shutil.rmtree(out, ignore_errors=True)
    metrics = run_training(config, out)["models"]["transfer"]
    stages = metrics["stages"]
    return {
        "examples_per_second": metrics["examples_per_second"],
        "epochs": sum(s["epochs_run"] for s in stages.values()),
        "examples_per_epoch": {name: s["examples"] for name, s in stages.items()},
        "val_ndcg@10": metrics["cold_start_val"]["ndcg@10"],
        "train_seconds": metrics["train_seconds"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "towers": config.model.towers,
    }


def child_train_reference(config_path: Path, out: Path) -> dict[str, Any]:
    """A two-tower written the way the TFRS retrieval tutorial writes it: StringLookup + Embedding towers,
    a tf.data pipeline from tensor slices (shuffle, batch, cache), Adagrad, the Retrieval task (its top-K
    metrics only at evaluation, the tutorial's faster variant). Same data, dims, batch size and epochs."""
    import tensorflow as tf
    import tensorflow_recommenders as tfrs
    import tf_keras

    from tfrec_xcat.api import load_data
    from tfrec_xcat.config import load_config
    from tfrec_xcat.pipeline import prepare_seed
    from tfrec_xcat.training.trainer import Throughput

    config = load_config(config_path)
    tf.keras.utils.set_random_seed(0)
    prepared = prepare_seed(config, config.run.seeds[0], load_data(config, log_problems=False))
    data, m, train = prepared.data, prepared.m, prepared.split.train
    dim, batch = config.model.embedding_dim, config.training.batch_size
    epochs = config.training.source_epochs + config.training.epochs
    user_ids = np.unique(train["user_id"].to_numpy().astype(str))
    item_ids = np.unique(data.items["item_id"].to_numpy().astype(str))

    user_model = tf_keras.Sequential(
        [
            tf_keras.layers.StringLookup(vocabulary=user_ids, mask_token=None),
            tf_keras.layers.Embedding(len(user_ids) + 1, dim),
        ]
    )
    item_model = tf_keras.Sequential(
        [
            tf_keras.layers.StringLookup(vocabulary=item_ids, mask_token=None),
            tf_keras.layers.Embedding(len(item_ids) + 1, dim),
        ]
    )

    class TwoTower(tfrs.Model):
        def __init__(self) -> None:
            super().__init__()
            self.user_model, self.item_model = user_model, item_model
            self.task = tfrs.tasks.Retrieval()

        def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
            return self.task(
                self.user_model(features["user_id"]), self.item_model(features["item_id"]), compute_metrics=not training
            )

    pairs = tf.data.Dataset.from_tensor_slices(
        {"user_id": train["user_id"].to_numpy().astype(str), "item_id": train["item_id"].to_numpy().astype(str)}
    )
    dataset = pairs.shuffle(100_000, seed=0, reshuffle_each_iteration=True).batch(batch).cache()
    model = TwoTower()
    model.compile(optimizer=tf_keras.optimizers.Adagrad(learning_rate=0.1))

    throughput = Throughput(len(train))  # the trainer's own per-epoch examples/s
    started = time.perf_counter()
    model.fit(dataset, epochs=epochs, callbacks=[throughput], verbose=0)
    train_seconds = time.perf_counter() - started
    targets = model.item_model(tf.constant(m.target_items.to_numpy().astype(str))).numpy()

    def scorer(rows: np.ndarray) -> np.ndarray:
        users = tf.constant(m.users[np.asarray(rows)].to_numpy().astype(str))
        return model.user_model(users).numpy() @ targets.T

    return {
        "examples_per_second": float(np.median(throughput.rates)),
        "epochs": epochs,
        "examples_per_epoch": {"all": len(train)},
        "val_ndcg@10": float(prepared.validate(scorer)),
        "train_seconds": train_seconds,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def bench_training(config: Any, out: Path) -> dict[str, Any]:
    path = out / "bench-config.toml"
    path.write_text(config.to_toml())
    ours = run_child("train-ours", path, out / "ours")
    reference = run_child("train-reference", path, out / "reference")
    return {
        "ours": ours,
        "reference": reference,
        "ratio": ours["examples_per_second"] / reference["examples_per_second"],
    }


# ------------------------------------------------------------------------------------------------ 2 latency
def request_inputs(data: Any, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``batch`` real users with their most recent (up to 20) items as history, as a client would send them."""
    rng = np.random.default_rng(seed)
    groups = data.interactions.groupby("user_id")["item_id"].apply(list)
    picked = rng.choice(len(groups), size=batch, replace=len(groups) < batch)
    users = groups.index.to_numpy()[picked].astype(str)
    hist = [list(map(str, groups.iloc[i][-20:])) for i in picked]
    width = max(len(h) for h in hist)
    history = np.array([h + [""] * (width - len(h)) for h in hist])
    return {"user_id": users, "history": history, "k": np.full(batch, 10, dtype=np.int32)}


def bench_latency(models: Path, data: Any, calls: int) -> dict[str, Any]:
    import tensorflow as tf

    from tfrec_xcat.scoring.batch import load_retrieval

    fn = load_retrieval(models / "xcat_retrieval").loaded.signatures["serving_default"]
    out: dict[str, Any] = {}
    for batch in (1, 32, 256):
        inputs = request_inputs(data, batch)
        tensors = {
            "user_id": tf.constant(inputs["user_id"]),
            "history": tf.constant(inputs["history"]),
            "k": tf.constant(inputs["k"]),
        }
        for _ in range(5):
            fn(**tensors)
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            result = fn(**tensors)
            _ = {k: v.numpy() for k, v in result.items()}
            times.append((time.perf_counter() - start) * 1000)
        out[str(batch)] = {"p50_ms": percentile(times, 50), "p99_ms": percentile(times, 99), "calls": calls}
    return out


# ------------------------------------------------------------------------------------------------ 3 endpoint
def bench_endpoint(models: Path, data: Any, seconds: float, in_process_p50: float) -> dict[str, Any]:
    """Batch-1 load on each protocol at concurrency 1/8/32, with server-side batching off and then on (the
    exported batching_parameters.txt)."""
    out: dict[str, Any] = {}
    for suffix, flag in (("", "--no-enable-batching"), (" batched", "--enable-batching")):
        out.update(endpoint_levels(models, data, seconds, in_process_p50, flag, suffix))
    return out


def endpoint_levels(
    models: Path, data: Any, seconds: float, in_process_p50: float, flag: str, suffix: str
) -> dict[str, Any]:
    from tfrec_xcat.serving.client import RestClient

    rest_port, grpc_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "tfrec_xcat", "serve", "--models", str(models), flag]
    cmd += ["--rest-port", str(rest_port), "--grpc-port", str(grpc_port)]
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        rest = RestClient(f"http://127.0.0.1:{rest_port}")
        deadline = time.monotonic() + 120
        while True:
            try:
                rest.status("xcat_retrieval")
                break
            except Exception:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the server did not come up") from None
                time.sleep(0.5)
        inputs = request_inputs(data, 64, seed=1)
        one = [
            {"user_id": [str(inputs["user_id"][i])], "history": [[h for h in inputs["history"][i] if h]], "k": [10]}
            for i in range(64)
        ]
        out: dict[str, Any] = {}
        for protocol in ("rest", "grpc"):
            for concurrency in (1, 8, 32):
                name = f"{protocol} c={concurrency}{suffix}"
                out[name] = load(protocol, one, concurrency, seconds, rest_port, grpc_port)
                out[name]["overhead_p50_ms"] = out[name]["p50_ms"] - in_process_p50 if concurrency == 1 else None
        return out
    finally:
        server.terminate()
        server.wait(timeout=30)


def load(
    protocol: str, requests: list[dict[str, Any]], concurrency: int, seconds: float, rest_port: int, grpc_port: int
) -> dict[str, Any]:
    """``concurrency`` client threads send batch-1 requests for ``seconds``; latencies and errors."""
    from tfrec_xcat.serving.client import GrpcClient, RestClient

    stop = time.monotonic() + seconds
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def worker(index: int) -> None:
        client: Any = (
            RestClient(f"http://127.0.0.1:{rest_port}") if protocol == "rest" else GrpcClient(f"127.0.0.1:{grpc_port}")
        )
        mine, bad, i = [], 0, index
        while time.monotonic() < stop:
            body = requests[i % len(requests)]
            i += 1
            start = time.perf_counter()
            try:
                client.predict("xcat_retrieval", inputs=body)
                mine.append((time.perf_counter() - start) * 1000)
            except Exception:
                bad += 1
        if protocol == "grpc":
            client.close()
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return {
        "requests_per_second": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "requests": len(latencies),
        "errors": errors[0],
    }


# ------------------------------------------------------------------------------------------------ 4 batch scoring
def bench_scoring(models: Path, data: Any, users: int, repeat: int, out: Path) -> dict[str, Any]:
    from tfrec_xcat.scoring.batch import load_retrieval, score_users
    from tfrec_xcat.scoring.index import top_k_blocked

    retrieval = load_retrieval(models / "xcat_retrieval")
    vectors = retrieval.vectors
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(users, vectors.shape[1])).astype(np.float32)
    flops = 2.0 * users * len(vectors) * vectors.shape[1]
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))

    def timed(fn: Any) -> float:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    bound = timed(lambda: queries @ vectors.T)
    ours = timed(lambda: top_k_blocked(queries, vectors, 100, empty))
    all_users = np.sort(data.interactions["user_id"].unique())[:users]
    shutil.rmtree(out / "scores", ignore_errors=True)
    start = time.perf_counter()
    score_users(retrieval, data, all_users, out / "scores", k=100, progress=False)
    end_to_end = time.perf_counter() - start
    result = {
        "items": len(vectors),
        "dim": int(vectors.shape[1]),
        "users": users,
        "matmul_seconds": bound,
        "matmul_gflops": flops / bound / 1e9,
        "topk_seconds": ours,
        "topk_users_per_second": users / ours,
        "topk_over_bound": ours / bound,
        "end_to_end_users": len(all_users),
        "end_to_end_users_per_second": len(all_users) / end_to_end,
    }
    try:
        from tfrec_xcat.scoring.index import Scann, compare

        index = Scann(vectors, 100)
        result["scann"] = {"build_seconds": index.build_seconds, **compare(index, vectors, queries, 100)}
    except ImportError:
        result["scann"] = None
    return result


# ------------------------------------------------------------------------------------------------ 5 growth
def bench_growth(base: Any, scales: list[int], base_users: int, out: Path) -> dict[str, Any]:
    """Seconds per training epoch and to score every user, with 1×, 10×, 100× the synthetic interactions."""
    from tfrec_xcat.data.synthetic import SyntheticSpec, write_synthetic
    from tfrec_xcat.pipeline import prepare_seed
    from tfrec_xcat.scoring.index import top_k_blocked
    from tfrec_xcat.training.spec import TrainSpec
    from tfrec_xcat.training.trainer import train

    rows = []
    for scale in scales:
        spec = SyntheticSpec(n_users=base_users * scale)
        directory = write_synthetic(out / f"growth-{scale}", spec)
        source, target = spec.categories[:2]
        config = dataclasses.replace(
            base, data=dataclasses.replace(base.data, path=str(directory), source=source, target=target)
        )
        prepared = prepare_seed(config, 0)
        m, split = prepared.m, prepared.split
        space = prepared.feature_space()
        training = TrainSpec(source_epochs=0, epochs=2, patience=2, batch_size=base.training.batch_size)
        shutil.rmtree(out / f"growth-{scale}-work", ignore_errors=True)
        result = train(
            space, split.train, base.model, training, validate=lambda model: 0.0, workdir=out / f"growth-{scale}-work"
        )
        examples = result.stages["target"]["examples"]
        epoch_seconds = examples / result.examples_per_second
        start = time.perf_counter()
        items = result.model.target_item_vectors()
        users = np.arange(1, len(m.users) + 1, dtype=np.int32)
        queries = result.model.user_vectors(users)
        top_k_blocked(queries, items, 100, (np.zeros(0, np.int64), np.zeros(0, np.int64)))
        scoring_seconds = time.perf_counter() - start
        rows.append(
            {
                "scale": scale,
                "interactions": len(prepared.data.interactions),
                "users": len(m.users),
                "epoch_seconds": epoch_seconds,
                "scoring_seconds": scoring_seconds,
            }
        )
    x = np.log([r["interactions"] for r in rows])
    slopes = {}
    for key in ("epoch_seconds", "scoring_seconds"):
        slopes[key] = float(np.polyfit(x, np.log([r[key] for r in rows]), 1)[0]) if len(rows) > 1 else float("nan")
    return {"rows": rows, "loglog_slope": slopes}


# ------------------------------------------------------------------------------------------------ report
def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import tensorflow as tf

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}, TF {tf.__version__}"


def render(results: dict[str, Any]) -> str:
    lines = [f"Machine: {results['machine']}", f"Data: {results['data']}", ""]
    t = results.get("training")
    if t:
        o, r = t["ours"], t["reference"]
        lines += [
            "## 1. Training throughput (median examples/s over epochs) and 6. peak memory",
            "",
            "| trainer | pairs of towers | examples/s | epochs | cold-start val NDCG@10 | train s | peak RSS MiB |",
            "|---|---|---|---|---|---|---|",
            f"| tfrec-xcat train | {o.get('towers', 1)} | {o['examples_per_second']:,.0f} | {o['epochs']} | "
            f"{o['val_ndcg@10']:.4f} | {o['train_seconds']:.0f} | {o['peak_rss_mib']:,.0f} |",
            f"| TFRS-tutorial two-tower | 1 | {r['examples_per_second']:,.0f} | {r['epochs']} | "
            f"{r['val_ndcg@10']:.4f} | {r['train_seconds']:.0f} | {r['peak_rss_mib']:,.0f} |",
            "",
            f"Throughput ratio (ours / reference): **{t['ratio']:.2f}×** (goal ≥ 3× at equal or better quality); "
            f"ours trains {o.get('towers', 1)} pair(s) of towers on every example (`[model] towers`), "
            "the reference one.",
            "",
        ]
    lat = results.get("latency")
    if lat:
        lines += ["## 2. In-process latency of xcat_retrieval (serving_default, k=10, all target items)", ""]
        lines += ["| batch | p50 ms | p99 ms | calls |", "|---|---|---|---|"]
        lines += [f"| {b} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} | {v['calls']} |" for b, v in lat.items()]
        lines += ["", "Goal: batch 1 p50 < 5 ms, p99 < 20 ms.", ""]
    ep = results.get("endpoint")
    if ep:
        lines += [
            f"## 3. Endpoint on loopback (batch-1 requests, {results['settings']['endpoint_seconds']:g} s per level; "
            "'batched': server-side batching on)",
            "",
            "| protocol, concurrency | req/s | p50 ms | p99 ms | requests | errors | p50 overhead over in-process ms |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, v in ep.items():
            over = "" if v["overhead_p50_ms"] is None else f"{v['overhead_p50_ms']:.2f}"
            lines.append(
                f"| {name} | {v['requests_per_second']:,.0f} | {v['p50_ms']:.2f} | {v['p99_ms']:.2f} | "
                f"{v['requests']:,} | {v['errors']} | {over} |"
            )
        lines += ["", "Goal: 0 errors; overhead < 1 ms p50.", ""]
    sc = results.get("scoring")
    if sc:
        lines += [
            f"## 4. Batch scoring ({sc['users']:,} users × {sc['items']:,} items, dim {sc['dim']}, k=100)",
            "",
            "| what | seconds | users/s | × matmul bound |",
            "|---|---|---|---|",
            f"| dense matmul only (the bound, {sc['matmul_gflops']:.0f} GFLOP/s) | {sc['matmul_seconds']:.3f} | "
            f"{sc['users'] / sc['matmul_seconds']:,.0f} | 1.00 |",
            f"| blocked matmul + exact top-k | {sc['topk_seconds']:.3f} | {sc['topk_users_per_second']:,.0f} | "
            f"{sc['topk_over_bound']:.2f} |",
        ]
        if sc.get("scann"):
            s = sc["scann"]
            lines.append(
                f"| ScaNN (recall@100 {s['recall_at_k']:.3f}, build {s['build_seconds']:.1f} s) | "
                f"{s['index_seconds']:.3f} | {sc['users'] / s['index_seconds']:,.0f} | "
                f"{s['index_seconds'] / sc['matmul_seconds']:.2f} |"
            )
        lines += [
            "",
            f"`tfrec-xcat score` end to end (user encoding through the SavedModel, exclusions, Parquet): "
            f"{sc['end_to_end_users_per_second']:,.0f} users/s over {sc['end_to_end_users']:,} users. "
            "Goal: top-k within 3× of the bound.",
            "",
        ]
    g = results.get("growth")
    if g:
        lines += ["## 5. Growth (synthetic shop, 1×/10×/100× users and so interactions)", ""]
        lines += [
            "| scale | interactions | users | s / training epoch | s to score every user |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['scale']}× | {r['interactions']:,} | {r['users']:,} | {r['epoch_seconds']:.2f} | "
            f"{r['scoring_seconds']:.2f} |"
            for r in g["rows"]
        ]
        s = g["loglog_slope"]
        lines += [
            "",
            f"Log-log slope against interactions: training {s['epoch_seconds']:.2f}, scoring "
            f"{s['scoring_seconds']:.2f} (1.00 = linear).",
            "",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="synthetic data and small budgets (< 10 minutes)")
    parser.add_argument("--data", help="data directory (default: the synthetic shop)")
    parser.add_argument("--source")
    parser.add_argument("--target")
    parser.add_argument("--config", help="TOML config (model dims, batch size) for the training benchmark")
    parser.add_argument("--out", help="work and result directory (default runs/bench or runs/bench-quick)")
    parser.add_argument("--epochs", type=int, default=2, help="target-stage epochs of the training benchmark")
    parser.add_argument(
        "--sections", default="training,latency,endpoint,scoring,growth", help="comma-separated subset to run"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        fn = {"train-ours": child_train_ours, "train-reference": child_train_reference}[args.child]
        print(RESULT + json.dumps(fn(Path(args.config), Path(args.out))), flush=True)
        return

    from tfrec_xcat.api import load_data
    from tfrec_xcat.export.exporter import export

    out = Path(args.out or ("runs/bench-quick" if args.quick else "runs/bench"))
    out.mkdir(parents=True, exist_ok=True)
    sections = set(args.sections.split(","))
    config = base_config(args)
    settings = {
        "latency_calls": 100 if args.quick else 500,
        "endpoint_seconds": 3.0 if args.quick else 10.0,
        "scoring_users": 4096,
        "scoring_repeat": 3 if args.quick else 5,
        "growth_scales": [1, 10, 100],
        "growth_base_users": 100 if args.quick else 400,
    }
    results: dict[str, Any] = {
        "machine": machine(),
        "data": args.data or f"synthetic ({config.synthetic.n_users:,} users)",
        "settings": settings,
    }
    started = time.perf_counter()
    data = load_data(config, log_problems=False)
    if "training" in sections or not (out / "ours" / "model").is_dir():
        print("training: ours and the reference, each in its own process ...", flush=True)
        results["training"] = bench_training(config, out)
    models = out / "models"
    if sections & {"latency", "endpoint", "scoring"}:
        shutil.rmtree(models, ignore_errors=True)
        export(out / "ours", models)
    if "latency" in sections or "endpoint" in sections:
        print("latency ...", flush=True)
        results["latency"] = bench_latency(models, data, settings["latency_calls"])
    if "endpoint" in sections:
        print("endpoint ...", flush=True)
        results["endpoint"] = bench_endpoint(
            models, data, settings["endpoint_seconds"], results["latency"]["1"]["p50_ms"]
        )
    if "scoring" in sections:
        print("batch scoring ...", flush=True)
        results["scoring"] = bench_scoring(models, data, settings["scoring_users"], settings["scoring_repeat"], out)
    if "growth" in sections:
        print("growth ...", flush=True)
        results["growth"] = bench_growth(config, settings["growth_scales"], settings["growth_base_users"], out)
    results["seconds"] = time.perf_counter() - started
    (out / "bench.json").write_text(json.dumps(results, indent=2))
    text = render(results) + f"\nBenchmark wall time: {results['seconds']:.0f} s.\n"
    (out / "bench.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
