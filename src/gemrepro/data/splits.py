"""Train / validation / test splits with the paper's proportions, nested across sizes.

The paper draws one random test set (10,100 configurations) and trains on 3.2k / 32k / 320k /
3.2M configurations with validation sets of a quarter of each (800 ... 800k). Here the smaller
training and validation sets are prefixes of the larger ones, so the four models of a learning
curve see growing, nested data and share one test set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gemrepro.config.scales import Scale


@dataclass(frozen=True)
class Splits:
    """Indices into a dataset: one test set and, per training size, train and validation sets."""

    test: np.ndarray
    train: dict[int, np.ndarray]
    validation: dict[int, np.ndarray]

    def sizes(self) -> list[int]:
        return sorted(self.train)


def make_splits(
    n_configurations: int,
    train_sizes: tuple[int, ...],
    test_size: int,
    seed: int = 0,
    *,
    validation_fraction: float = 0.25,
) -> Splits:
    """Random nested splits; raises when the dataset is too small for the largest size."""
    validation_sizes = {n: max(1, int(round(n * validation_fraction))) for n in train_sizes}
    largest = max(train_sizes)
    needed = test_size + largest + validation_sizes[largest]
    if needed > n_configurations:
        raise ValueError(
            f"dataset has {n_configurations} configurations; the splits need {needed} "
            f"(test {test_size} + train {largest} + validation {validation_sizes[largest]})"
        )
    order = np.random.default_rng(seed).permutation(n_configurations)
    test = np.sort(order[:test_size])
    train_pool = order[test_size : test_size + largest]
    val_pool = order[test_size + largest : needed]
    return Splits(
        test=test,
        train={n: np.sort(train_pool[:n]) for n in sorted(train_sizes)},
        validation={n: np.sort(val_pool[: validation_sizes[n]]) for n in sorted(train_sizes)},
    )


def scale_splits(n_configurations: int, scale: Scale, seed: int = 0) -> Splits:
    """The splits of a scale (``tiny``: 100/320/1000/3200, ``paper``: 3.2k ... 3.2M)."""
    return make_splits(n_configurations, scale.train_sizes, scale.test_size, seed)
