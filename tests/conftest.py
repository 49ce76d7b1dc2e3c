"""Shared test configuration. The tests mirror the package: ``tests/<package>/test_*.py`` tests
``gemrepro.<package>``; project-wide checks (architecture, lint, pins, stage digests) stay in
``tests/`` beside the records they read (``field_scores_reference.json``; the stages' code record
``stage_code.json`` ships in the package, ``src/gemrepro/cache/``).

The folders have no ``__init__.py``: pytest imports each test module by its file name, so every
``test_*.py`` name must be unique across folders, and a folder's helper module (``model_geometries``,
``stress_calculators``) is importable from the tests beside it. A fixture used in more than one
folder belongs here: ``arm_trajectories`` (tests/analysis/ and tests/book/), ``fake_stage``
(tests/cache/ and tests/studies/). The three ``model``
fixtures of tests/model/ build different networks and stay there.
"""

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gemrepro.cache import code
from gemrepro.cache import stages as cache_stages
from gemrepro.cache.code import CodeWalker, PackageReader


def _arm_trajectories(medians: dict, n_md: int = 16, horizon: float = 20.0, seed: int = 0) -> pd.DataFrame:
    """Exponential failure times, one median per training seed of each arm, censored at ``horizon``:
    one row per trajectory (arm, training_seed, system, failed, stable_time_ps)."""
    rng = np.random.default_rng(seed)
    rows = []
    for arm, per_model in medians.items():
        for training_seed, median in enumerate(per_model):
            for k, t in enumerate(rng.exponential(median / np.log(2), n_md)):
                rows.append(
                    {
                        "arm": arm,
                        "training_seed": training_seed,
                        "system": k,
                        "failed": bool(t < horizon),
                        "stable_time_ps": float(min(t, horizon)),
                    }
                )
    return pd.DataFrame(rows)


@pytest.fixture
def arm_trajectories():
    """Makes synthetic stability runs of two arms of models (see ``_arm_trajectories``)."""
    return _arm_trajectories


@dataclass
class FakeStage:
    """A registered stage ``fake`` built by ``gemrepro.fake`` of a package copy whose code a test edits."""

    name: str
    package: Path
    record: Path

    @property
    def module(self) -> Path:
        return self.package / "fake.py"

    def digest(self) -> str:
        return cache_stages.today_digest(self.name)

    def edit(self, body: str = "return 2") -> str:
        """Change the builder's code (a new digest); returns the new digest."""
        self.module.write_text(f"STAGE_VERSION = {self.version()}\n\n\ndef compute():\n    {body}\n")
        cache_stages.clear_caches()
        return self.digest()

    def version(self) -> int:
        return int(self.module.read_text().split("STAGE_VERSION = ")[1].split()[0]) if self.module.exists() else 1

    def bump(self) -> None:
        text = self.module.read_text()
        self.module.write_text(
            text.replace(f"STAGE_VERSION = {self.version()}", f"STAGE_VERSION = {self.version() + 1}")
        )
        cache_stages.clear_caches()

    def write_record(self, entry: dict) -> None:
        self.record.write_text(json.dumps({self.name: entry}))
        cache_stages.clear_caches()


@pytest.fixture
def fake_stage(tmp_path, monkeypatch):
    """Registers stage ``fake`` whose builder ``gemrepro.fake`` is read from a file under ``tmp_path`` (so a
    test changes a stage's code by editing it) and points the stage record at an empty file."""
    package = tmp_path / "code" / "gemrepro"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "fake.py").write_text("STAGE_VERSION = 1\n\n\ndef compute():\n    return 1\n")
    monkeypatch.setitem(
        cache_stages.STAGES, "fake", cache_stages.StageCode("gemrepro.fake:STAGE_VERSION", "gemrepro.fake")
    )
    fake, real = PackageReader(package), PackageReader()

    def reader(name):  # the fake builder from the copy, everything else from the package
        return fake(name) if name == "gemrepro.fake" else real(name)

    monkeypatch.setattr(code, "package_walker", functools.lru_cache(maxsize=1)(lambda: CodeWalker(reader)))
    monkeypatch.setattr(cache_stages, "RECORD", tmp_path / "stage_code.json")
    cache_stages.clear_caches()
    yield FakeStage("fake", package, tmp_path / "stage_code.json")
    cache_stages.clear_caches()
