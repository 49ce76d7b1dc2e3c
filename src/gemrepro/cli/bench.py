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
    model.add_argument("--json", action="store_true", help="print one JSON object")
    model.set_defaults(func=_model)

    try:  # the batched-MD benchmark lives with the MD command
        from gemrepro.cli.md import add_bench_md
    except ImportError:
        pass
    else:
        add_bench_md(sub)


def _labelling(args: argparse.Namespace) -> int:
    from gemrepro.data.throughput import labelling_throughput

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
    import torch

    from gemrepro.model import bench, resolve_device

    builder = _model_builder(args.variant)
    device = resolve_device(args.device)
    model = builder(args.preset).to(device)
    rows = bench.benchmark_model(model, batch_size=args.batch_size, repeats=args.repeats)
    result = {"preset": args.preset, "variant": args.variant.upper(), "device": str(device),
              "threads": torch.get_num_threads(), "rows": rows}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"GemNet-{result['variant']} preset {args.preset} on {device} ({result['threads']} threads)")
    print(f"{'case':>6} {'atoms':>6} {'structures':>10} {'evals/s':>9} {'atoms/s':>9} {'us/atom':>8}")
    for r in rows:
        print(f"{r['case']:>6} {r['num_atoms']:>6} {r['num_structures']:>10} {r['evaluations_per_second']:>9.1f} "
              f"{r['atoms_per_second']:>9.0f} {r['microseconds_per_atom']:>8.0f}")
    return 0


def _model_builder(variant: str):
    from gemrepro import model as models

    variant = variant.upper()
    if variant == "T":
        return models.GemNetT.from_preset
    if variant == "Q" and hasattr(models, "GemNetQ"):
        return models.GemNetQ.from_preset
    raise ValueError(f"unknown model variant {variant!r}: expected T or Q")
