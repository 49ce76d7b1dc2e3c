"""``gemrepro stress``: audit any ML potential's robustness in hot MD, and gate it in CI.

The potential is an ASE calculator (``--calculator MODULE:FACTORY``, run in a killable worker with
a per-call time limit) or a gemrepro checkpoint (``--model``, batched on the engine directly). The
exit status is 1 when a trajectory failed before ``--min-stable-ps``, so a CI job can gate on it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gemrepro.analysis.geometry import element_list
from gemrepro.cli.structures import add_structure_options, check_elements, check_periodic, load_structures

if TYPE_CHECKING:
    import torch

    from gemrepro.integrations.potential import GemNetPotential


def _positive(value: float, flag: str, what: str) -> float:
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{flag}: expected a positive {what}, got {value}")
    return float(value)


def _run(args: argparse.Namespace) -> int:
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    from gemrepro.stress.audit import check_inputs, run_audit
    from gemrepro.stress.calculators import CalculatorPotential
    from gemrepro.stress.field import SOURCES, FieldProtocol
    from gemrepro.stress.report import ORIGIN_RULE, origin_line, write_report
    from gemrepro.studies.sweep import Protocol

    time_ps = _positive(args.time_ps, "--time-ps", "simulation time in ps")
    dt_fs = _positive(args.dt_fs, "--dt-fs", "time step in fs")
    if not args.temperatures or not all(np.isfinite(t) and t > 0 for t in args.temperatures):
        raise ValueError(f"--temperatures: expected positive temperatures in K, got {args.temperatures}")
    if args.frames < 1:
        raise ValueError(f"--frames: expected a positive number of frames per trajectory, got {args.frames}")
    if args.min_stable_ps is not None and not (0 < args.min_stable_ps <= time_ps):
        raise ValueError(
            f"--min-stable-ps: expected a time in (0, {time_ps:g}] ps (at most --time-ps), got {args.min_stable_ps}"
        )
    if args.timeout_s < 0:
        raise ValueError(f"--timeout-s: expected a time limit per call in s (0: no worker), got {args.timeout_s}")
    if args.slots is not None:
        if args.slots < 1:
            raise ValueError(f"--slots: expected a positive number of batch slots, got {args.slots}")
        if args.model is None:
            raise ValueError("--slots: refilled batch slots need --model (a calculator runs one system at a time)")
    field = None
    if not args.no_field_scores:
        nve_ps = _positive(time_ps if args.nve_ps is None else args.nve_ps, "--nve-ps", "NVE time in ps")
        ramp_ps = _positive(time_ps if args.ramp_ps is None else args.ramp_ps, "--ramp-ps", "heating-ramp time in ps")
        if ramp_ps * 1000.0 < dt_fs:
            raise ValueError(f"--ramp-ps: {ramp_ps} ps is shorter than one {dt_fs} fs step")
        field = FieldProtocol(nve_ps, ramp_ps)
    protocol = Protocol(time_ps, tuple(args.temperatures), dt_fs=dt_fs, n_sampled_frames=args.frames)
    if protocol.n_steps < 1:
        raise ValueError(f"--time-ps: {time_ps} ps is shorter than one {dt_fs} fs step")
    molecules = load_structures(args.molecules, args.select, args.seed, args.box)
    reference = None if args.reference == "none" else args.reference
    if reference is not None:
        from gemrepro.reference import get_method

        get_method(reference)  # a one-line error before any MD
    out = Path(args.out)
    finished = [name for name in ("report.html", "summary.json") if (out / name).exists()]
    if finished and not args.overwrite:
        raise ValueError(
            f"--out {out}: holds a finished audit ({', '.join(finished)}); pass --overwrite to replace it, "
            "or choose another folder"
        )
    potential: GemNetPotential | CalculatorPotential
    device: str | torch.device
    if args.model is not None:
        from gemrepro.integrations.potential import potential_from_checkpoint

        if not Path(args.model).is_file():
            raise FileNotFoundError(f"--model: checkpoint {args.model!r} does not exist")
        potential = potential_from_checkpoint(
            args.model, device=args.device, allow_unknown_elements=args.allow_unknown_elements
        )
        label, device = args.model, potential.device
        check_periodic(potential, molecules, "the GemNet model")
        unknown = check_elements(potential, molecules)
        if unknown:
            seen = "; ".join(f"{element_list(z)} in {name}" for name, z in unknown.items())
            print(
                f"gemrepro stress: warning: the model was not trained on {seen}; the report is marked", file=sys.stderr
            )
            label = f"{label} [UNKNOWN ELEMENTS: {seen}; results not meaningful]"
    else:
        potential = CalculatorPotential(args.calculator, timeout_s=args.timeout_s or None)
        label, device = args.calculator, "cpu"
    try:
        check_inputs(molecules, args.seeds, potential, reference)
        if isinstance(potential, CalculatorPotential):
            potential.check_start(molecules)  # a calculator that cannot start is one error, not n failures at 0 ps
        result = run_audit(
            potential,
            molecules,
            protocol,
            out,
            n_seeds=args.seeds,
            seed=args.seed,
            reference=reference,
            device=device,
            progress=not args.quiet,
            field=field,
            slots=args.slots,
        )
    finally:
        if hasattr(potential, "close"):
            potential.close()
    facts = write_report(result, out / "report.html", out / "summary.json", label, args.min_stable_ps)
    print(
        f"{out / 'report.html'}, {out / 'summary.json'}: {facts['n_failed']} of {facts['n_trajectories']} "
        f"trajectories failed within {result.horizon_ps:g} ps (shortest stable time {facts['shortest_stable_ps']:.4g} ps)"
    )
    origins = origin_line(facts)
    if origins is not None:
        print(f"  {origins}  [{ORIGIN_RULE}]")
    if result.field is not None:
        for key, line in result.field.lines().items():
            print(f"  {line}  [{SOURCES[key]}]")
    verdict = facts["verdict"]
    if verdict is None:
        return 0
    print(
        f"{'PASSED' if verdict['passed'] else 'FAILED'}: {verdict['n_failed_early']} trajectories stable for less "
        f"than {verdict['min_stable_ps']:g} ps"
    )
    return 0 if verdict["passed"] else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    stress = subparsers.add_parser(
        "stress",
        help="robustness audit of any ML potential in hot MD (HTML report, JSON, CI exit status)",
        description="Run batched Langevin MD of molecules x temperatures x seeds with any potential, detect "
        "failures (bond rule, H loss, non-finite, calculator errors and hangs), relabel sampled frames "
        "with a reference method and write a self-contained HTML report plus a JSON summary. "
        "Exit status 1 when a trajectory fails before --min-stable-ps.",
    )
    source = stress.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--calculator", metavar="MODULE:FACTORY", help="a callable returning an ASE calculator, e.g. tblite.ase:TBLite"
    )
    source.add_argument("--model", metavar="CKPT", help="a gemrepro model checkpoint (batched on the MD engine)")
    stress.add_argument(
        "--molecules",
        nargs="+",
        required=True,
        metavar="NAME_SMILES_OR_FILE",
        help="catalog names, SMILES, or structure files (xyz, extxyz, QM7-X HDF5, MD17 npz, "
        "...): every frame of a file is a molecule of its own",
    )
    add_structure_options(stress, "audit")
    stress.add_argument("--temperatures", nargs="+", type=float, default=[300.0, 600.0, 1200.0], metavar="K")
    stress.add_argument("--seeds", type=int, default=2, help="trajectories per molecule and temperature (default 2)")
    stress.add_argument("--time-ps", type=float, default=1.0, help="simulated time per trajectory (ps, default 1)")
    stress.add_argument("--dt-fs", type=float, default=0.5, help="time step (fs, default 0.5)")
    stress.add_argument("--frames", type=int, default=8, help="frames relabelled per trajectory (default 8)")
    stress.add_argument("--reference", default="gfn2-xtb", help="reference method for relabelling, or 'none'")
    stress.add_argument(
        "--timeout-s",
        type=float,
        default=60.0,
        help="time limit per calculator call in s (worker process; 0: in-process, no limit)",
    )
    stress.add_argument(
        "--min-stable-ps",
        type=float,
        default=None,
        help="gate: exit 1 unless every trajectory stays stable this long (ps)",
    )
    stress.add_argument(
        "--nve-ps",
        type=float,
        default=None,
        help="LAMBench's NVE run per molecule (ps, default --time-ps; LAMBench: 10)",
    )
    stress.add_argument(
        "--ramp-ps",
        type=float,
        default=None,
        help="MLIP Arena's 300 -> 3000 K heating ramp per molecule (ps, default --time-ps; Arena: 10)",
    )
    stress.add_argument(
        "--no-field-scores",
        action="store_true",
        help="skip the field's scores (MDsim, MLIPAudit, LAMBench NVE drift, MLIP Arena heating)",
    )
    stress.add_argument("--seed", type=int, default=0, help="seed of conformers and Langevin noise (default 0)")
    stress.add_argument(
        "--slots",
        type=int,
        default=None,
        metavar="K",
        help="for --model: run the trajectories on K batch slots, each refilled from the queue as "
        "its trajectory fails (default: all trajectories in one batch)",
    )
    stress.add_argument(
        "--out",
        default="stress",
        help="output folder (report.html, summary.json, trajectory.h5); an interrupted audit there starts "
        "over (its runs are short), a finished one is kept unless --overwrite",
    )
    stress.add_argument("--overwrite", action="store_true", help="replace a finished audit in --out")
    stress.add_argument("--device", default="auto", help="for --model: auto, cpu, cuda or cuda:N")
    stress.add_argument("--quiet", action="store_true", help="no progress bar")
    stress.set_defaults(func=_run)
