"""``gemrepro train``: train (or fine-tune) GemNet-T on a labelled dataset file, or a scale's model.

``--scale S --train-size N`` trains the learning-curve model of that scale and size (or loads it
from the artifact cache; a killed run resumes) and prints its test errors and artifact folder.

The file is read with ``gemrepro.data.formats.read`` (QM7-X HDF5, (r)MD17 npz, extended XYZ,
anything ASE reads), split at random (seeded) into disjoint training and validation sets, and
the best EMA model is saved to ``OUT/best_model.pt``. Files carry no unit: ``--energy-unit`` names
it (forces in that unit per Å), and labels no eV file can hold are refused when it is not named
(``implausible_in_ev``: rMD17 exported to extended XYZ is kcal/mol). ``--energy-key`` must name an
energy every structure carries. Running the same command again with the same ``--out`` resumes
from ``OUT/checkpoint.pt``; ``OUT/run.json`` records what defines the run (data file digest, format,
energy key and unit, preset or ``--init`` digest) and a resume with other inputs is refused.
``--init`` starts from a trained model's weights and element references (fine-tuning, as in the
second paper).

``torchrun --nproc-per-node N gemrepro train --data ...`` trains data-parallel on N processes
(gloo on CPU, NCCL on CUDA; ``--batch-size`` is the global batch, split over the ranks); rank 0
writes the files and prints the summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Batch

from gemrepro.cli import UserError

DEFAULT_LIMITS = {"max_steps": None, "max_epochs": 100}
RUN_FILE = "run.json"
# What defines a run on --data, as run.json stores it, and the option that sets each.
RUN_INPUTS = {
    "data_sha256": "--data",
    "format": "--format",
    "energy_key": "--energy-key",
    "energy_unit": "--energy-unit",
    "preset": "--preset",
    "init_sha256": "--init",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train or fine-tune GemNet-T on a dataset file",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--data", default=None, help="dataset file (QM7-X .hdf5, MD17 .npz, .xyz, ...)")
    parser.add_argument(
        "--scale",
        default=None,
        help="train the learning-curve model of this scale (tiny, small, paper) instead of --data",
    )
    parser.add_argument("--reference", default="gfn2-xtb", help="with --scale: the dataset's reference method")
    parser.add_argument(
        "--variant",
        default=None,
        help="with --scale: GemNet variant T or Q (default: the scale's, T at tiny and small, Q at paper)",
    )
    parser.add_argument("--data-dir", default=None, help="with --scale: where the artifact cache lives")
    parser.add_argument("--format", default=None, help="file format when it cannot be detected")
    parser.add_argument("--train-size", type=int, default=None, help="training structures (default: 80%%)")
    parser.add_argument(
        "--val-size", type=int, default=None, help="validation structures (default: the rest, at most 20%%)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, initialisation and batch order")
    parser.add_argument("--preset", default="tiny", help="GemNet-T preset: tiny, small or paper")
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--max-wall-time", type=float, default=None, help="seconds for this invocation")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=1000)
    parser.add_argument("--decay-steps", type=int, default=100_000)
    parser.add_argument("--patience", type=int, default=20, help="validations without improvement before stopping")
    parser.add_argument("--eval-every", type=int, default=100, help="updates between validations")
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument(
        "--energy-key",
        default=None,
        help="energy target: an atoms.info key or energy (the calculator's); "
        "default atomization_energy where every structure has one, else energy",
    )
    parser.add_argument(
        "--energy-unit",
        default=None,
        help="energy unit of the file (eV, kcal/mol, hartree, ...; forces in it per Å); "
        "default the format's: kcal/mol for (r)MD17 npz, else eV",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--out", default=None, help="with --data: work folder (checkpoint, history, best_model.pt)")
    parser.add_argument("--init", default=None, help="trained model (best_model.pt) to fine-tune")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def split_indices(n: int, train_size: int | None, val_size: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint random training and validation indices (seeded)."""
    train_size = int(0.8 * n) if train_size is None else train_size
    val_size = min(n - train_size, max(1, n // 5)) if val_size is None else val_size
    if train_size < 1 or val_size < 1 or train_size + val_size > n:
        raise UserError(
            f"--train-size {train_size} / --val-size {val_size}: expected positive sizes that sum "
            f"to at most the {n} structures in the file"
        )
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[:train_size]), np.sort(order[train_size : train_size + val_size])


def energy_key(requested: str | None, frames: list, path: str) -> str:
    """The energy target: ``requested`` when every structure carries it, else (None) atomization_energy
    or the calculator's energy; a misspelled key would otherwise fall back to the total energy unnoticed."""
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    from gemrepro.data.torch_dataset import energy_keys

    keys = energy_keys(frames)
    if requested is None:
        for default in ("atomization_energy", "energy"):
            if default in keys:
                return default
        raise UserError(
            f"--data {path}: expected an energy on every structure (atoms.info atomization_energy or a "
            f"calculator energy); the energies every structure has: {', '.join(keys) or 'none'}"
        )
    if requested not in keys:
        raise UserError(
            f"--energy-key {requested}: not an energy every structure in {path} carries; "
            f"it has {', '.join(keys) or 'none'}"
        )
    return requested


def run_inputs(args: argparse.Namespace, format: str, key: str, unit: str) -> dict[str, Any]:
    """What defines a run on ``--data`` (run.json): a resume must see the same."""
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    from gemrepro.cache.bundle import file_digest

    return {
        "data": str(args.data),
        "data_sha256": file_digest(Path(args.data)),
        "format": format,
        "energy_key": key,
        "energy_unit": unit,
        "preset": None if args.init else args.preset,
        "init": str(args.init) if args.init else None,
        "init_sha256": file_digest(Path(args.init)) if args.init else None,
    }


def _shown(inputs: dict[str, Any], field: str) -> str:
    """One input of a run as its option shows it (files with the start of their digest)."""
    if field == "data_sha256":
        return f"{inputs['data']} (sha256 {inputs['data_sha256'][:12]}…)"
    if field == "init_sha256":
        return f"{inputs['init']} (sha256 {inputs['init_sha256'][:12]}…)" if inputs.get("init") else "none"
    value = inputs.get(field)
    return "none" if value is None else str(value)


def check_resume(out: Path, inputs: dict[str, Any]) -> None:
    """Refuse to continue the run in ``out`` with other inputs, in one line naming each that differs.

    A folder from before run.json existed resumes unchecked (the trainer still checks settings and sizes).
    """
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    from gemrepro.data.formats import energy_factor

    path = out / RUN_FILE
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text())
        same_unit = energy_factor(saved["energy_unit"]) == energy_factor(inputs["energy_unit"])
    except (ValueError, KeyError, TypeError):
        raise UserError(f"--out {out}: {RUN_FILE} is not one gemrepro train wrote; pass a new --out") from None
    differ = [
        field
        for field in RUN_INPUTS
        if (not same_unit if field == "energy_unit" else saved.get(field) != inputs[field])
    ]
    if differ:
        what = "; ".join(
            f"{RUN_INPUTS[f]} {_shown(saved, f)} there, {_shown(inputs, f)} in this command" for f in differ
        )
        raise UserError(f"--out {out}: holds a run on other inputs ({what}); pass a new --out or the same inputs")


def run_scale(args: argparse.Namespace) -> int:
    """Train (or load) the scale's learning-curve model for ``--train-size``; print its test errors."""
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    from gemrepro.cache.paths import artifacts_dir
    from gemrepro.config.scales import get_scale
    from gemrepro.studies.learning_curve import train_scale_model

    if args.train_size is None:
        raise UserError("--scale: expected --train-size, one of the scale's training-set sizes")
    artifact = train_scale_model(
        get_scale(args.scale),
        args.train_size,
        seed=args.seed,
        reference=args.reference,
        variant=args.variant,
        root=artifacts_dir(args.data_dir),
        progress=not args.quiet,
        device=args.device,
    )
    m = artifact.manifest
    test = m["metrics"]["test"]
    print(
        f"test energy MAE {test['energy_mae']:.4f} eV, force MAE {test['forces_mae']:.4f} eV/Å "
        f"({test['n']} configurations; {m['steps']} steps, {m['training_wall_time_s']:.0f} s training)"
    )
    print(f"model: {artifact.file('model.pt')}")
    return 0


def run(args: argparse.Namespace) -> int:
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    from gemrepro.train.distributed import world_from_env

    if (args.data is None) == (args.scale is None):
        raise UserError("expected exactly one of --data FILE or --scale NAME")
    if args.scale is not None:
        if world_from_env().is_distributed:
            raise UserError("--scale: one process only (its artifact is built once); use --data under torchrun")
        return run_scale(args)
    if args.out is None:
        raise UserError("--data: expected --out FOLDER for the checkpoint and trained model")
    if not world_from_env().is_distributed:
        return run_data(args)
    from gemrepro.train.distributed import init_distributed, shutdown_distributed

    init_distributed(args.device)
    try:
        return run_data(args)
    finally:
        shutdown_distributed()


def run_data(args: argparse.Namespace) -> int:
    """Train on ``--data`` in this process (one rank of a torchrun job, or alone)."""
    # Imported here: the CLI loads a command's code only when it runs (a fast `gemrepro --help`).
    from gemrepro.data.formats import detect_format, energy_factor, file_energy_unit, implausible_in_ev, read
    from gemrepro.data.torch_dataset import AtomsDataset
    from gemrepro.model import EnergyShift, GemNet, GemNetT, fit_scale_factors, load_model
    from gemrepro.train import TrainConfig, Trainer
    from gemrepro.train.distributed import current_world
    from gemrepro.train.trainer import CHECKPOINT_NAME

    format = args.format or detect_format(args.data)
    unit = args.energy_unit or file_energy_unit(format)
    atoms = read(args.data, format=format, energy_unit=args.energy_unit)
    if args.energy_unit is None and (reason := implausible_in_ev(atoms)) is not None:
        raise UserError(
            f"--data {args.data}: read as {unit}, {reason}; pass --energy-unit with the file's unit (e.g. kcal/mol)"
        )
    key = energy_key(args.energy_key, atoms, args.data)
    if args.energy_unit and key != "energy":  # readers convert their calculator's labels, not atoms.info
        factor = energy_factor(args.energy_unit)
        for structure in atoms:
            structure.info[key] = float(structure.info[key]) * factor
    if args.init and not Path(args.init).is_file():
        raise UserError(f"--init {args.init}: no such file; expected a trained model (best_model.pt)")
    out = Path(args.out)
    inputs = run_inputs(args, format, key, unit)
    resuming = (out / CHECKPOINT_NAME).is_file()
    if resuming:
        check_resume(out, inputs)
    train_idx, val_idx = split_indices(len(atoms), args.train_size, args.val_size, args.seed)
    dataset = AtomsDataset.from_atoms(atoms, energy_key=key)
    train_set, val_set = dataset.subset(train_idx), dataset.subset(val_idx)

    limits = {"max_steps": args.max_steps, "max_epochs": args.max_epochs}
    if all(v is None for v in limits.values()) and args.max_wall_time is None:
        limits = DEFAULT_LIMITS
    config = TrainConfig(
        lr=args.lr,
        batch_size=args.batch_size,
        warmup_steps=args.warmup_steps,
        decay_steps=args.decay_steps,
        patience=args.patience,
        eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every,
        max_wall_time_s=args.max_wall_time,
        seed=args.seed,
        device=args.device,
        dtype=args.dtype,
        **limits,
    )
    torch.manual_seed(args.seed)
    if args.init:
        model: GemNet | EnergyShift = load_model(args.init, device="cpu").train()  # keeps its element references
    else:
        model = GemNetT.from_preset(args.preset).to(config.torch_dtype)
        first = train_set.to(config.torch_dtype).graphs[: config.batch_size]
        fit_scale_factors(model, Batch.from_data_list(first))
    world = current_world()
    trainer = Trainer(model, train_set, val_set, config, out, progress=not args.quiet)
    if world.is_main:
        if resuming:
            print(f"resuming from epoch {trainer.state.epoch} (step {trainer.state.step}) in {out}", file=sys.stderr)
        else:
            (out / RUN_FILE).write_text(json.dumps(inputs, indent=2))
    result = trainer.run()
    if not world.is_main:
        return 0
    summary = {
        "best_model": str(result.best_model_path),
        "stop_reason": result.stop_reason,
        "steps": result.steps,
        "train_size": len(train_set),
        "val_size": len(val_set),
        "best": result.best_metrics,
        "wall_time_s": round(result.wall_time_s, 2),
        "samples_per_second": round(result.samples_per_second, 1),
        "world_size": world.size,
    }
    (out / "split.json").write_text(
        json.dumps({"data": str(args.data), "seed": args.seed, "train": train_idx.tolist(), "val": val_idx.tolist()})
    )
    print(json.dumps(summary, indent=2))
    return 0
