"""``gemrepro campaign``: compute everything a scale needs as one Dask task graph.

Labels per molecule, the dataset, every model, every MD run and every relabelling batch are
tasks keyed like the artifacts the chapters load; finished ones are skipped, so a killed
campaign started again only does what is left. ``--dry-run`` lists the tasks as done/pending.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "campaign", help="run a scale's whole computation on Dask (resumable)", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--scale", required=True, help="tiny, small or paper")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference", default="gfn2-xtb", help="reference method of the labels")
    parser.add_argument("--data-dir", default=None, help="where the artifact cache lives (default: <repo>/data)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--scheduler", default=None, metavar="ADDR", help="address of a running Dask scheduler")
    where.add_argument(
        "--slurm",
        default=None,
        metavar="CONFIG",
        help="YAML description of a dask-jobqueue SLURM cluster (see configs/slurm.example.yaml)",
    )
    parser.add_argument("--workers", type=int, default=None, help="LocalCluster workers (default: one per core)")
    parser.add_argument("--device", default="cpu", help="device of training and MD on the workers (cpu, cuda)")
    parser.add_argument("--dry-run", action="store_true", help="list the tasks as done/pending and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    from gemrepro.cache.cluster import dask_client, load_slurm_config
    from gemrepro.cache.paths import artifacts_dir
    from gemrepro.cli import UserError
    from gemrepro.config.scales import get_scale
    from gemrepro.studies.campaign import describe, plan_campaign, run_campaign, summarize

    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers: expected a positive number of workers, got {args.workers}")
    slurm = load_slurm_config(args.slurm) if args.slurm else None  # a bad config fails before any planning
    campaign = plan_campaign(
        get_scale(args.scale), args.seed, args.reference, artifacts_dir(args.data_dir), args.device
    )
    status = campaign.status()
    print(f"campaign {args.scale} (seed {args.seed}, {args.reference}) in {campaign.root}")
    print(summarize(status).to_string(index=False))
    if args.dry_run:
        print("\n".join(describe(status)))
        return 0
    if status["done"].all():
        print("nothing to do: every task is done")
        return 0
    with dask_client(args.scheduler, args.workers, slurm=slurm) as client:
        outcome = run_campaign(campaign, client, progress=not args.quiet)
    print(
        f"{len(outcome.finished)} tasks finished, {len(outcome.skipped)} were already done, "
        f"{len(outcome.failed)} failed"
    )
    for name, error in outcome.failed.items():
        print(f"  failed {name}: {error}")
    return 0 if outcome.ok else 1
