"""``gemrepro bench``: throughput measured side by side in one run, reported as ratios."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser("bench", help="measure throughput on this machine")
    sub = bench.add_subparsers(dest="bench_command", metavar="WHAT", required=True)

    labelling = sub.add_parser("labelling", help="labels per second: one Dask worker vs all workers")
    labelling.add_argument("--reference", default="gfn2-xtb")
    labelling.add_argument("--configurations", type=int, default=2000)
    labelling.add_argument("--workers", type=int, default=None, help="workers of the parallel run (default: cores)")
    labelling.add_argument("--json", action="store_true", help="print one JSON object")
    labelling.set_defaults(func=_labelling)

    model = sub.add_parser("model", help="energy+force evaluations per second, cost per atom vs. size")
    model.add_argument("--preset", default="tiny", help="tiny, small or paper")
    model.add_argument("--variant", default="T", help="T or Q")
    model.add_argument("--batch-size", type=int, default=32, help="QM7-X-sized molecules per batch")
    model.add_argument("--device", default="auto", help="auto, cpu or cuda")
    model.add_argument("--repeats", type=int, default=3)
    model.add_argument(
        "--compare",
        action="store_true",
        help="time GemNet-T and GemNet-Q on the same batch and print the Q/T cost ratio",
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


def _labelling(args: argparse.Namespace) -> int:
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    from gemrepro.benchmarks.labelling import labelling_throughput

    if args.configurations < 1:
        raise ValueError(f"--configurations must be at least 1, got {args.configurations}")
    result = labelling_throughput(args.configurations, args.reference, args.workers)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['reference']}, {result['n_configurations']} configurations: "
            f"1 worker {result['single_worker_per_s']:.1f} labels/s, "
            f"{result['n_workers']} workers {result['all_workers_per_s']:.1f} labels/s, "
            f"ratio {result['ratio']:.2f}"
        )
    return 0


def _model(args: argparse.Namespace) -> int:
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    import torch

    from gemrepro.benchmarks import model as bench
    from gemrepro.cli.model import parse_variant
    from gemrepro.model import build_model, resolve_device

    if args.compare:
        return _compare(args)
    variant = parse_variant(args.variant)
    device = resolve_device(args.device)
    model = build_model(variant, args.preset).to(device)
    rows = bench.benchmark_model(model, batch_size=args.batch_size, repeats=args.repeats)
    result = {
        "preset": args.preset,
        "variant": variant,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "rows": rows,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"GemNet-{result['variant']} preset {args.preset} on {device} ({result['threads']} threads)")
    print(f"{'case':>6} {'atoms':>6} {'structures':>10} {'evals/s':>9} {'atoms/s':>9} {'us/atom':>8}")
    for r in rows:
        print(
            f"{r['case']:>6} {r['num_atoms']:>6} {r['num_structures']:>10} {r['evaluations_per_second']:>9.1f} "
            f"{r['atoms_per_second']:>9.0f} {r['microseconds_per_atom']:>8.0f}"
        )
    return 0


def _compare(args: argparse.Namespace) -> int:
    """GemNet-T against GemNet-Q of one preset on the same batch: the cost of the quadruplets."""
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    from gemrepro.benchmarks.model import compare_variants

    if args.batch_size < 1 or args.repeats < 1:
        raise ValueError(f"--batch-size and --repeats: expected at least 1, got {args.batch_size} and {args.repeats}")
    result = compare_variants(batch_size=args.batch_size, preset=args.preset, repeats=args.repeats, device=args.device)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"preset {result['preset']} on {result['device']}: {result['batch_size']} molecules, "
        f"{result['num_atoms']} atoms, {result['num_edges']} edges, {result['num_triplets']} triplets, "
        f"{result['num_quadruplets']} quadruplets"
    )
    for variant in ("T", "Q"):
        print(
            f"GemNet-{variant}: {result[f'parameters_{variant}']:>9,} parameters, "
            f"{result[f'evaluations_per_second_{variant}']:9.1f} evals/s"
        )
    print(f"cost ratio Q/T: {result['cost_ratio_q_to_t']:.2f}x")
    return 0
