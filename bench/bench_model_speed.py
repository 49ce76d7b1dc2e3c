"""Single-threaded CPU cost of GemNet: MD-like inference, a force-trained step, tiny molecules.

Run ``python bench/bench_model_speed.py`` for the current implementation, or add
``--baseline DIR`` (a copy of an older ``src/gemrepro/model`` folder) to time both side by side
in the same process, calls interleaved, which is the only fair comparison on a shared machine.
The copy is imported under another package name with its ``gemrepro.model`` imports redirected
to itself, so the baseline really runs the old layers, not the current ones.

MD cases feed the 60 start geometries of ``gemrepro bench md`` (654 atoms) or one of them,
displaced a little at every call as in an MD step, so topology reuse is measured as MD sees it.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch
from torch_geometric.data import Batch

from gemrepro.benchmarks.model import molecule_like_cluster

BASELINE_PACKAGE = "gemrepro_model_baseline"


def load_baseline(folder: str | Path) -> ModuleType:
    """Import a copy of an older ``gemrepro/model`` folder as ``gemrepro_model_baseline``."""
    folder = Path(folder)
    if not (folder / "gemnet.py").is_file():
        raise ValueError(f"--baseline: expected a copy of src/gemrepro/model (with gemnet.py), got {folder}")
    root = Path(tempfile.mkdtemp(prefix="gemrepro-baseline-"))
    target = root / BASELINE_PACKAGE
    shutil.copytree(folder, target, ignore=shutil.ignore_patterns("__pycache__"))
    for source in target.glob("*.py"):
        text = re.sub(r"\bgemrepro\.model\b", BASELINE_PACKAGE, source.read_text())
        text = re.sub(r"\bgemrepro_model_old\b", BASELINE_PACKAGE, text)
        source.write_text(text)
    sys.path.insert(0, str(root))
    return importlib.import_module(BASELINE_PACKAGE)


def _median_seconds(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each run, calls interleaved so that load changes hit all runs alike."""
    for run in runs.values():
        run()  # warm-up
    times: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(repeats):
        for label, run in runs.items():
            start = time.perf_counter()
            run()
            times[label].append(time.perf_counter() - start)
    return {label: statistics.median(values) for label, values in times.items()}


class _Trajectory:
    """Positions of a batch displaced by small random steps, cycled call after call."""

    def __init__(self, data: Batch, seed: int, n_frames: int = 8, step: float = 0.01) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.frames = [
            Batch(z=data.z, pos=data.pos + step * torch.randn(data.pos.shape, generator=generator, dtype=data.pos.dtype),
                  batch=data.batch)
            for _ in range(n_frames)
        ]
        self.index = 0

    def next(self) -> Batch:
        self.index = (self.index + 1) % len(self.frames)
        return self.frames[self.index]


def _cases(seed: int, md: bool) -> dict[str, Batch]:
    generator = torch.Generator().manual_seed(seed)
    cases = {"batch32x17": Batch.from_data_list([molecule_like_cluster(17, generator) for _ in range(32)])}
    for n in (3, 5, 9):
        cases[f"single{n}"] = Batch.from_data_list([molecule_like_cluster(n, generator)])
    if md:
        from gemrepro.benchmarks.md import benchmark_systems
        from torch_geometric.data import Data

        systems = benchmark_systems(60)
        molecules = [Data(z=torch.as_tensor(a.numbers), pos=torch.as_tensor(a.positions)) for a in systems]
        cases["md60"] = Batch.from_data_list(molecules)
        cases["md1"] = Batch.from_data_list(molecules[:1])
    return cases


def _runners(package: ModuleType, variant: str, cases: dict[str, Batch], seed: int) -> dict[str, Callable[[], object]]:
    """Per case: an inference (energy+forces) call; plus one force-trained step on the batch."""
    gemnet = importlib.import_module(package.__name__ + ".gemnet")
    torch.manual_seed(seed)
    model = gemnet.build_model(variant, "tiny").float()
    gemnet.fit_scale_factors(model, cases["batch32x17"])
    inference = model.__class__(model.config).float().eval()
    inference.load_state_dict(model.state_dict())
    runs: dict[str, Callable[[], object]] = {}
    for name, data in cases.items():
        if name.startswith("md"):
            trajectory = _Trajectory(data, seed)
            runs[f"infer_{name}"] = lambda trajectory=trajectory: inference(trajectory.next())
        else:
            runs[f"infer_{name}"] = lambda data=data: inference(data)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)

    def train_step() -> None:
        optimizer.zero_grad()
        result = model(cases["batch32x17"])
        loss = (result["forces"] ** 2).mean() + 0.01 * (result["energy"] ** 2).mean()
        loss.backward()
        optimizer.step()

    runs["train_batch32x17"] = train_step
    return runs


def time_packages(
    packages: dict[str, ModuleType], variant: str, repeats: int, seed: int = 0, md: bool = True
) -> dict[str, dict[str, float]]:
    """Median seconds per case (rows) and package (columns), timed interleaved."""
    cases = _cases(seed, md)
    runners = {label: _runners(package, variant, cases, seed) for label, package in packages.items()}
    return {
        case: _median_seconds({label: runs[case] for label, runs in runners.items()}, repeats)
        for case in runners[next(iter(runners))]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="folder holding a copy of an older src/gemrepro/model")
    parser.add_argument("--variants", default="T,Q")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-md", action="store_true", help="skip the 60-system MD cases")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    packages = {"current": importlib.import_module("gemrepro.model")}
    if args.baseline:
        packages = {"baseline": load_baseline(args.baseline), **packages}
    for variant in args.variants.split(","):
        rows = time_packages(packages, variant, args.repeats, md=not args.no_md and variant == "T")
        labels = list(packages)
        print(f"GemNet-{variant} tiny, float32, {args.threads} thread(s) (median seconds)")
        print(f"{'case':<22}" + "".join(f"{label:>12}" for label in labels) + ("     speed-up" if len(labels) == 2 else ""))
        for case, seconds in rows.items():
            line = f"{case:<22}" + "".join(f"{seconds[label]:>12.4f}" for label in labels)
            if len(labels) == 2:
                line += f"{seconds[labels[0]] / seconds[labels[1]]:>12.2f}x"
            print(line, flush=True)


if __name__ == "__main__":
    main()
