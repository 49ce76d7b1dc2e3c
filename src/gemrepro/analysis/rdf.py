"""h(r): the distribution of interatomic distances, MDsim's check that a stable trajectory is also right.

Fu et al. ("Forces are Not Enough", MDsim) compare a model's MD with the reference MD through
h(r), the normalised histogram of all interatomic distances of a molecule over a trajectory
(500 bins up to 10 Å), and report the mean absolute difference of the two curves. A model can
keep every bond within 0.5 Å and still sample the wrong geometries; h(r) sees that.

Here ``h`` is a probability density in 1/Å (it integrates to one over the bins), so
:func:`histogram_distance` — the integral of ``|h_a - h_b|`` over r — lies between 0 (same
distribution) and 2 (no overlap), whatever the bin width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DistanceHistogram", "distance_histogram", "histogram_distance", "pair_distances"]

MDSIM_BINS = 500
MDSIM_MAX_DISTANCE = 10.0  # Å


@dataclass(frozen=True)
class DistanceHistogram:
    """h(r) on fixed bins: centres ``r`` (Å), density ``h`` (1/Å), and how many frames made it."""

    edges: np.ndarray
    h: np.ndarray
    n_frames: int

    @property
    def r(self) -> np.ndarray:
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    @property
    def width(self) -> float:
        return float(self.edges[1] - self.edges[0])


def pair_distances(positions: np.ndarray) -> np.ndarray:
    """Distances (Å) of every atom pair ``i < j`` in every frame: (frames, n_atoms (n_atoms - 1) / 2)."""
    positions = np.asarray(positions, dtype=float)
    if positions.ndim == 2:
        positions = positions[None]
    if positions.ndim != 3 or positions.shape[-1] != 3 or positions.shape[1] < 2:
        raise ValueError(f"positions: expected (frames, atoms >= 2, 3) in Å, got shape {positions.shape}")
    i, j = np.triu_indices(positions.shape[1], k=1)
    return np.linalg.norm(positions[:, i] - positions[:, j], axis=-1)


def distance_histogram(
    positions: np.ndarray, n_bins: int = MDSIM_BINS, max_distance: float = MDSIM_MAX_DISTANCE
) -> DistanceHistogram:
    """h(r) of the frames ``positions`` (frames, atoms, 3): a density over ``n_bins`` bins in (0, max_distance].

    Pairs farther than ``max_distance`` fall outside the bins; the density is normalised over
    the pairs inside them, as ``numpy.histogram(..., density=True)`` does in MDsim.
    """
    if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins: expected a positive integer, got {n_bins!r}")
    if not (np.isfinite(max_distance) and max_distance > 0):
        raise ValueError(f"max_distance: expected a positive distance in Å, got {max_distance!r}")
    distances = pair_distances(positions)
    if not np.all(np.isfinite(distances)):
        raise ValueError("positions: expected finite coordinates (a failed frame holds NaN?)")
    edges = np.linspace(0.0, float(max_distance), int(n_bins) + 1)
    counts, _ = np.histogram(distances, bins=edges)
    total = counts.sum()
    if total == 0:
        raise ValueError(f"positions: no atom pair closer than max_distance={max_distance} Å")
    return DistanceHistogram(edges, counts / (total * np.diff(edges)), int(distances.shape[0]))


def histogram_distance(a: DistanceHistogram, b: DistanceHistogram) -> float:
    """∫ |h_a(r) − h_b(r)| dr over the shared bins: 0 for equal distributions, 2 for disjoint ones."""
    if a.edges.shape != b.edges.shape or not np.allclose(a.edges, b.edges):
        raise ValueError("histograms: expected the same bins (n_bins and max_distance) for both")
    return float(np.sum(np.abs(a.h - b.h) * np.diff(a.edges)))
