"""What every chapter does first and last: check its papermill parameters, fix seeds, cite provenance.

Chapters stay thin: they call this module, the package's stages and ``gemrepro.plots``.
"""

from __future__ import annotations

import base64
import html
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

from gemrepro.cache.artifacts import Artifact
from gemrepro.cache.paths import artifacts_dir
from gemrepro.config.scales import Scale, get_scale
from gemrepro.reference import METHODS


@dataclass(frozen=True)
class ChapterSettings:
    """Validated parameters of a chapter run."""

    scale: Scale
    seed: int
    reference: str
    artifacts: Path
    device: str


class ChapterParameterError(ValueError):
    """A papermill parameter a chapter cannot run with; shown as its one-line message, no traceback."""


def _show_in_one_line(shell, etype, evalue, tb, tb_offset=None) -> None:
    """IPython handler: the error output (hence papermill's report) is the message alone."""
    shell._showtraceback(etype, evalue, [f"{etype.__name__}: {evalue}"])


def _one_line_parameter_errors() -> None:
    try:
        # Imported here: IPython comes with the book extra (ipykernel) and only a notebook needs it.
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the book's extras
        return
    shell = get_ipython()
    if shell is not None:
        shell.set_custom_exc((ChapterParameterError,), _show_in_one_line)


def _check_parameters(scale, seed, reference, data_dir, device):
    spec = get_scale(scale)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if reference not in METHODS:
        raise ValueError(f"unknown reference method {reference!r}: expected one of {', '.join(METHODS)}")
    if device not in ("auto", "cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"unknown device {device!r}: expected auto, cpu or cuda")
    if data_dir is not None and not Path(data_dir).expanduser().exists():
        raise ValueError(f"data_dir {data_dir!r} does not exist")
    return spec


def setup(
    scale: str = "tiny",
    *,
    seed: int = 0,
    reference: str = "gfn2-xtb",
    data_dir: str | None = None,
    device: str = "auto",
) -> ChapterSettings:
    """Validate papermill parameters (a one-line ``ChapterParameterError`` each), seed everything, style plots."""
    _one_line_parameter_errors()
    try:
        spec = _check_parameters(scale, seed, reference, data_dir, device)
    except ValueError as exc:
        raise ChapterParameterError(f"chapter parameter: {exc}") from None
    _FIGURES.clear()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if spec.name == "tiny":
        torch.set_num_threads(1)  # bit-for-bit results for nbval
    _style()
    return ChapterSettings(spec, int(seed), reference, artifacts_dir(data_dir), device)


def _style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    mpl.rcParams.update({"figure.dpi": 110, "savefig.dpi": 110, "figure.figsize": (7.5, 4.0)})


def provenance(*artifacts: Artifact) -> None:
    """Display the provenance line of the artifacts behind the figure above."""
    # Imported here: IPython comes with the book extra (ipykernel) and only a notebook needs it.
    from IPython.display import Markdown, display

    lines = "<br>".join(f"<small>Computed: {a.provenance()}</small>" for a in artifacts)
    display(Markdown(lines))


_FIGURES: list[str] = []  # captions of the figures shown so far in this chapter (numbering)


def _provenance_html(artifacts: Sequence[Artifact]) -> str:
    return "<br>".join(f"Computed: {html.escape(a.provenance())}" for a in artifacts)


def csv_download_link(data, filename: str) -> str:
    """An HTML link that downloads ``data`` (a DataFrame) as CSV; the file is inside the page itself."""
    text = data.to_csv(index=False)
    payload = base64.b64encode(text.encode()).decode()
    size = f"{len(text) / 1024:.1f} kB"
    return (
        f'<a download="{html.escape(filename)}" href="data:text/csv;base64,{payload}">'
        f"download the data ({html.escape(filename)}, {size})</a>"
    )


def figure(fig, caption: str, *, data=None, artifacts: Sequence[Artifact] = (), paper: str | None = None) -> None:
    """Show ``fig`` as the chapter's next numbered figure with its caption, provenance and data.

    ``paper`` names the figure of the papers it reproduces (e.g. "Stocker et al. Fig. 2b, c");
    ``data`` is the table behind the figure, offered as a CSV download; ``artifacts`` are the
    cached computations it came from. Figures are numbered in the order a chapter shows them.
    """
    from IPython.display import HTML, display

    if not caption or not isinstance(caption, str):
        raise ValueError("caption: expected a sentence saying what the figure shows")
    _FIGURES.append(caption)
    number = len(_FIGURES)
    display(fig)
    plt.close(fig)
    reproduces = f" <i>Reproduces {html.escape(paper)}.</i>" if paper else ""
    parts = [f"<b>Figure {number}.</b> {html.escape(caption)}{reproduces}"]
    if artifacts:
        parts.append(f"<small>{_provenance_html(artifacts)}</small>")
    if data is not None:
        slug = re.sub(r"[^a-z0-9]+", "-", caption.lower()).strip("-")[:40] or "figure"
        parts.append(f"<small>{csv_download_link(data, f'figure-{number}-{slug}.csv')}</small>")
    display(HTML('<div class="gemrepro-figure-caption">' + "<br>".join(parts) + "</div>"))
