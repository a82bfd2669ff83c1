"""Batch-scoring benchmark: users/second and the fraction of this machine's measured dense-matmul rate.

    python tools/bench_scoring.py --model saved_models/xcat_retrieval [--data DIR] [--users N] [--k 100]

Measures (median of --repeat runs): (1) the machine's dense float32 matmul rate on the scoring shape
(users × dim) @ (dim × items), (2) a naive full score matrix + tf.math.top_k, (3) the project's chunked
matmul + running top-k (what `tfrec-xcat score` runs, user encoding excluded), (4) end-to-end
`score_users` (user encoding, exclusion, Parquet). Reports FLOPs = 2·users·items·dim over time, and ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import tfrec_xcat  # noqa: F401  (legacy Keras switch before TensorFlow)


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    import tensorflow as tf

    from tfrec_xcat.data.load import load_shop
    from tfrec_xcat.scoring.batch import load_retrieval, score_users
    from tfrec_xcat.scoring.index import top_k_blocked

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", help="data directory (default: the synthetic shop)")
    parser.add_argument("--users", type=int, default=4096)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    retrieval = load_retrieval(args.model)
    items, dim = retrieval.vectors.shape
    rng = np.random.default_rng(0)
    queries = rng.normal(size=(args.users, dim)).astype(np.float32)
    flops = 2.0 * args.users * items * dim

    peak = timed(lambda: queries @ retrieval.vectors.T, args.repeat)
    naive = timed(lambda: tf.math.top_k(tf.matmul(queries, retrieval.vectors, transpose_b=True), args.k), args.repeat)
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    chunked = timed(lambda: top_k_blocked(queries, retrieval.vectors, args.k, empty), args.repeat)

    if args.data:
        data = load_shop(args.data, log_problems=False)
    else:
        from tfrec_xcat.api import data_dir
        from tfrec_xcat.config import load_config

        data = load_shop(data_dir(load_config()), log_problems=False)
    users = np.sort(data.interactions["user_id"].unique())[: args.users]
    with tempfile.TemporaryDirectory() as tmp:
        end_to_end = timed(
            lambda: score_users(retrieval, data, users, Path(tmp) / str(time.perf_counter()), k=args.k, progress=False),
            1,
        )

    rows = [
        ("dense matmul only (the bound)", peak, args.users),
        ("naive: full matrix + tf.math.top_k", naive, args.users),
        ("blocked matmul + threshold top-k", chunked, args.users),
        ("tfrec-xcat score end to end", end_to_end, len(users)),
    ]
    print(f"model {args.model}: {items:,} target items, dim {dim}; {args.users:,} users, k={args.k}")
    print(f"{'what':<38} {'seconds':>9} {'users/s':>10} {'GFLOP/s':>9} {'of bound':>9}")
    for name, seconds, n in rows:
        rate = 2.0 * n * items * dim / seconds / 1e9
        print(f"{name:<38} {seconds:>9.3f} {n / seconds:>10,.0f} {rate:>9.1f} {peak / seconds * n / args.users:>9.2f}")
    print(
        f"bound: {flops / peak / 1e9:.1f} GFLOP/s measured here; goal: chunked within 3x of it "
        f"(ratio {chunked / peak:.2f}x)"
    )


if __name__ == "__main__":
    main()
