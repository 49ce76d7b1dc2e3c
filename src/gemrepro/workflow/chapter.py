"""What every chapter does first and last: check its papermill parameters, fix seeds, cite provenance.

Chapters stay thin: they call this module, the package's stages and ``gemrepro.plots``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gemrepro.workflow.artifacts import Artifact
from gemrepro.workflow.paths import artifacts_dir
from gemrepro.workflow.scales import Scale, get_scale


@dataclass(frozen=True)
class ChapterSettings:
    """Validated parameters of a chapter run."""

    scale: Scale
    seed: int
    reference: str
    artifacts: Path
    device: str


def setup(scale: str = "tiny", seed: int = 0, reference: str = "gfn2-xtb", data_dir: str | None = None,
          device: str = "auto") -> ChapterSettings:
    """Validate papermill parameters (one-line ``ValueError`` each), seed everything, style plots."""
    spec = get_scale(scale)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    from gemrepro.reference import METHODS

    if reference not in METHODS:
        raise ValueError(f"unknown reference method {reference!r}: expected one of {', '.join(METHODS)}")
    if device not in ("auto", "cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"unknown device {device!r}: expected auto, cpu or cuda")
    if data_dir is not None and not Path(data_dir).expanduser().exists():
        raise ValueError(f"data_dir {data_dir!r} does not exist")
    random.seed(seed)
    np.random.seed(seed)
    import torch

    torch.manual_seed(seed)
    if spec.name == "tiny":
        torch.set_num_threads(1)  # bit-for-bit results for nbval
    _style()
    return ChapterSettings(spec, int(seed), reference, artifacts_dir(data_dir), device)


def _style() -> None:
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    mpl.rcParams.update({"figure.dpi": 110, "savefig.dpi": 110, "figure.figsize": (7.5, 4.0)})


def provenance(*artifacts: Artifact) -> None:
    """Display the provenance line of the artifacts behind the figure above."""
    from IPython.display import Markdown, display

    lines = "<br>".join(f"<small>Computed: {a.provenance()}</small>" for a in artifacts)
    display(Markdown(lines))
