"""``gemrepro estimate``: GPU-hours, CPU-hours, disk and memory a scale will take.

Per-step costs are measured on this machine (a few training steps, MD steps and reference
labels; cached, so a second call is instant) and scaled by the scale's sizes. The computational
scale the paper reports is printed beside ours.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "estimate", help="expected GPU/CPU-hours, disk and memory of a scale", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--scale", required=True, help="tiny, small or paper")
    parser.add_argument("--reference", default="gfn2-xtb", help="reference method of the labels")
    parser.add_argument("--device", default="cpu", help="device to measure training and MD steps on (cpu, cuda, auto)")
    parser.add_argument(
        "--gpu-speedup",
        type=float,
        default=None,
        help="assumed GPU speed-up over this CPU when measuring on the CPU (default 30)",
    )
    parser.add_argument("--data-dir", default=None, help="where the artifact cache lives (default: <repo>/data)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    from gemrepro.cache.paths import artifacts_dir
    from gemrepro.config.scales import get_scale
    from gemrepro.studies.estimate import Assumptions, estimate_resources, paper_campaign

    assumptions = Assumptions() if args.gpu_speedup is None else Assumptions(gpu_speedup_over_cpu=args.gpu_speedup)
    estimate = estimate_resources(
        get_scale(args.scale), artifacts_dir(args.data_dir), args.device, args.reference, assumptions
    )
    m = estimate.measurements
    table = estimate.table()
    table["amount"] = [f"{a:,.3g}" if a < 1000 else f"{a:,.0f}" for a in table["amount"]]
    print(
        f"resource estimate, scale {args.scale}: per-step costs measured on {m['hardware']}, "
        f"device {m['device']} ({m['torch_threads']} torch threads)"
    )
    print(table.to_string(index=False, justify="left"))
    if not m["device"].startswith("cuda"):
        print(
            f"assumption: a GPU runs GemNet steps {assumptions.gpu_speedup_over_cpu:g}x faster than this CPU "
            "(no GPU was measured; set --gpu-speedup or measure with --device cuda)"
        )
    print("assumption: training runs the recipe's maximum steps; validation passes are not counted")
    print("\npaper (Stocker et al.):")
    print(paper_campaign().to_string(index=False, justify="left"))
    assert estimate.artifact is not None  # estimate_resources always measures (or reads) its artifact
    print(f"measurements: {estimate.artifact.provenance()}")
    return 0
