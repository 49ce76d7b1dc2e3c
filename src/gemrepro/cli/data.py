"""``gemrepro data``: build the labelled dataset of a scale, summarise any supported file."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="build or inspect datasets")
    sub = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    build = sub.add_parser("build", help="sample and label the QM7-X-style dataset of a scale")
    build.add_argument("--scale", default="tiny", help="tiny, small or paper (default: tiny)")
    build.add_argument("--reference", default="gfn2-xtb", help="reference method: gfn2-xtb or pbe0")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--workers", type=int, default=None, help="local Dask workers (default: one per core)")
    build.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    build.add_argument("--data-dir", default=None, help="data folder (default: <repo>/data or $GEMREPRO_DATA)")
    build.set_defaults(func=_build)

    info = sub.add_parser("info", help="summarise a QM7-X HDF5, MD17/rMD17 npz or any ASE-readable file")
    info.add_argument("file")
    info.add_argument("--format", default=None, help="qm7x, md17, rmd17 or an ASE format (default: detect)")
    info.add_argument(
        "--energy-unit",
        default=None,
        help="energy unit of the file (e.g. kcal/mol; forces in it per Å); default the format's: "
        "kcal/mol for (r)MD17 npz, else eV",
    )
    info.add_argument("--json", action="store_true", help="print the summary as JSON")
    info.set_defaults(func=_info)


def _build(args: argparse.Namespace) -> int:
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    from gemrepro.cache.paths import artifacts_dir
    from gemrepro.config.scales import get_scale
    from gemrepro.data.build import build_dataset

    artifact = build_dataset(
        scale=get_scale(args.scale),
        reference=args.reference,
        seed=args.seed,
        scheduler=args.scheduler,
        n_workers=args.workers,
        root=artifacts_dir(args.data_dir),
    )
    m = artifact.manifest
    print(f"dataset: {artifact.file('qm7x.hdf5')}")
    print(
        f"{m['n_configurations']} configurations of {m['n_molecules']} molecules, "
        f"{m['n_failed']} failed labels, labelling CPU time {m['label_cpu_time_s']:.1f} s"
    )
    return 0


def _info(args: argparse.Namespace) -> int:
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    from gemrepro.data.formats import format_summary, summarize

    options = {"energy_unit": args.energy_unit} if args.energy_unit else {}
    summary = summarize(args.file, format=args.format, **options)
    if args.energy_unit is None and summary["implausible_in_ev"]:  # a file carries no unit: say when eV cannot be it
        print(
            f"gemrepro data info: warning: {args.file}: {summary['implausible_in_ev']}; "
            "pass --energy-unit with the file's unit (e.g. kcal/mol)",
            file=sys.stderr,
        )
    print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))
    return 0
