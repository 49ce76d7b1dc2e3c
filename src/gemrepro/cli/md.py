"""``gemrepro md``: batched GemNet MD of molecules x temperatures x seeds; ``md-export``; ``bench md``.

Every (molecule, temperature, seed) combination is one system of a single batched run, so the
whole sweep of a paper figure advances in one tensor program. A system's random seed is derived
from its molecule, temperature and seed number only, so the same system draws the same velocities
and noise whichever other systems share the run (its trajectory then agrees up to the rounding of
a differently sized network batch, which chaos amplifies over long runs).
"""

from __future__ import annotations

import argparse
import json
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from gemrepro.analysis.geometry import element_list
from gemrepro.cli.structures import add_structure_options, check_elements, check_periodic, load_structures


@dataclass(frozen=True)
class MDSystem:
    """One system of a sweep: which structure, at which temperature, with which seed."""

    molecule: str  # the name the user gave (catalog name, SMILES, or ``stem[k]``: frame k of a file)
    key: str  # what the seed follows: the canonical SMILES, or a file frame's structure key
    temperature_K: float
    seed_number: int

    @property
    def seed(self) -> int:
        """A 63-bit seed that depends on this system alone."""
        key = [self.seed_number, zlib.crc32(self.key.encode()), int(round(self.temperature_K * 1000))]
        return int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0] >> 1)


def sweep_systems(structures: dict[str, Atoms], temperatures: list[float], n_seeds: int) -> list[MDSystem]:
    """All (structure x temperature x seed) combinations, structure-major (see :func:`load_structures`)."""
    if not structures:
        raise ValueError("--molecules: expected at least one molecule")
    if not temperatures or not all(np.isfinite(t) and t > 0 for t in temperatures):
        raise ValueError(f"--temperatures: expected positive temperatures in K, got {temperatures}")
    if n_seeds < 1:
        raise ValueError(f"--seeds: expected a positive number of seeds per molecule and temperature, got {n_seeds}")
    return [
        MDSystem(name, atoms.info["key"], float(t), k)
        for name, atoms in structures.items()
        for t in temperatures
        for k in range(n_seeds)
    ]


def check_output(path: str | Path, overwrite: bool = False) -> None:
    """Refuse to replace a file the user did not ask to replace, before any compute.

    ``path`` may be new, or a run in progress (its checkpoint beside it: the run resumes). Any other
    existing file — a dataset, someone's finished trajectory — is kept unless ``overwrite``.
    """
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    from gemrepro.md.runner import checkpoint_path_for

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"--out {path}: is a folder; expected a trajectory file (.h5)")
    if path.exists() and not overwrite and not checkpoint_path_for(path).exists():
        raise ValueError(
            f"--out {path}: exists and is not a run in progress (no {checkpoint_path_for(path).name} "
            "beside it); pass --overwrite to replace it, or choose another path"
        )


def _run(args: argparse.Namespace) -> int:
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    from gemrepro.md import run_md

    check_output(args.out, args.overwrite)
    if not (np.isfinite(args.time_ps) and args.time_ps > 0):
        raise ValueError(f"--time-ps: expected a positive simulation time in ps, got {args.time_ps}")
    if not (np.isfinite(args.dt_fs) and args.dt_fs > 0):
        raise ValueError(f"--dt-fs: expected a positive time step in fs, got {args.dt_fs}")
    n_steps = int(round(args.time_ps * 1000.0 / args.dt_fs))
    if n_steps < 1:
        raise ValueError(f"--time-ps: {args.time_ps} ps is shorter than one {args.dt_fs} fs step")
    structures = load_structures(args.molecules, args.select, box=args.box)
    systems = sweep_systems(structures, args.temperatures, args.seeds)
    potential, stop = _potential_and_stop(args)
    check_periodic(potential, structures, "the GemNet model")
    unknown = check_elements(potential, structures)
    for name, elements in unknown.items():
        print(
            f"gemrepro md: warning: {name} holds {element_list(elements)}, which the model was not trained on; "
            "its results are marked 'unknown_elements'",
            file=sys.stderr,
        )
    summary = run_md(
        potential,
        [structures[s.molecule] for s in systems],
        n_steps=n_steps,
        path=args.out,
        temperatures=[s.temperature_K for s in systems],
        seeds=[s.seed for s in systems],
        dt_fs=args.dt_fs,
        integrator=args.integrator,
        frame_interval=args.frame_interval,
        checkpoint_interval=args.checkpoint_interval,
        device=potential.device,
        progress=not args.quiet,
        stop=stop,
        after_failure=args.after_failure,
        store_last=True,  # a run shorter than the frame interval still ends on disk
    )
    rows: list[dict[str, Any]] = []
    for k, (system, failure) in enumerate(zip(systems, summary.failures, strict=True)):
        rows.append(
            {
                "system": k,
                "molecule": system.molecule,
                "temperature_K": system.temperature_K,
                "seed": system.seed_number,
                "stable": failure is None,
                "failure_time_ps": None if failure is None else failure.time_ps,
                "rule": None if failure is None else failure.rule,
                "unknown_elements": element_list(unknown.get(system.molecule, [])),
            }
        )
    if args.json:
        print(
            json.dumps(
                {
                    "path": str(summary.path),
                    "step": summary.step,
                    "n_frames": summary.n_frames,
                    "resumed_from_step": summary.resumed_from_step,
                    "systems": rows,
                }
            )
        )
        return 0
    if summary.resumed_from_step is not None:
        print(f"resumed from step {summary.resumed_from_step}")
    print(
        f"{summary.path}: {summary.step} steps ({summary.step * args.dt_fs / 1000:g} ps), {summary.n_frames} frames, "
        f"{summary.steps_per_second * len(systems):.1f} system-steps/s"
    )
    width = max(len("molecule"), *(len(r["molecule"]) for r in rows))
    print(
        f"{'system':>6}  {'molecule':<{width}}  {'T/K':>7}  {'seed':>4}  {'stable':<6}  {'failure/ps':>10}  rule"
        + ("  unknown elements" if unknown else "")
    )
    for r in rows:
        time_ps = "" if r["stable"] else f"{r['failure_time_ps']:.4f}"
        print(
            f"{r['system']:>6}  {r['molecule']:<{width}}  {r['temperature_K']:>7g}  {r['seed']:>4}  "
            f"{'yes' if r['stable'] else 'no':<6}  {time_ps:>10}  {r['rule'] or '':<13}"
            + (f"  {r['unknown_elements']}" if unknown else "").rstrip()
        )
    return 0


def _potential_and_stop(args: argparse.Namespace):
    """The run's potential (one model, or the committee of ``--model`` and ``--committee``) and its stop rule."""
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    from gemrepro.integrations.potential import potential_from_checkpoint
    from gemrepro.md.committee import CommitteePotential, UncertaintyStop

    threshold = args.stop_on_uncertainty
    if threshold is not None and not (np.isfinite(threshold) and threshold > 0):
        raise ValueError(f"--stop-on-uncertainty: expected a positive force disagreement in eV/Å, got {threshold}")
    if threshold is not None and not args.committee:
        raise ValueError("--stop-on-uncertainty: needs a committee; add --committee CKPT [CKPT ...]")
    allow = args.allow_unknown_elements
    if not args.committee:
        return potential_from_checkpoint(args.model, device=args.device, allow_unknown_elements=allow), None
    for path in args.committee:
        if not Path(path).is_file():
            raise ValueError(f"--committee: model file {path!r} does not exist")
    members = [
        potential_from_checkpoint(p, device=args.device, allow_unknown_elements=allow)
        for p in [args.model, *args.committee]
    ]
    for path, member in zip(args.committee, members[1:], strict=True):
        if member.variant != members[0].variant:
            raise ValueError(
                f"--committee: {path} is a GemNet-{member.variant}, --model {args.model} a "
                f"GemNet-{members[0].variant}; a committee is of one kind"
            )
    committee = CommitteePotential(members)
    return committee, None if threshold is None else UncertaintyStop(committee, threshold)


def _export(args: argparse.Namespace) -> int:
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    from gemrepro.md import export_extxyz

    if not Path(args.trajectory).is_file():
        raise FileNotFoundError(f"trajectory {args.trajectory!r} does not exist")
    if Path(args.out).exists() and not args.overwrite:
        raise ValueError(f"--out {args.out}: exists; pass --overwrite to replace it, or choose another path")
    n = export_extxyz(args.trajectory, args.system, args.out)
    print(f"{args.out}: {n} frames of system {args.system}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    md = subparsers.add_parser(
        "md",
        help="batched GemNet MD of molecules x temperatures x seeds (resumable)",
        description="Run every (molecule, temperature, seed) system as one batched MD run; "
        "rerunning with the same output resumes from its checkpoint.",
    )
    md.add_argument("--model", required=True, help="trained model or bare GemNet checkpoint file")
    md.add_argument(
        "--molecules",
        nargs="+",
        required=True,
        metavar="NAME_SMILES_OR_FILE",
        help="catalog names (e.g. ethanol, aspirin), SMILES, or structure files (xyz, extxyz, QM7-X "
        "HDF5, MD17 npz, ...): every frame of a file is a system of its own",
    )
    add_structure_options(md, "run")
    md.add_argument("--temperatures", nargs="+", type=float, default=[300.0], metavar="K")
    md.add_argument("--time-ps", type=float, required=True, help="simulated time per system (ps)")
    md.add_argument("--seeds", type=int, default=1, help="seeds per molecule and temperature (default 1)")
    md.add_argument("--dt-fs", type=float, default=0.5, help="time step (fs, default 0.5)")
    md.add_argument("--frame-interval", type=int, default=100, help="steps between saved frames")
    md.add_argument("--checkpoint-interval", type=int, default=1000, help="steps between checkpoints")
    md.add_argument(
        "--out",
        default="md.h5",
        help="trajectory file (HDF5; default md.h5); an unfinished run "
        "there resumes, any other existing file is kept unless --overwrite",
    )
    md.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out file that is not a run in progress"
    )
    md.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    md.add_argument("--integrator", choices=("langevin", "verlet"), default="langevin")
    md.add_argument(
        "--committee",
        nargs="+",
        default=[],
        metavar="CKPT",
        help="more models of the same kind: MD runs on the mean of --model and these",
    )
    md.add_argument(
        "--stop-on-uncertainty",
        type=float,
        default=None,
        metavar="X",
        help="stop a system (rule 'uncertainty') once the committee's max per-atom force disagreement exceeds X eV/Å",
    )
    md.add_argument(
        "--after-failure",
        choices=("freeze", "continue"),
        default="freeze",
        help="freeze a failed system at its failure (default), or record the failure and "
        "continue it to the end (only non-finite numbers freeze it)",
    )
    md.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    md.add_argument("--quiet", action="store_true", help="no progress bar")
    md.set_defaults(func=_run)

    export = subparsers.add_parser("md-export", help="write one system of an MD trajectory file as extended XYZ")
    export.add_argument("trajectory", help="HDF5 trajectory written by `gemrepro md`")
    export.add_argument("--system", type=int, required=True, help="system index (as in the `gemrepro md` summary)")
    export.add_argument(
        "--out", required=True, help="output file (.extxyz); an existing one is kept unless --overwrite"
    )
    export.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    export.set_defaults(func=_export)


def add_bench_md(bench_subparsers: argparse._SubParsersAction) -> None:
    """Add ``gemrepro bench md`` to the sub-commands of ``gemrepro bench``."""
    bench = bench_subparsers.add_parser(
        "md",
        help="system-steps/s: batched engine vs ASE Langevin one system at a time",
        description="Time the batched MD engine against another path on the same model, molecules, seeds "
        "and steps, in turns (A, B, A, B, ...), and print the median round's ratio with the lowest and "
        "highest round. Each clock spans the call a user makes, its first force call included (run_md; "
        "ase Langevin.run per system; torch_sim.integrate; run_queue). Against ase and torchsim an untimed "
        "first round warms both paths up, and a system that fails (a stability rule, or a geometry the "
        "ASE calculator refuses) is reported and left out of both paths; against no-refill failures "
        "are the point and stay in. The model: --model, else a random --preset "
        "with its energy read-out zeroed (the same cost per call, zero forces), else the trained tiny "
        "GemNet-T shipped in models/tiny.tar.xz (a random tiny preset without the bundle).",
    )
    bench.add_argument("--systems", type=int, default=60, help="number of systems (default 60)")
    bench.add_argument(
        "--steps",
        type=int,
        default=None,
        help="MD steps per system on each path (default 20; 400 per trajectory for no-refill)",
    )
    bench.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    bench.add_argument(
        "--repeats", type=int, default=3, help="rounds of both paths, in turns; medians are reported (default 3)"
    )
    source = bench.add_mutually_exclusive_group()
    source.add_argument(
        "--preset",
        default=None,
        help="random-weight GemNet preset with its energy read-out zeroed: the cost of that preset, zero "
        "forces (default: the shipped trained tiny model)",
    )
    source.add_argument("--model", default=None, help="use this model checkpoint instead")
    bench.add_argument("--variant", default="T", help="GemNet variant without --model: T or Q (default T)")
    bench.add_argument(
        "--threads", type=int, default=1, help="torch threads for both paths (default 1, as the rest of gemrepro)"
    )
    bench.add_argument(
        "--against",
        choices=("ase", "torchsim", "no-refill"),
        default="ase",
        help="what the batched engine is compared with: ASE Langevin one system at a time, "
        "TorchSim's batched integrate on the same model (needs the torchsim extra), or itself "
        "without refilling slots, on a campaign of --systems trajectories half of them hot "
        "(default ase)",
    )
    bench.add_argument("--slots", type=int, default=8, help="no-refill: batch slots of the campaign (default 8)")
    bench.add_argument(
        "--hot-K",
        type=float,
        default=6000.0,
        help="no-refill: temperature of every other trajectory, where a small model fails early (default 6000)",
    )
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(func=_bench)


def _bench_model(args: argparse.Namespace, variant: str):
    """The model ``bench md`` times and a line naming it (see ``gemrepro.benchmarks.workload``)."""
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    from gemrepro.benchmarks.workload import shipped_model, silent_random_model
    from gemrepro.model import load_model

    if args.model is not None:
        return load_model(args.model, device=args.device), args.model
    if args.preset is None:
        shipped = shipped_model(variant)
        if shipped is not None:
            return shipped
    preset = args.preset or "tiny"
    return silent_random_model(variant, preset), f"random {preset} GemNet-{variant}, energy read-out zeroed"


def _excluded_lines(result: dict) -> list[str]:
    """What a text report says about systems left out of both paths."""
    rows = result.get("excluded", [])
    lines = [f"left out of both paths: {len(rows)} system(s) that failed"] if rows else []
    return lines + [f"  system {row['system']} ({row['formula']}): {row['reason']}" for row in rows]


def _bench(args: argparse.Namespace) -> int:
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    import torch

    from gemrepro.benchmarks.md import batch_scaling, benchmark_md, benchmark_systems
    from gemrepro.benchmarks.timing import ratio_text
    from gemrepro.cli.model import parse_variant

    if args.systems < 1:
        raise ValueError(f"--systems: expected at least 1, got {args.systems}")
    if args.steps is None:
        args.steps = 400 if args.against == "no-refill" else 20
    if args.steps < 1:
        raise ValueError(f"--steps: expected at least 1, got {args.steps}")
    if args.against == "no-refill" and not 1 <= args.slots <= args.systems:
        raise ValueError(
            f"--slots: expected a number of batch slots in [1, --systems={args.systems}], got {args.slots}"
        )
    if not (np.isfinite(args.hot_K) and args.hot_K > 0):
        raise ValueError(f"--hot-K: expected a positive temperature in K, got {args.hot_K}")
    if args.threads < 1:
        raise ValueError(f"--threads: expected at least 1, got {args.threads}")
    if args.repeats < 1:
        raise ValueError(f"--repeats: expected at least 1, got {args.repeats}")
    variant = parse_variant(args.variant)
    torch.set_num_threads(args.threads)
    model, label = _bench_model(args, variant)
    systems = benchmark_systems(args.systems)
    if args.against == "torchsim":
        return _bench_torchsim(model, label, systems, args)
    if args.against == "no-refill":
        return _bench_refill(model, label, systems, args)
    result: dict[str, Any] = benchmark_md(model, systems, args.steps, device=args.device, repeats=args.repeats)
    result["model"] = label
    if result["n_systems"] > 1:
        timed = [atoms for k, atoms in enumerate(systems) if k not in {row["system"] for row in result["excluded"]}]
        result["scaling"] = batch_scaling(model, timed, device=args.device, repeats=args.repeats)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{label}, {result['n_systems']} systems ({result['n_atoms']} atoms), {result['n_steps']} steps, "
        f"{result['device']}, {result['torch_threads']} torch threads, median of {result['repeats']} rounds in turns"
    )
    for line in _excluded_lines(result):
        print(line)
    print(f"batched engine: {result['batched_steps_per_s']:9.1f} system-steps/s")
    print(f"ASE loop:       {result['ase_steps_per_s']:9.1f} system-steps/s")
    print(f"ratio:          {ratio_text(result, 1)}")
    if "scaling" in result:
        scaling = result["scaling"]
        sizes = ", ".join(f"{row['n_systems']}: {row['batched_ms']:.1f}" for row in scaling["rows"])
        print(f"what limits it: one force call of n systems takes (n: ms) {sizes}")
        print(
            f"  = {scaling['fixed_ms']:.1f} ms per call + {scaling['ms_per_system']:.2f} ms per system "
            f"(R² {scaling['r_squared']:.3f}); one system alone takes {scaling['mean_single_ms']:.1f} ms,"
        )
        print(f"  so batching can speed force calls up by at most {scaling['ratio_bound']:.1f}x, however many systems")
        largest = scaling["rows"][-1]
        print(f"  measured for {largest['n_systems']} systems: {ratio_text(largest, 1)}")
    return 0


def _bench_torchsim(model, label: str, systems: list, args: argparse.Namespace) -> int:
    """``gemrepro bench md --against torchsim``: the same model and molecules in both batched engines."""
    try:
        # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
        from gemrepro.benchmarks.torchsim import benchmark_torchsim
    except ImportError as exc:
        raise ValueError(
            f"--against torchsim: TorchSim is not installed ({exc.name}); "
            "pip install 'gemrepro[torchsim]' (torch-sim-atomistic==0.3.0)"
        ) from None
    from gemrepro.benchmarks.timing import ratio_text

    result: dict[str, Any] = benchmark_torchsim(model, systems, args.steps, device=args.device, repeats=args.repeats)
    result["model"] = label
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{label}, {result['n_systems']} systems ({result['n_atoms']} atoms), {result['n_steps']} steps, "
        f"{result['device']}, {result['torch_threads']} torch threads, median of {result['repeats']} rounds in turns, "
        f"TorchSim {result['torchsim_version']}"
    )
    for line in _excluded_lines(result):
        print(line)
    print(f"gemrepro engine:     {result['gemrepro_steps_per_s']:9.1f} system-steps/s  (stability checks every step)")
    print(f"TorchSim integrate:  {result['torchsim_steps_per_s']:9.1f} system-steps/s  (no checks, no reporter)")
    print(f"ratio:               {ratio_text(result)}")
    return 0


def _bench_refill(model, label: str, systems: list, args: argparse.Namespace) -> int:
    """``gemrepro bench md --against no-refill``: one campaign with slots refilled and in fixed waves."""
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    from gemrepro.benchmarks.refill import benchmark_refill
    from gemrepro.benchmarks.timing import ratio_text

    result: dict[str, Any] = benchmark_refill(
        model, systems, args.steps, slots=args.slots, hot_K=args.hot_K, device=args.device, repeats=args.repeats
    )
    result["model"] = label
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{label}, {result['n_trajectories']} trajectories of up to {result['n_steps']} steps on {result['slots']} "
        f"slots, every other at {result['hot_K']:g} K (the rest {result['mild_K']:g} K), {result['device']}, "
        f"{result['torch_threads']} torch threads, median of {result['repeats']} rounds in turns"
    )
    print(
        f"failed early: {result['failed_fraction']:.0%} of the trajectories (median {result['median_steps_lived']:g} "
        f"steps lived)"
    )
    print(
        f"refilled slots: {result['refill_steps_per_s']:9.1f} system-steps/s  "
        f"({result['refill_utilisation']:.0%} of evaluated systems alive)"
    )
    print(
        f"fixed waves:    {result['waves_steps_per_s']:9.1f} system-steps/s  "
        f"({result['waves_utilisation']:.0%} of evaluated systems alive)"
    )
    print(f"ratio:          {ratio_text(result)}")
    return 0
