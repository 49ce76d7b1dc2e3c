"""gemrepro: how robust are GemNet potentials in long and hot molecular dynamics?

A small library behind a reproducible companion book. Stages follow the data flow of
``DESIGN.md``: catalog -> data (sampling, labels, formats, splits) -> model -> train -> md
-> analysis, with ``studies`` caching each stage's output as a content-addressed artifact
and ``book`` turning them into chapters.
"""

import os

__version__ = "0.1.0"

# Reference codes (tblite, PySCF) spin OpenMP threads that fight each other on a busy machine
# and make results depend on the thread count; gemrepro parallelises over Dask workers instead.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Chapters run headless under papermill, where ipywidgets is absent: tqdm falls back to text
# progress bars, which is what we want, so its "IProgress not found" warning is noise.
import warnings  # noqa: E402

warnings.filterwarnings("ignore", message="IProgress not found")
