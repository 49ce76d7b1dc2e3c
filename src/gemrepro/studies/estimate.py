"""What a scale costs, from per-step costs measured on this installation.

Three measurements, cached as one ``cost-measurements`` artifact keyed by the scale's model and
batch sizes, the device and the hardware (a second call on the same machine is instant):

- seconds per training step of the scale's GemNet preset at its recipe's batch size, for each
  variant the book trains (energy+force loss, backward, AMSGrad; on QM7-X-sized clusters);
- seconds per MD step of the scale's batch: every MD molecule at every temperature in one
  batched Langevin run with the scale's default variant, plus the bytes one stored frame takes;
- seconds per reference label (the dataset's method) on MD molecules, plus the bytes one
  configuration takes in the QM7-X layout and in memory as a training graph.

These are multiplied by the scale's sizes (:mod:`~gemrepro.config.scales`, the training
recipe's step budgets, the sweep protocol). Training budgets are the recipe's maximum steps:
early stopping can only make them cheaper. When the measurement ran on a CPU, GPU-hours use an
explicit, labelled speed-up assumption.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
from ase.calculators.singlepoint import SinglePointCalculator

from gemrepro.benchmarks.training import training_step_cost
from gemrepro.cache.artifacts import Artifact, get_or_create, hardware
from gemrepro.catalog import MD_MOLECULES_COVER_ALL_ELEMENTS, md_molecules
from gemrepro.config.scales import Scale
from gemrepro.data.formats import write_qm7x
from gemrepro.data.sampling import embed_conformers
from gemrepro.data.torch_dataset import atoms_to_data
from gemrepro.integrations.potential import GemNetPotential
from gemrepro.md import run_md
from gemrepro.model import build_model, resolve_device
from gemrepro.paper import CAMPAIGN
from gemrepro.reference import get_method
from gemrepro.studies.learning_curve import model_config, recipe
from gemrepro.studies.sweep import protocol_for

__all__ = ["Assumptions", "ResourceEstimate", "estimate_resources", "measure_costs", "paper_campaign"]

STAGE = "cost-measurements"
STAGE_VERSION = 3


@dataclass(frozen=True)
class Assumptions:
    """Numbers the estimate cannot measure here; each is printed with the table."""

    gpu_speedup_over_cpu: float = 30.0  # one data-centre GPU vs this CPU for GemNet steps (CPU-measured only)
    reference_cores_per_label: int = 1  # labels run single-threaded, one per core

    def __post_init__(self) -> None:
        if not (math.isfinite(self.gpu_speedup_over_cpu) and self.gpu_speedup_over_cpu > 0):
            raise ValueError(f"gpu_speedup_over_cpu: expected a positive factor, got {self.gpu_speedup_over_cpu!r}")
        if self.reference_cores_per_label < 1:
            raise ValueError(
                f"reference_cores_per_label: expected a positive integer, got {self.reference_cores_per_label!r}"
            )


@dataclass(frozen=True)
class ResourceEstimate:
    """Expected cost of a scale: ``table()`` for people, ``measurements`` for the record."""

    scale: str  # the scale's name
    measurements: dict
    rows: tuple[dict, ...]
    assumptions: Assumptions = field(default_factory=Assumptions)
    artifact: Artifact | None = None

    def table(self) -> pd.DataFrame:
        """Columns item, amount, unit, basis: one row per resource."""
        return pd.DataFrame(list(self.rows), columns=["item", "amount", "unit", "basis"])

    def total(self, unit: str) -> float:
        """Sum of the rows in ``unit`` whose item is not a detail line (GPU-hours, CPU-hours, GB)."""
        table = self.table()
        return float(table.loc[(table["unit"] == unit) & table["item"].str.match(r"^[A-Za-z]"), "amount"].sum())


# ----------------------------------------------------------------------------- measurements
PROBE_BATCH = 4
"""Molecules in the timed training batch; the recipe's batch costs proportionally more (GemNet's
cost is linear in the number of atoms, see the performance chapter). Keeps the paper preset's
GemNet-Q step within memory and seconds on a laptop."""
PROBE_SYSTEMS = 3
"""MD systems in the timed batched run, scaled to the scale's batch by its number of atoms."""


def _md_batch(scale: Scale):
    """The scale's MD systems: every MD molecule (RDKit + MMFF) at every temperature."""
    n = max(scale.n_md_molecules, MD_MOLECULES_COVER_ALL_ELEMENTS)
    molecules = [embed_conformers(m.smiles, 1, seed=0)[0] for m in md_molecules(n)]
    systems = [a for a in molecules for _ in scale.temperatures]
    temperatures = [t for _ in molecules for t in scale.temperatures]
    return molecules, systems, temperatures


def _time_md(scale: Scale, molecules_atoms, systems, temperatures, n_steps: int, device: str) -> dict:
    """Seconds per step of the batched run, and the bytes one stored frame of it takes."""
    torch.manual_seed(0)
    potential = GemNetPotential(build_model(model_config(scale, None)), device=device)
    with tempfile.TemporaryDirectory(prefix="gemrepro-estimate-") as folder:
        options = dict(temperatures=temperatures, dtype=torch.float64, device=device, progress=False)
        run_md(potential, systems, n_steps=1, path=Path(folder) / "warm.h5", **options)  # lazy set-up, caches
        summary = run_md(
            potential,
            systems,
            n_steps=n_steps,
            path=Path(folder) / "timed.h5",
            frame_interval=n_steps,
            checkpoint_interval=n_steps,
            **options,
        )
        with h5py.File(Path(folder) / "timed.h5", "r") as f:
            frame_bytes = sum(d.dtype.itemsize * int(np.prod(d.shape[1:])) for d in f["frames"].values())
    return {
        "seconds_per_step": summary.wall_time_s / n_steps,
        "n_systems": len(systems),
        "n_atoms": int(sum(len(a) for a in systems)),
        "bytes_per_frame": int(frame_bytes),
        "steps_timed": n_steps,
    }


def _time_labels(reference: str, molecules, n_labels: int) -> dict:
    """Seconds per reference label, and bytes per configuration on disk (QM7-X layout) and in memory."""
    method = get_method(reference)
    picked = [molecules[k % len(molecules)] for k in range(n_labels)]
    records, seconds, in_memory = [], [], []
    for k, atoms in enumerate(picked):
        start = time.perf_counter()
        result = method.compute(atoms.numbers, atoms.positions)
        seconds.append(time.perf_counter() - start)
        labelled = atoms.copy()
        labelled.calc = SinglePointCalculator(labelled, energy=result.energy, forces=result.forces)
        graph = atoms_to_data(labelled, energy_key="", dtype=torch.float32)
        in_memory.append(sum(v.element_size() * v.numel() for _, v in graph))
        records.append(
            {
                "mol_id": k + 1,
                "isomer": 1,
                "conformer": 1,
                "label": "opt",
                "numbers": atoms.numbers,
                "positions": atoms.positions,
                "energy": result.energy,
                "atomization_energy": result.energy,
                "forces": result.forces,
            }
        )
    with tempfile.TemporaryDirectory(prefix="gemrepro-estimate-") as folder:
        path = write_qm7x(Path(folder) / "probe.hdf5", records, reference_method=reference)
        disk = path.stat().st_size
    return {
        "method": method.name,
        "seconds_per_label": float(np.median(seconds)),
        "labels_timed": n_labels,
        "mean_atoms": float(np.mean([len(a) for a in picked])),
        "disk_bytes_per_configuration": disk / n_labels,
        "memory_bytes_per_configuration": float(np.mean(in_memory)),
    }


def measure_costs(
    scale: Scale,
    reference: str = "gfn2-xtb",
    device: str = "cpu",
    root=None,
    *,
    n_train_steps: int = 2,
    n_md_steps: int = 3,
    n_labels: int = 4,
) -> Artifact:
    """Measure (once per machine and device) the per-step costs of ``scale``; an artifact whose
    manifest holds ``measurements``."""
    for name, value in (("n_train_steps", n_train_steps), ("n_md_steps", n_md_steps), ("n_labels", n_labels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    device = str(resolve_device(device))
    variants = tuple(dict.fromkeys((*scale.learning_curve_variants, scale.default_variant)))
    batch_size = recipe(scale).batch_size
    params = {
        "scale": scale.name,
        "preset": scale.model_preset,
        "variants": variants,
        "batch_size": batch_size,
        "reference": reference,
        "device": device,
        "hardware": hardware(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "steps": [n_train_steps, n_md_steps, n_labels],
        "probe": [PROBE_BATCH, PROBE_SYSTEMS],
        "stage_version": STAGE_VERSION,
    }

    def build(folder: Path) -> dict:
        training = {}
        for variant in variants:
            probe = min(batch_size, PROBE_BATCH)
            row = training_step_cost((scale.model_preset,), variant, probe, repeats=n_train_steps, device=device).iloc[
                0
            ]
            training[variant] = {
                "seconds_per_step": float(row["seconds_per_step"]) * batch_size / probe,
                "parameters": int(row["parameters"]),
                "batch_size": batch_size,
                "probe_batch_size": probe,
                "steps_timed": n_train_steps,
            }
        molecules, systems, temperatures = _md_batch(scale)
        probe_systems = systems[:PROBE_SYSTEMS]
        md = _time_md(scale, molecules, probe_systems, temperatures[:PROBE_SYSTEMS], n_md_steps, device)
        atoms_ratio = sum(len(a) for a in systems) / md["n_atoms"]
        md.update(
            seconds_per_step=md["seconds_per_step"] * atoms_ratio,
            n_systems=len(systems),
            n_atoms=int(sum(len(a) for a in systems)),
            bytes_per_frame=int(md["bytes_per_frame"] * atoms_ratio),
            probe_systems=len(probe_systems),
        )
        return {
            "measurements": {
                "hardware": hardware(),
                "device": device,
                "torch_threads": torch.get_num_threads(),
                "training": training,
                "md": {"variant": scale.default_variant, **md},
                "reference": _time_labels(reference, molecules, n_labels),
            }
        }

    return get_or_create(STAGE, params, build, root)


# ----------------------------------------------------------------------------- the estimate
def estimate_resources(
    scale: Scale, root=None, device: str = "cpu", reference: str = "gfn2-xtb", assumptions: Assumptions | None = None
) -> ResourceEstimate:
    """GPU-hours of training and MD, CPU-hours of reference labels, disk and memory of ``scale``."""
    assumptions = assumptions or Assumptions()
    artifact = measure_costs(scale, reference, device, root)
    m = artifact.manifest["measurements"]
    on_gpu = m["device"].startswith("cuda")
    to_gpu_hours = 1.0 / 3600.0 / (1.0 if on_gpu else assumptions.gpu_speedup_over_cpu)
    speed_note = (
        f"measured on {m['device']}"
        if on_gpu
        else f"measured on CPU ({m['torch_threads']} threads) / {assumptions.gpu_speedup_over_cpu:g} (assumed GPU speed-up)"
    )
    rows: list[dict] = []

    steps = recipe(scale).max_steps
    training_hours = 0.0
    for variant, cost in m["training"].items():
        hours = sum(steps) * cost["seconds_per_step"] * to_gpu_hours
        training_hours += hours
        rows.append(
            {
                "item": f"  training GemNet-{variant}",
                "amount": hours,
                "unit": "GPU-hours",
                "basis": f"{len(steps)} models, {sum(steps):,} steps x {cost['seconds_per_step']:.3g} s/step "
                f"(batch {cost['batch_size']}, linear from a timed batch of {cost.get('probe_batch_size', cost['batch_size'])}; "
                f"{cost['parameters']:,} parameters), {speed_note}",
            }
        )
    rows.insert(
        0,
        {
            "item": "training",
            "amount": training_hours,
            "unit": "GPU-hours",
            "basis": "recipe's maximum steps (early stopping can only shorten)",
        },
    )

    protocol = protocol_for(scale)
    md = m["md"]
    n_runs = len(scale.train_sizes)
    md_hours = n_runs * protocol.n_steps * md["seconds_per_step"] * to_gpu_hours
    rows.append(
        {
            "item": "MD",
            "amount": md_hours,
            "unit": "GPU-hours",
            "basis": f"{n_runs} batched runs x {protocol.n_steps:,} steps x {md['seconds_per_step']:.3g} s/step "
            f"({md['n_systems']} systems, {md['n_atoms']} atoms, GemNet-{md['variant']}; linear in atoms from a timed "
            f"batch of {md.get('probe_systems', md['n_systems'])} systems), {speed_note}",
        }
    )
    simulated_ns = n_runs * md["n_systems"] * protocol.md_time_ps / 1000.0
    rows.append(
        {
            "item": "  simulated time",
            "amount": simulated_ns,
            "unit": "ns",
            "basis": f"{n_runs} models x {md['n_systems']} trajectories x {protocol.md_time_ps:g} ps",
        }
    )

    ref = m["reference"]
    n_dataset = scale.n_configurations
    n_relabel = n_runs * md["n_systems"] * protocol.n_sampled_frames
    label_hours = (n_dataset + n_relabel) * ref["seconds_per_label"] * assumptions.reference_cores_per_label / 3600.0
    rows.append(
        {
            "item": "reference labels",
            "amount": label_hours,
            "unit": "CPU-hours",
            "basis": f"({n_dataset:,} dataset + {n_relabel:,} MD frames) x {ref['seconds_per_label']:.3g} s/label "
            f"({ref['method']}, {ref['mean_atoms']:.0f} atoms, measured)",
        }
    )

    n_frames = n_runs * (protocol.n_steps // protocol.frame_interval + 1)
    disk_dataset = n_dataset * ref["disk_bytes_per_configuration"] / 1e9
    disk_md = n_frames * md["bytes_per_frame"] / 1e9
    rows.append(
        {
            "item": "disk",
            "amount": disk_dataset + disk_md,
            "unit": "GB",
            "basis": "dataset HDF5 + MD trajectories (models, checkpoints and labels are small beside them)",
        }
    )
    rows.append(
        {
            "item": "  dataset",
            "amount": disk_dataset,
            "unit": "GB",
            "basis": f"{n_dataset:,} configurations x {ref['disk_bytes_per_configuration']:.0f} B (QM7-X layout, measured)",
        }
    )
    rows.append(
        {
            "item": "  trajectories",
            "amount": disk_md,
            "unit": "GB",
            "basis": f"{n_frames:,} frames x {md['bytes_per_frame']:,} B (every {protocol.frame_interval} steps, measured)",
        }
    )
    rows.append(
        {
            "item": "memory",
            "amount": n_dataset * ref["memory_bytes_per_configuration"] / 1e9,
            "unit": "GB",
            "basis": f"training graphs in memory: {n_dataset:,} x {ref['memory_bytes_per_configuration']:.0f} B "
            f"(float32, measured; the largest training set reads the whole dataset)",
        }
    )
    return ResourceEstimate(scale.name, m, tuple(rows), assumptions, artifact)


def paper_campaign() -> pd.DataFrame:
    """The computational scale Stocker et al. report, as rows to print beside ours."""
    return pd.DataFrame([{"item": name, "paper": value} for name, value in CAMPAIGN.items()])
