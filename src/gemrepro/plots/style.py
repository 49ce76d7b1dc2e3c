"""What every figure shares: the colour of a training-set size, whichever chapter draws it."""

from __future__ import annotations

import seaborn as sns


def size_palette(sizes) -> dict:
    """Training-set size -> colour, dark for the largest (viridis reversed), the same in every chapter."""
    sizes = sorted(int(n) for n in sizes)
    return dict(zip(sizes, sns.color_palette("viridis_r", len(sizes))))
