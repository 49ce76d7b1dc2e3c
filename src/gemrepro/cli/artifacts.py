"""``gemrepro artifacts``: pack the results of a scale into a versioned bundle, or unpack one."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    artifacts = subparsers.add_parser("artifacts", help="ship computed results as a bundle (pack / unpack)")
    sub = artifacts.add_subparsers(dest="artifacts_command", metavar="ACTION", required=True)

    pack = sub.add_parser("pack", help="bundle every artifact the chapters of a scale used (after `make book`)")
    pack.add_argument("--scale", default="small", help="tiny, small or paper (default: small)")
    pack.add_argument("--out", default=None, help="bundle file (default: gemrepro-artifacts-<scale>-v<version>.tar.gz)")
    pack.add_argument("--log", default=None, help="artifact log (default: _build/<scale>/artifacts.txt)")
    pack.add_argument("--data-dir", default=None, help="data folder (default: <repo>/data or $GEMREPRO_DATA)")
    pack.set_defaults(func=_pack)

    ship = sub.add_parser(
        "ship-models",
        help="train (if missing) and bundle every learning-curve model of a scale, "
        "its temperature sweep's MD runs and the long runs of its sparsest and densest, into "
        "models/<scale>.tar.xz, which the chapters use before computing",
    )
    ship.add_argument("--scale", default="tiny", help="tiny, small or paper (default: tiny)")
    ship.add_argument("--data-dir", default=None, help="data folder (default: <repo>/data or $GEMREPRO_DATA)")
    ship.set_defaults(func=_ship)

    arms = sub.add_parser(
        "ship-arms",
        help="compute (where missing) the pretraining chapter's arms study (models of both arms, pilot and "
        "stability runs) on --workers processes and bundle it into models/<scale>-arms.tar.xz",
    )
    arms.add_argument("--scale", default="tiny", help="tiny, small or paper (default: tiny)")
    arms.add_argument("--workers", type=int, default=2, help="processes, each single-threaded (default: 2)")
    arms.add_argument("--data-dir", default=None, help="data folder (default: <repo>/data or $GEMREPRO_DATA)")
    arms.set_defaults(func=_ship_arms)

    unpack = sub.add_parser("unpack", help="verify a bundle and add its artifacts to the cache")
    unpack.add_argument("bundle")
    unpack.add_argument("--data-dir", default=None, help="data folder (default: <repo>/data or $GEMREPRO_DATA)")
    unpack.set_defaults(func=_unpack)


def _pack(args: argparse.Namespace) -> int:
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    from gemrepro.cache import bundle
    from gemrepro.cache.paths import artifacts_dir

    log = Path(args.log) if args.log else bundle.access_log(args.scale)
    entries = bundle.read_access_log(log)
    out = Path(args.out or bundle.default_bundle_name(args.scale))
    bundle.pack(entries, out, args.scale, artifacts_dir(args.data_dir))
    print(f"{out}: {len(entries)} artifacts of scale {args.scale}, {out.stat().st_size / 1e6:.1f} MB")
    return 0


def _ship(args: argparse.Namespace) -> int:
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    from gemrepro.cache.paths import artifacts_dir
    from gemrepro.config.scales import get_scale
    from gemrepro.stress.cached import STAGE, chapter_audits
    from gemrepro.studies.long_runs import ship

    scale, root = get_scale(args.scale), artifacts_dir(args.data_dir)
    audits = chapter_audits(scale, root=root, progress=True)  # the stress chapter's four audits
    out, n = ship(scale, root, extra=[f"{STAGE}/{artifact.key}" for artifact, _ in audits.values()])
    print(
        f"{out}: {n} artifacts (learning-curve models, MD runs, PBE0 labels, audits) of scale {args.scale}, "
        f"{out.stat().st_size / 1e6:.1f} MB"
    )
    return 0


def _ship_arms(args: argparse.Namespace) -> int:
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    from gemrepro.cache.paths import artifacts_dir
    from gemrepro.config.scales import get_scale
    from gemrepro.studies.pretraining_arms import ship

    if args.workers < 1:
        raise ValueError(f"--workers: expected a positive number of processes, got {args.workers}")
    out, n = ship(get_scale(args.scale), artifacts_dir(args.data_dir), workers=args.workers)
    print(f"{out}: {n} artifacts (the arms study) of scale {args.scale}, {out.stat().st_size / 1e6:.1f} MB")
    return 0


def _unpack(args: argparse.Namespace) -> int:
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    from gemrepro.cache import bundle
    from gemrepro.cache.paths import artifacts_dir

    report = bundle.unpack(Path(args.bundle), artifacts_dir(args.data_dir))
    meta = report.metadata
    print(
        f"{args.bundle}: scale {meta['scale']}, gemrepro {meta['gemrepro_version']} (git {meta['git_revision']}); "
        f"{len(report.added)} artifacts added, {len(report.present)} already present"
    )
    print(f"next: make book SCALE={meta['scale']}  (re-executes the chapters from these artifacts)")
    return 0
