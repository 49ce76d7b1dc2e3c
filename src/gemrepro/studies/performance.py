"""Speed measurements of the appendix, cached per machine so several machines' numbers sit side by side.

Four measurements, each a ``performance`` artifact whose key holds the hardware (CPU model, core
count, GPU name, device) next to the measurement's parameters: a GPU machine adds its own
artifacts beside the CPU ones instead of replacing them, and :func:`collect_measurements` reads
them all back. Timings are not reproducible; the artifact records what one machine measured once.

- batched MD against the ASE loop (:func:`gemrepro.benchmarks.md.benchmark_md`);
- GemNet energy+force cost against molecule size (:func:`gemrepro.benchmarks.model.benchmark_model`),
  with a least-squares line through seconds vs atoms (:func:`cost_linearity`);
- reference labels per second against Dask workers (:func:`gemrepro.benchmarks.labelling.labelling_throughput`);
- training samples per second (:func:`gemrepro.train.train_model` on molecule-sized clusters).

Models are freshly initialised presets: only their cost matters, not what they learned.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import Data

from gemrepro.benchmarks import model as bench
from gemrepro.benchmarks.labelling import labelling_throughput
from gemrepro.benchmarks.md import batch_scaling, benchmark_md, benchmark_systems, profile_potential
from gemrepro.benchmarks.model import molecule_like_cluster
from gemrepro.benchmarks.workload import silent_random_model
from gemrepro.cache.artifacts import MANIFEST, Artifact, get_or_create
from gemrepro.cache.paths import artifacts_dir
from gemrepro.config.designs import PerformancePlan
from gemrepro.config.scales import SCALES, Scale
from gemrepro.model import build_model, resolve_device
from gemrepro.train import TrainConfig, train_model

__all__ = [
    "PerformanceResults",
    "collect_measurements",
    "cost_linearity",
    "hardware_fingerprint",
    "hardware_label",
    "measure_labelling",
    "measure_md_profile",
    "measure_md_speedup",
    "measure_model_cost",
    "measure_training",
    "performance_suite",
    "plan_for",
    "plan_table",
]

STAGE = "performance"
STAGE_VERSION = 4


def plan_for(scale: Scale) -> PerformancePlan:
    """The measurement sizes of ``scale`` (``scale.performance``; a one-line error for a scale without one)."""
    if scale.performance is None:
        planned = ", ".join(name for name, s in SCALES.items() if s.performance is not None)
        raise ValueError(f"scale {scale.name!r} has no performance plan: expected a Scale with one, as {planned}")
    return scale.performance


# ----------------------------------------------------------------------------- hardware
def _cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def hardware_fingerprint(device: str | torch.device = "auto") -> dict[str, str | int | None]:
    """What a timing depends on: CPU model, cores, torch threads, GPU name and the device it ran on."""
    resolved = resolve_device(device)
    gpu = None
    if resolved.type == "cuda":
        gpu = torch.cuda.get_device_name(resolved)
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "device": resolved.type,
    }


def hardware_label(fingerprint: dict) -> str:
    """One line for a figure: ``GPU name`` or ``CPU model (n cores, t threads)``."""
    cpu = f"{fingerprint['cpu']} ({fingerprint['cores']} cores, {fingerprint['torch_threads']} threads)"
    return f"{fingerprint['gpu']} · host {cpu}" if fingerprint.get("gpu") else cpu


def _measure(kind: str, params: dict, run, device: str | torch.device, root) -> Artifact:
    """The cached result of ``run()`` for ``params`` on this hardware (measured now if absent)."""
    key = {"stage_version": STAGE_VERSION, "measurement": kind, "hardware": hardware_fingerprint(device), **params}

    def build(folder: Path) -> dict:
        result = run()
        (folder / "result.json").write_text(json.dumps(result, indent=2))
        return {"result": result}

    return get_or_create(STAGE, key, build, root)


# ----------------------------------------------------------------------------- the four measurements
def measure_md_speedup(
    n_systems: int = 4,
    n_steps: int = 20,
    preset: str = "tiny",
    *,
    variant: str = "T",
    seed: int = 0,
    device: str | torch.device = "auto",
    root=None,
) -> Artifact:
    """Batched MD against the ASE Langevin loop, same systems and steps: ``result`` of ``benchmark_md``.

    The model has random weights and a zeroed read-out (:func:`~gemrepro.benchmarks.workload.silent_random_model`):
    it costs what any network of the preset costs, and no molecule breaks while it is timed.
    """

    def run() -> dict:
        model = silent_random_model(variant, preset, seed)
        return benchmark_md(model, benchmark_systems(n_systems, seed), n_steps, device)

    params = {"n_systems": n_systems, "n_steps": n_steps, "preset": preset, "variant": variant, "seed": seed}
    return _measure("md-speedup", params, run, device, root)


def measure_md_profile(
    n_systems: int = 60,
    *,
    calls: int = 5,
    preset: str = "tiny",
    variant: str = "T",
    seed: int = 0,
    device: str | torch.device = "auto",
    root=None,
) -> Artifact:
    """Where one batched energy-and-forces call spends its time: ``result`` of ``profile_potential``."""

    def run() -> dict:
        torch.manual_seed(seed)
        return profile_potential(build_model(variant, preset), benchmark_systems(n_systems, seed), device, calls)

    params = {"n_systems": n_systems, "calls": calls, "preset": preset, "variant": variant, "seed": seed}
    return _measure("md-profile", params, run, device, root)


def measure_batch_scaling(
    n_systems: int = 60,
    *,
    repeats: int = 3,
    preset: str = "tiny",
    variant: str = "T",
    seed: int = 0,
    device: str | torch.device = "auto",
    root=None,
) -> Artifact:
    """Force-call time against batch size, and the speed-up bound it implies: ``result`` of ``batch_scaling``."""

    def run() -> dict:
        torch.manual_seed(seed)
        return batch_scaling(
            build_model(variant, preset), benchmark_systems(n_systems, seed), device=device, repeats=repeats
        )

    params = {"n_systems": n_systems, "repeats": repeats, "preset": preset, "variant": variant, "seed": seed}
    return _measure("batch-scaling", params, run, device, root)


def measure_model_cost(
    sizes: tuple[int, ...] = (8, 16, 32, 64, 128),
    preset: str = "tiny",
    *,
    variant: str = "T",
    repeats: int = 3,
    seed: int = 0,
    device: str | torch.device = "auto",
    root=None,
) -> Artifact:
    """Energy+force cost of one molecule-like cluster per size: ``result["rows"]`` of ``benchmark_model``."""
    if not sizes or any(int(n) < 1 for n in sizes):
        raise ValueError(f"sizes: expected positive atom counts, got {sizes!r}")

    def run() -> dict:
        torch.manual_seed(seed)
        model = build_model(variant, preset).to(resolve_device(device))
        rows = bench.benchmark_model(
            model, batch_size=8, sizes=tuple(int(n) for n in sizes), repeats=repeats, seed=seed
        )
        return {"rows": rows, "linearity": cost_linearity(rows)}

    params = {"sizes": list(sizes), "preset": preset, "variant": variant, "repeats": repeats, "seed": seed}
    return _measure("model-cost", params, run, device, root)


def measure_labelling(
    n_configurations: int = 240, workers: tuple[int, ...] = (1, 2), reference: str = "gfn2-xtb", root=None
) -> Artifact:
    """Reference labels per second for each number of Dask workers: ``result["rows"]``."""
    workers = tuple(sorted({int(w) for w in workers}))
    if not workers or workers[0] < 1:
        raise ValueError(f"workers: expected positive worker counts, got {workers!r}")

    def run() -> dict:
        rows: list[dict] = []
        for n_workers in [w for w in workers if w > 1] or [1]:
            measured = labelling_throughput(n_configurations, reference, n_workers)
            if not rows:  # every run first labels the same configurations on one worker
                rows.append({"n_workers": 1, "labels_per_s": measured["single_worker_per_s"]})
            if n_workers > 1:
                rows.append({"n_workers": n_workers, "labels_per_s": measured["all_workers_per_s"]})
        return {"reference": reference, "n_configurations": n_configurations, "rows": rows}

    params = {"n_configurations": n_configurations, "workers": list(workers), "reference": reference}
    return _measure("labelling", params, run, "cpu", root)


def measure_training(
    preset: str = "tiny",
    *,
    variant: str = "T",
    batch_size: int = 8,
    n_steps: int = 6,
    atoms_per_molecule: int = 17,
    seed: int = 0,
    device: str | torch.device = "auto",
    root=None,
) -> Artifact:
    """Training updates (forward, force double-backward, AMSGrad, EMA) per second, in samples per second.

    The rate is timed between the first and the last update, so start-up, validation and
    checkpoint writing do not count.
    """
    if n_steps < 2:
        raise ValueError(f"n_steps: expected at least 2 updates to time, got {n_steps}")

    def run() -> dict:
        generator = torch.Generator().manual_seed(seed)
        structures = []
        for _ in range(batch_size * n_steps + 1):
            cluster = molecule_like_cluster(atoms_per_molecule, generator)
            structures.append(
                Data(
                    z=cluster.z,
                    pos=cluster.pos,
                    energy=torch.zeros(1, dtype=torch.float64),
                    forces=torch.zeros(atoms_per_molecule, 3, dtype=torch.float64),
                )
            )
        torch.manual_seed(seed)
        model = build_model(variant, preset)
        config = TrainConfig(
            batch_size=batch_size,
            max_steps=n_steps,
            warmup_steps=1,
            eval_every=10**9,
            checkpoint_every=10**9,
            seed=seed,
            device=str(resolve_device(device)),
            fit_element_references=False,
        )
        stamps: list[float] = []
        with tempfile.TemporaryDirectory(prefix="gemrepro-bench-train-") as folder:
            train_model(
                model,
                structures[:-1],
                structures[-1:],
                config,
                folder,
                progress=False,
                callback=lambda step, info: stamps.append(time.perf_counter()),
            )
        seconds_per_step = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
        return {
            "batch_size": batch_size,
            "atoms_per_molecule": atoms_per_molecule,
            "n_steps": n_steps,
            "parameters": sum(p.numel() for p in model.parameters()),
            "seconds_per_step": seconds_per_step,
            "samples_per_s": batch_size / seconds_per_step,
        }

    params = {
        "preset": preset,
        "variant": variant,
        "batch_size": batch_size,
        "n_steps": n_steps,
        "atoms_per_molecule": atoms_per_molecule,
        "seed": seed,
    }
    return _measure("training", params, run, device, root)


# ----------------------------------------------------------------------------- analysis
def cost_linearity(rows: list[dict]) -> dict[str, float]:
    """Least-squares ``seconds = intercept + slope · atoms`` over the single-molecule (``size``) rows.

    ``r_squared`` near 1 says the cost grows linearly with size (the cutoff bounds each atom's
    neighbours); ``per_atom_ratio`` is the cost per atom of the largest molecule over that of the
    median size, near 1 (or below, while fixed overheads are amortised) when nothing grows faster.
    """
    sizes = [r for r in rows if r.get("case") == "size"]
    if len(sizes) < 3:
        raise ValueError(f"rows: expected at least 3 single-molecule sizes to fit a line, got {len(sizes)}")
    atoms = np.array([r["num_atoms"] for r in sizes], dtype=float)
    seconds = np.array([r["seconds"] for r in sizes], dtype=float)
    slope, intercept = np.polyfit(atoms, seconds, 1)
    residual = seconds - (intercept + slope * atoms)
    r_squared = 1.0 - float(residual @ residual) / float(((seconds - seconds.mean()) ** 2).sum())
    order = np.argsort(atoms)
    per_atom = seconds / atoms
    return {
        "slope_us_per_atom": 1e6 * float(slope),
        "intercept_ms": 1e3 * float(intercept),
        "r_squared": r_squared,
        "per_atom_ratio": float(per_atom[order[-1]] / per_atom[order[len(order) // 2]]),
    }


@dataclass(frozen=True)
class PerformanceResults:
    """The four artifacts of one machine at one scale."""

    md: Artifact
    model: Artifact
    labelling: Artifact
    training: Artifact

    def artifacts(self) -> tuple[Artifact, ...]:
        return self.md, self.model, self.labelling, self.training


def performance_suite(
    scale: Scale, *, seed: int = 0, reference: str = "gfn2-xtb", device: str | torch.device = "auto", root=None
) -> PerformanceResults:
    """All four measurements of ``scale`` on this machine (each cached on its own)."""
    plan = plan_for(scale)
    return PerformanceResults(
        md=measure_md_speedup(plan.md_systems, plan.md_steps, plan.model_preset, seed=seed, device=device, root=root),
        model=measure_model_cost(
            plan.model_sizes, plan.model_preset, repeats=plan.model_repeats, seed=seed, device=device, root=root
        ),
        labelling=measure_labelling(plan.label_configurations, plan.label_workers, reference, root=root),
        training=measure_training(
            plan.train_preset,
            batch_size=plan.train_batch_size,
            n_steps=plan.train_steps,
            seed=seed,
            device=device,
            root=root,
        ),
    )


_HEADLINE = {
    "md-speedup": ("batched / ASE speed", lambda r: r["ratio"]),
    "model-cost": ("µs per atom (slope)", lambda r: r["linearity"]["slope_us_per_atom"]),
    "labelling": ("labels/s, most workers", lambda r: r["rows"][-1]["labels_per_s"]),
    "training": ("samples/s", lambda r: r["samples_per_s"]),
}


def _without_hardware(params: dict) -> dict:
    return {k: v for k, v in params.items() if k != "hardware"}


def collect_measurements(root=None, like: PerformanceResults | None = None) -> pd.DataFrame:
    """Every performance artifact under ``root`` (any machine): measurement, hardware, headline value.

    With ``like``, only the measurements made with the same parameters as ``like``'s artifacts
    (on whichever hardware): the rows that compare machines on equal terms.
    """
    wanted = None if like is None else [_without_hardware(a.manifest["params"]) for a in like.artifacts()]
    folder = (Path(root) if root else artifacts_dir()) / STAGE
    rows = []
    for manifest_path in sorted(folder.glob(f"*/{MANIFEST}")) if folder.is_dir() else []:
        manifest = json.loads(manifest_path.read_text())
        params, result = manifest.get("params", {}), manifest.get("result")
        kind = params.get("measurement")
        if kind not in _HEADLINE or result is None:
            continue
        if wanted is not None and _without_hardware(params) not in wanted:
            continue
        quantity, headline = _HEADLINE[kind]
        rows.append(
            {
                "measurement": kind,
                "hardware": hardware_label(params["hardware"]),
                "device": params["hardware"]["device"],
                "quantity": quantity,
                "value": float(headline(result)),
                "created": manifest.get("created"),
                "key": manifest_path.parent.name,
            }
        )
    return pd.DataFrame(rows, columns=["measurement", "hardware", "device", "quantity", "value", "created", "key"])


def plan_table(scale: Scale) -> pd.DataFrame:
    """The plan of ``scale`` as a two-column table (for the chapter)."""
    return pd.DataFrame([{"setting": k, "value": str(v)} for k, v in asdict(plan_for(scale)).items()])
