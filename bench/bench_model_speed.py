"""Single-threaded CPU cost of GemNet: inference, a force-trained step, and tiny molecules.

Run ``python bench/bench_model_speed.py`` for the current implementation, or add
``--baseline PATH:PACKAGE`` (a directory on sys.path and the name of a copy of an older
``gemrepro.model`` package inside it) to time both side by side in the same process, which is
the only fair comparison on a shared machine.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
from collections.abc import Callable
from types import ModuleType

import torch
from torch_geometric.data import Batch

from gemrepro.model.bench import molecule_like_cluster


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


def _cases(seed: int) -> dict[str, Batch]:
    generator = torch.Generator().manual_seed(seed)
    cases = {"batch32x17": Batch.from_data_list([molecule_like_cluster(17, generator) for _ in range(32)])}
    for n in (3, 5, 9):
        cases[f"single{n}"] = Batch.from_data_list([molecule_like_cluster(n, generator)])
    return cases


def _runners(package: ModuleType, variant: str, cases: dict[str, Batch], seed: int) -> dict[str, Callable[[], object]]:
    """Per case: an inference (energy+forces) call; plus one force-trained step on the batch."""
    gemnet = importlib.import_module(package.__name__ + ".gemnet")
    torch.manual_seed(seed)
    model = gemnet.build_model(variant, "tiny").float()
    gemnet.fit_scale_factors(model, cases["batch32x17"])
    inference = model.__class__(model.config).float().eval()
    inference.load_state_dict(model.state_dict())
    runs: dict[str, Callable[[], object]] = {
        f"infer_{name}": (lambda data=data: inference(data)) for name, data in cases.items()
    }
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


def time_packages(packages: dict[str, ModuleType], variant: str, repeats: int, seed: int = 0) -> dict[str, dict[str, float]]:
    """Median seconds per case (rows) and package (columns), timed interleaved."""
    cases = _cases(seed)
    runners = {label: _runners(package, variant, cases, seed) for label, package in packages.items()}
    return {
        case: _median_seconds({label: runs[case] for label, runs in runners.items()}, repeats)
        for case in runners[next(iter(runners))]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="PATH:PACKAGE of an older copy of gemrepro.model")
    parser.add_argument("--variants", default="T,Q")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    packages = {"current": importlib.import_module("gemrepro.model")}
    if args.baseline:
        path, name = args.baseline.rsplit(":", 1)
        sys.path.insert(0, path)
        packages = {"baseline": importlib.import_module(name), **packages}
    for variant in args.variants.split(","):
        rows = time_packages(packages, variant, args.repeats)
        labels = list(packages)
        print(f"GemNet-{variant} tiny, float32, 1 thread (median seconds)")
        print(f"{'case':<22}" + "".join(f"{label:>12}" for label in labels) + ("     speed-up" if len(labels) == 2 else ""))
        for case, seconds in rows.items():
            line = f"{case:<22}" + "".join(f"{seconds[label]:>12.4f}" for label in labels)
            if len(labels) == 2:
                line += f"{seconds[labels[0]] / seconds[labels[1]]:>12.2f}x"
            print(line)

if __name__ == "__main__":
    main()
