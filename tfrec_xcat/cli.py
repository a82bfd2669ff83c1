"""The ``tfrec-xcat`` command line: the only place that parses its flags. Every command builds one :class:`Config`
(or takes its paths) and calls one function of :mod:`tfrec_xcat.api`, except ``serve`` and ``recommend``, which
call the serving package (the server, and its REST client).

Problems the user can fix (bad data, bad config, missing files) end in one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from tfrec_xcat.errors import XcatError
from tfrec_xcat.options import add_data_options, config_from_args, one_line_errors

PROG = "tfrec-xcat"


def cmd_data_inspect(args: argparse.Namespace) -> int:
    from tfrec_xcat.api import inspect_data
    from tfrec_xcat.data.inspect import format_inspection

    info = inspect_data(config_from_args(args), seed=args.seed)
    print(json.dumps(info, indent=2) if args.json else format_inspection(info))
    if args.strict and any(info["bad_rows"].values()):
        print(f"{PROG}: error: --strict: the data has bad rows (listed above)", file=sys.stderr)
        return 1
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    from tfrec_xcat.api import synth
    from tfrec_xcat.config import load_config

    config = load_config(args.config, {"synthetic": {"seed": args.seed, "scale": args.scale}})
    path = synth(config, args.out)
    print(f"wrote the synthetic shop ({config.synthetic.users:,} users) to {path}")
    return 0


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from tfrec_xcat.api import prepare_tfds

    builders = prepare_tfds(config_from_args(args), seed=args.seed, cache=args.cache)
    for table, builder in builders.items():
        splits = ", ".join(f"{name} {info.num_examples:,}" for name, info in builder.info.splits.items())
        print(f"xcat_shop/{table}: {splits}")
    # the ROOT data_dir of both tables: tfds.builder(name, data_dir=...) needs it (not the versioned folder below)
    root = builders["interactions"].data_dir_root
    print(f"data_dir: {root}")
    print(f'by name: import tfrec_xcat.data.tfds_builder; tfds.builder("xcat_shop/interactions", data_dir="{root}")')
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from tfrec_xcat.api import run
    from tfrec_xcat.config import load_config
    from tfrec_xcat.report import verdict

    seeds = _seeds(args.seeds) if args.seeds else None
    base = config_from_args(args)
    config = load_config(args.config, {**{"data": base.to_dict()["data"]}, "run": {"seeds": seeds}})
    models = args.models.split(",") if args.models else None
    out = Path(args.out)
    created = not out.exists()
    try:
        metrics = run(config, args.out, models, progress=not args.quiet)
    except BaseException:
        if created:
            _remove_empty(out)  # a run that failed before writing anything leaves no empty --out behind
        raise
    print(verdict(metrics).replace("**", ""))
    print(f"wrote {args.out}/metrics.json, report.md, report.html")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from tfrec_xcat.api import train

    metrics = train(config_from_args(args), args.out, progress=not args.quiet)
    result = metrics["models"]["transfer"]
    print(
        f"cold-start val NDCG@10 {result['cold_start_val']['ndcg@10']:.4f}, "
        f"cold-start test NDCG@10 {result['cold_start_test']['ndcg@10']:.4f}, "
        f"{result['examples_per_second']:,.0f} examples/s; final stage {result['stage']['name']}; wrote {args.out}"
    )
    work = Path(args.out) / "work"
    print(f"per-epoch checkpoints: {work / 'checkpoints'}/<stage>/; model for export: {Path(args.out) / 'model'}")
    print(f"TensorBoard logs: {work / 'tensorboard'} (tensorboard --logdir {work / 'tensorboard'})")
    return 0


def _seeds(text: str) -> list[int]:
    """``--seeds 0,1,2`` as integers; one clear line for anything else."""
    seeds = []
    for part in text.split(","):
        try:
            seeds.append(int(part.strip()))
        except ValueError:
            raise XcatError(f"--seeds: {part.strip()!r} is not an integer (expected e.g. --seeds 0,1,2)") from None
    return seeds


def _remove_empty(folder: Path) -> None:
    """Remove ``folder`` and its subfolders if no file is in them."""
    if not folder.is_dir() or any(p.is_file() or p.is_symlink() for p in folder.rglob("*")):
        return
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        sub.rmdir()
    folder.rmdir()


def _check_port_free(host: str, port: int, flag: str) -> None:
    """One clear line, naming the flag, when ``host:port`` cannot be listened on (busy, or not allowed)."""
    import socket

    if not 0 <= port <= 65535:
        raise XcatError(f"{flag} {port}: not a port number (0-65535)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise XcatError(f"--host {host}: cannot resolve: {exc}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: TIME_WAIT is no conflict
        try:
            probe.bind(address)
        except OSError as exc:
            raise XcatError(
                f"cannot listen on {host}:{port} ({flag}): {exc.strerror or exc}; is another server running there? "
                f"choose another port with {flag}"
            ) from None


def cmd_export(args: argparse.Namespace) -> int:
    from tfrec_xcat.api import export

    written = export(args.run, args.out)
    for name, path in written.items():
        print(f"{name}: {path}")
    print(f"TF Serving config: {args.out}/models.config, {args.out}/batching_parameters.txt")
    return 0


def cmd_reindex(args: argparse.Namespace) -> int:
    from tfrec_xcat.api import reindex

    text = [c for c in args.text_columns.split(",") if c] if args.text_columns is not None else None
    result = reindex(
        args.models,
        args.items,
        remove=args.remove,
        replace=args.replace,
        text_columns=text,
        new_item_slots=args.new_item_slots,
    )
    print(
        f"xcat_retrieval: published version {result.version} (from version {result.previous}): {result.added} added, "
        f"{result.replaced} replaced, {result.removed} removed; {result.items:,} items"
    )
    if result.item_tower_version is not None:
        prior = f", prior {result.new_item_prior:.4f}" if result.new_item_prior is not None else ""
        print(f"embedded by xcat_item_tower version {result.item_tower_version} (new items: popularity 0{prior})")
    if result.new_item_slots is not None:
        print(f"recommend: {result.new_item_slots} new-arrival slot(s)")
    print(f"wrote {result.path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from tfrec_xcat.serving.server import serve

    _check_port_free(args.host, args.rest_port, "--rest-port")
    _check_port_free(args.host, args.grpc_port, "--grpc-port")
    try:
        serve(
            args.models,
            args.host,
            args.rest_port,
            args.grpc_port,
            args.poll_seconds,
            enable_batching=args.enable_batching,
            batching_parameters_file=args.batching_parameters_file,
        )
    except ValueError as exc:  # an unreadable batching parameters file
        raise XcatError(str(exc)) from None
    except OSError as exc:  # a port taken between the check and the bind; gRPC's bind failure is an OSError too
        raise XcatError(
            f"cannot serve on {args.host} (--rest-port {args.rest_port}, --grpc-port {args.grpc_port}): "
            f"{exc.strerror or exc}"
        ) from None
    except RuntimeError as exc:  # grpcio raises RuntimeError("Failed to bind ...") in some versions
        if "bind" not in str(exc).lower():
            raise
        raise XcatError(f"cannot serve on {args.host} (--grpc-port {args.grpc_port}): {exc}") from None
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    import time
    from http.client import HTTPException

    from tfrec_xcat.serving.client import RestClient, ServingError

    try:
        client = RestClient(args.server)
    except ValueError as exc:
        raise XcatError(f"--server: {exc}") from None
    history = [h for h in (args.history or "").split(",") if h] or [""]
    deadline = time.monotonic() + args.wait
    said = False
    while True:
        try:
            instances = [{"user_id": args.user, "history": history, "k": args.k}]
            reply = client.predict("xcat_retrieval", instances, signature=args.signature)
            break
        except (OSError, HTTPException, ServingError) as exc:
            if time.monotonic() > deadline:
                raise XcatError(f"no answer from {args.server} within --wait {args.wait:g} s: {exc}") from None
            if not said:
                print(f"waiting up to {args.wait:g} s for {args.server} to answer ({exc})", file=sys.stderr, flush=True)
                said = True
            time.sleep(0.5)
    row = reply["predictions"][0]
    how = "popularity (unknown user, no usable history)" if row["popularity_fallback"] else "the model"
    print(f"top {len(row['item_ids'])} for user {args.user} (from {how}):")
    for rank, (item, score) in enumerate(zip(row["item_ids"], row["scores"], strict=True), 1):
        print(f"  {rank:>3}. {item}  {score:.4f}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from tfrec_xcat.api import tune
    from tfrec_xcat.config import load_config
    from tfrec_xcat.tuning.tuner import OBJECTIVE

    base = config_from_args(args)
    search = {"tuner": args.tuner, "max_trials": args.max_trials, "max_minutes": args.max_minutes}
    config = load_config(args.config, {"data": base.to_dict()["data"], "tune": search})
    summary = tune(config, args.out, overwrite=args.overwrite)
    best = summary["best"]
    if best:
        print(
            f"{summary['trials']} trials; best: trial {best['trial']} {OBJECTIVE} {best[OBJECTIVE]:.4f}; "
            f"config in {args.out}/best.toml"
        )
    else:
        print(f"{summary['trials']} trials; none finished")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from tfrec_xcat.api import score

    manifest = score(
        config_from_args(args),
        args.model,
        args.out,
        users=args.users,
        k=args.k,
        version=args.version,
        block=args.block,
        index=args.index,
        progress=not args.quiet,
    )
    unknown, sample = manifest["unknown_users"], manifest["unknown_sample"]
    if unknown:
        print(
            f"{unknown:,} user(s) not in the data, scored by the cold-start/popularity path: "
            f"{', '.join(sample)}{' ...' if unknown > len(sample) else ''}",
            file=sys.stderr,
        )
    print(
        f"scored {manifest['users']:,} users ({manifest['rows']:,} rows in {manifest['shards']} shards) into {args.out}"
        f" (signature: {manifest['signature']})"
    )
    if "index_quality" in manifest:
        quality = manifest["index_quality"]
        print(
            f"{args.index}: recall@{args.k} {quality['recall_at_k']:.3f} against exact search on "
            f"{quality['sample_users']:,} users, {quality['speedup']:.1f}x its speed"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    from tfrec_xcat import __version__

    parser = argparse.ArgumentParser(prog=PROG, description="Cross-category recommendation by transfer learning.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="inspect, generate or prepare data").add_subparsers(
        dest="data_command", required=True
    )
    p = data.add_parser("inspect", help="counts per category, overlap users, split sizes, bad rows")
    add_data_options(p)
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--strict", action="store_true", help="exit 1 if any row was bad")
    p.set_defaults(func=cmd_data_inspect)

    p = data.add_parser("synth", help="write the synthetic shop in the neutral layout")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--config", help="TOML config file ([synthetic] section)")
    p.add_argument("--scale", type=float, help="multiply the number of users (and interactions)")
    p.add_argument("--seed", type=int, help="generator seed")
    p.set_defaults(func=cmd_data_synth)

    p = data.add_parser("prepare", help="prepare TFDS TFRecord shards (cached by input content)")
    add_data_options(p)
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    p.add_argument("--cache", help="cache directory (default: $TFREC_XCAT_CACHE or ~/.cache/tfrec-xcat)")
    p.set_defaults(func=cmd_data_prepare)

    p = sub.add_parser("train", help="train the configured transfer model; checkpoints, resume, TensorBoard")
    add_data_options(p)
    p.add_argument("--out", required=True, help="run directory (re-running the same command resumes)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="write the trained model as TF Serving SavedModels (stock ops only)")
    p.add_argument("--run", required=True, help="run directory of tfrec-xcat train")
    p.add_argument("--out", default="saved_models", help="models folder (default saved_models/)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "reindex", help="publish a new xcat_retrieval version with items added or removed, without retraining"
    )
    p.add_argument("--models", default="saved_models", help="models folder (default saved_models/)")
    p.add_argument("--items", help="CSV/Parquet of items to add: item_id, category (the catalogue's) and text columns")
    p.add_argument("--remove", help="CSV/Parquet with an item_id column: discontinued items to drop")
    p.add_argument(
        "--replace", action="store_true", help="re-embed --items already in the catalogue (default: an error)"
    )
    p.add_argument(
        "--text-columns", help="comma-separated text columns of --items (default: all but item_id and category)"
    )
    p.add_argument(
        "--new-item-slots",
        type=int,
        metavar="N",
        help="recommend's new-arrival slots from this version on: the last N positions of the top "
        "new_item_window (10) go to never-bought items (0: off; default: keep the version's)",
    )
    p.set_defaults(func=cmd_reindex)

    p = sub.add_parser("serve", help="serve saved_models/ with TF Serving's REST and gRPC API")
    p.add_argument("--models", default="saved_models", help="models folder (default saved_models/)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--rest-port", type=int, default=8501, help="REST API port (default 8501, as TF Serving; 0: any free)"
    )
    p.add_argument(
        "--grpc-port", type=int, default=8500, help="gRPC API port (default 8500, as TF Serving; 0: any free)"
    )
    p.add_argument("--poll-seconds", type=float, default=2.0, help="how often to look for new versions")
    p.add_argument(
        "--enable-batching",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="batch concurrent requests as TF Serving's --enable_batching does (default on; see docs/serving.md)",
    )
    p.add_argument(
        "--batching-parameters-file",
        help="TF Serving batching parameters (default: MODELS/batching_parameters.txt if present)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("recommend", help="ask a running server (REST) for one user's recommendations")
    p.add_argument("--server", default="http://127.0.0.1:8501", help="REST address of the server (default %(default)s)")
    p.add_argument("--user", required=True, help="user id (may be unknown)")
    p.add_argument("--history", help="comma-separated recent item ids, oldest first")
    p.add_argument("--k", type=int, default=10, help="how many recommendations (default 10)")
    p.add_argument(
        "--signature",
        default="serving_default",
        help="serving_default (the two-tower) or recommend (the shipped transfer, retrieve → rank)",
    )
    p.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the server to answer (default 10)")
    p.set_defaults(func=cmd_recommend)

    p = sub.add_parser("tune", help="KerasTuner search on cold-start validation NDCG@10; resumable")
    add_data_options(p)
    p.add_argument("--out", required=True, help="tune directory (re-running continues the search there)")
    p.add_argument("--tuner", choices=["random", "bayesian", "hyperband"], help="search algorithm")
    p.add_argument("--max-trials", type=int, help="number of trials (random, bayesian)")
    p.add_argument("--max-minutes", type=float, help="start no new trial after this many minutes")
    p.add_argument("--overwrite", action="store_true", help="start the search afresh")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("score", help="offline top-k for many users from the exported xcat_retrieval (resumable)")
    add_data_options(p)
    p.add_argument("--model", default="saved_models/xcat_retrieval", help="exported retrieval model folder")
    p.add_argument("--version", type=int, help="model version (default: the highest)")
    p.add_argument("--users", default="all", help="'all' or a file with one user id per line")
    p.add_argument("--k", type=int, default=100, help="items per user (default 100)")
    p.add_argument("--out", required=True, help="output folder of Parquet shards")
    p.add_argument("--block", type=int, default=4096, help="users per shard")
    p.add_argument(
        "--index",
        choices=["brute", "scann"],
        default="brute",
        help="exact search, or ScaNN (optional extra; its recall@k and speed-up are measured and reported)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("run", help="split, fit every model, evaluate, write metrics.json and the report")
    add_data_options(p)
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--seeds", help="comma-separated split seeds (default: [run] seeds of the config, or 0)")
    p.add_argument("--models", help="comma-separated models (default: all)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s", force=True
    )
    return one_line_errors(PROG, lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
