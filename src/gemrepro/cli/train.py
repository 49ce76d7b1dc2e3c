"""``gemrepro train``: train (or fine-tune) GemNet-T on a labelled dataset file.

The file is read with ``gemrepro.data.formats.read`` (QM7-X HDF5, (r)MD17 npz, extended XYZ,
anything ASE reads), split at random (seeded) into disjoint training and validation sets, and
the best EMA model is saved to ``OUT/best_model.pt``. Running the same command again with the
same ``--out`` resumes from ``OUT/checkpoint.pt``. ``--init`` starts from a trained model's
weights and element references (fine-tuning, as in the second paper).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Batch

from gemrepro.cli import UserError

DEFAULT_LIMITS = {"max_steps": None, "max_epochs": 100}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train or fine-tune GemNet-T on a dataset file",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--data", required=True, help="dataset file (QM7-X .hdf5, MD17 .npz, .xyz, ...)")
    parser.add_argument("--format", default=None, help="file format when it cannot be detected")
    parser.add_argument("--train-size", type=int, default=None, help="training structures (default: 80%%)")
    parser.add_argument("--val-size", type=int, default=None, help="validation structures (default: the rest, at most 20%%)")
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
    parser.add_argument("--energy-key", default="atomization_energy", help="atoms.info key of the energy target")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--out", required=True, help="work folder: checkpoint, history, best_model.pt")
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


def run(args: argparse.Namespace) -> int:
    from gemrepro.data.formats import read
    from gemrepro.data.torch_dataset import AtomsDataset
    from gemrepro.model import GemNetT, fit_scale_factors
    from gemrepro.train import TrainConfig, load_trained_model, train_model

    atoms = read(args.data, format=args.format)
    train_idx, val_idx = split_indices(len(atoms), args.train_size, args.val_size, args.seed)
    dataset = AtomsDataset.from_atoms(atoms, energy_key=args.energy_key)
    train_set, val_set = dataset.subset(train_idx), dataset.subset(val_idx)

    limits = {"max_steps": args.max_steps, "max_epochs": args.max_epochs}
    if all(v is None for v in limits.values()) and args.max_wall_time is None:
        limits = DEFAULT_LIMITS
    config = TrainConfig(
        lr=args.lr, batch_size=args.batch_size, warmup_steps=args.warmup_steps,
        decay_steps=args.decay_steps, patience=args.patience, eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every, max_wall_time_s=args.max_wall_time,
        seed=args.seed, device=args.device, dtype=args.dtype, **limits,
    )
    torch.manual_seed(args.seed)
    if args.init:
        model = load_trained_model(args.init).train()  # keeps its element references
    else:
        model = GemNetT.from_preset(args.preset).to(config.torch_dtype)
        first = train_set.to(config.torch_dtype).graphs[: config.batch_size]
        fit_scale_factors(model, Batch.from_data_list(first))
    out = Path(args.out)
    result = train_model(model, train_set, val_set, config, out, progress=not args.quiet)
    summary = {
        "best_model": str(result.best_model_path),
        "stop_reason": result.stop_reason,
        "steps": result.steps,
        "train_size": len(train_set),
        "val_size": len(val_set),
        "best": result.best_metrics,
        "wall_time_s": round(result.wall_time_s, 2),
        "samples_per_second": round(result.samples_per_second, 1),
    }
    (out / "split.json").write_text(
        json.dumps({"data": str(args.data), "seed": args.seed, "train": train_idx.tolist(), "val": val_idx.tolist()})
    )
    print(json.dumps(summary, indent=2))
    return 0
