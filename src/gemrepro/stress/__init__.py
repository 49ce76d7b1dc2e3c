"""Robustness audit of any ML potential: hot MD, the bond rule, time to failure, relabelled frames.

``gemrepro stress`` runs the book's protocol on a potential the book did not train — any ASE
calculator or a gemrepro checkpoint — and writes a self-contained HTML report and a JSON summary.
The submodules import lazily, so a calculator worker process starts without torch.
"""

__all__ = ["audit", "calculators", "plots", "report", "worker"]
