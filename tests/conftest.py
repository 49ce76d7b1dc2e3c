"""Shared test configuration. The tests mirror the package: ``tests/<package>/test_*.py`` tests
``gemrepro.<package>``; project-wide checks (architecture, lint, pins, stage digests) stay in
``tests/`` beside the records they read (``stage_code.json``, ``field_scores_reference.json``).

The folders have no ``__init__.py``: pytest imports each test module by its file name, so every
``test_*.py`` name must be unique across folders, and a folder's helper module (``model_geometries``,
``stress_calculators``) is importable from the tests beside it. A fixture used in more than one
folder belongs here: ``arm_trajectories`` (tests/analysis/ and tests/book/). The three ``model``
fixtures of tests/model/ build different networks and stay there.
"""

import numpy as np
import pandas as pd
import pytest


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
