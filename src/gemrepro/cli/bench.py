"""``gemrepro bench``: throughput measured side by side in one run, reported as ratios.

Every command times what it compares in turns (A, B, A, B, ...) on a fixed number of torch threads
(default 1, as the rest of the package) and prints the median round's ratio with the lowest and
highest round beside it (:mod:`gemrepro.benchmarks.timing`).
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser("bench", help="measure throughput on this machine")
    sub = bench.add_subparsers(dest="bench_command", metavar="WHAT", required=True)

    labelling = sub.add_parser(
        "labelling",
        help="labels per second: one Dask worker vs all workers (one thread each), in turns",
        description="Label the same configurations on a one-worker and an all-workers Dask cluster, "
        "taking turns; both clusters start, and every worker labels once, before any clock runs.",
    )
    labelling.add_argument("--reference", default="gfn2-xtb")
    labelling.add_argument("--configurations", type=int, default=600, help="labelled per round and path (default 600)")
    labelling.add_argument("--workers", type=int, default=None, help="workers of the parallel run (default: cores)")
    labelling.add_argument("--repeats", type=int, default=3, help="rounds of both paths, in turns (default 3)")
    labelling.add_argument("--json", action="store_true", help="print one JSON object")
    labelling.set_defaults(func=_labelling)

    model = sub.add_parser(
        "model",
        help="energy+force evaluations per second, cost per atom vs. size",
        description="Time one energy+force evaluation of a random-weight GemNet (the cost does not depend "
        "on the weights) on a QM7-X-like batch and on single molecules of growing size, every case once "
        "per round, each timed call after an untimed one on the same batch; the ratio is the cost per "
        "atom of the largest molecule over that of the median size (near 1: linear in size).",
    )
    model.add_argument("--preset", default="tiny", help="tiny, small or paper")
    model.add_argument("--variant", default="T", help="T or Q")
    model.add_argument("--batch-size", type=int, default=32, help="QM7-X-sized molecules per batch")
    model.add_argument("--device", default="auto", help="auto, cpu or cuda")
    model.add_argument("--repeats", type=int, default=3, help="rounds of all cases, in turns (default 3)")
    model.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the rest of gemrepro)")
    model.add_argument(
        "--compare",
        action="store_true",
        help="time GemNet-T and GemNet-Q on the same batch, in turns, and print the Q/T cost ratio",
    )
    model.add_argument("--json", action="store_true", help="print one JSON object")
    model.set_defaults(func=_model)

    try:  # the batched-MD benchmark lives with the MD command
        # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
        from gemrepro.cli.md import add_bench_md
    except ImportError:
        pass
    else:
        add_bench_md(sub)


def _check_counts(args: argparse.Namespace, *names: str) -> None:
    """Refuse a count below 1 among ``names`` (attribute names of ``args``), naming its option."""
    for name in names:
        value = getattr(args, name)
        if value < 1:
            raise ValueError(f"--{name.replace('_', '-')}: expected at least 1, got {value}")


def _labelling(args: argparse.Namespace) -> int:
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    from gemrepro.benchmarks.labelling import labelling_throughput
    from gemrepro.benchmarks.timing import ratio_text

    _check_counts(args, "configurations", "repeats")
    if args.workers is not None:
        _check_counts(args, "workers")
    result = labelling_throughput(args.configurations, args.reference, args.workers, repeats=args.repeats)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{result['reference']}, {result['n_configurations']} configurations per round, "
        f"{result['threads_per_worker']} thread per worker, median of {result['repeats']} rounds in turns"
    )
    print(f"1 worker:  {result['single_worker_per_s']:9.1f} labels/s")
    print(f"{result['n_workers']} workers: {result['all_workers_per_s']:9.1f} labels/s")
    print(f"ratio:     {ratio_text(result)}")
    return 0


def _model(args: argparse.Namespace) -> int:
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    import torch

    from gemrepro.benchmarks import model as bench
    from gemrepro.benchmarks.timing import ratio_text
    from gemrepro.cli.model import parse_variant
    from gemrepro.model import build_model, resolve_device

    _check_counts(args, "batch_size", "repeats", "threads")
    torch.set_num_threads(args.threads)
    if args.compare:
        return _compare(args)
    variant = parse_variant(args.variant)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    model = build_model(variant, args.preset).to(device)
    rows: list[dict[str, Any]] = bench.benchmark_model(model, batch_size=args.batch_size, repeats=args.repeats)
    result = {
        "preset": args.preset,
        "variant": variant,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "rows": rows,
        **bench.per_atom_ratio(rows),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"random GemNet-{result['variant']} preset {args.preset} on {device}, {result['threads']} torch threads, "
        f"median of {args.repeats} rounds in turns"
    )
    print(
        f"{'case':>6} {'atoms':>6} {'structures':>10} {'evals/s':>9} {'atoms/s':>9} {'us/atom':>8} {'rounds (ms)':>17}"
    )
    for r in rows:
        rounds = f"{1e3 * r['seconds_min']:.1f}-{1e3 * r['seconds_max']:.1f}"
        print(
            f"{r['case']:>6} {r['num_atoms']:>6} {r['num_structures']:>10} {r['evaluations_per_second']:>9.1f} "
            f"{r['atoms_per_second']:>9.0f} {r['microseconds_per_atom']:>8.0f} {rounds:>17}"
        )
    print(f"cost per atom, {result['largest_atoms']} atoms over {result['median_atoms']} atoms: {ratio_text(result)}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    """GemNet-T against GemNet-Q of one preset on the same batch: the cost of the quadruplets."""
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    from gemrepro.benchmarks.model import compare_variants
    from gemrepro.benchmarks.timing import ratio_text

    result = compare_variants(batch_size=args.batch_size, preset=args.preset, repeats=args.repeats, device=args.device)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"preset {result['preset']} on {result['device']}, {result['torch_threads']} torch threads: "
        f"{result['batch_size']} molecules, {result['num_atoms']} atoms, {result['num_edges']} edges, "
        f"{result['num_triplets']} triplets, {result['num_quadruplets']} quadruplets; "
        f"median of {result['repeats']} rounds, T and Q in turns"
    )
    for variant in ("T", "Q"):
        print(
            f"GemNet-{variant}: {result[f'parameters_{variant}']:>9,} parameters, "
            f"{result[f'evaluations_per_second_{variant}']:9.1f} evals/s"
        )
    print(f"cost ratio Q/T: {ratio_text(result)}")
    return 0
