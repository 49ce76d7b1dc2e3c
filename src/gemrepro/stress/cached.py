"""The stress chapter's audits of the learning-curve models, cached and shipped.

An audit (:func:`gemrepro.stress.audit.run_audit`) of one model is hot batched MD, reference
relabelling of its frames and the field's NVE and heating runs: about a minute of two cores per
model at ``tiny``, the longest wait of the book. It is deterministic on the CPU with one torch
thread, so it is an artifact like any other (stage ``stress-audit``) and the tiny bundle ships the
chapter's four audits; ``tests/studies/test_shipped_audits.py`` recomputes one and compares.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from gemrepro.cache.artifacts import Artifact, get_or_create, load_artifact
from gemrepro.cache.bundle import shipped_artifact
from gemrepro.cache.paths import artifacts_dir
from gemrepro.catalog import MD_MOLECULES_COVER_ALL_ELEMENTS
from gemrepro.config.scales import Scale
from gemrepro.integrations.potential import potential_from_checkpoint
from gemrepro.md.runner import one_torch_thread
from gemrepro.stress.audit import AuditResult, run_audit
from gemrepro.stress.field import FieldProtocol
from gemrepro.stress.store import read_audit, write_audit
from gemrepro.studies.learning_curve import learning_curve, model_artifacts
from gemrepro.studies.sweep import Protocol, start_images, start_structures

__all__ = ["CHAPTER_AUDIT", "STAGE", "STAGE_VERSION", "AuditDesign", "audit_params", "chapter_audits", "model_audit"]

STAGE = "stress-audit"
STAGE_VERSION = 1  # bump when the outputs of an audit change


@dataclass(frozen=True)
class AuditDesign:
    """What one audit runs: the chapter's parameters (its papermill cell) in one place."""

    time_ps: float = 0.1  # per trajectory
    temperatures: tuple[float, ...] = (600.0, 1200.0)
    n_seeds: int = 1  # trajectories per molecule and temperature
    nve_ps: float = 0.5  # LAMBench's NVE run per molecule (LAMBench: 10 ps)
    ramp_ps: float = 1.0  # MLIP Arena's heating ramp per molecule (MLIP Arena: 10 ps)
    n_sampled_frames: int = 2  # relabelled frames per trajectory

    @property
    def protocol(self) -> Protocol:
        return Protocol(self.time_ps, tuple(self.temperatures), n_sampled_frames=self.n_sampled_frames)

    @property
    def field(self) -> FieldProtocol:
        return FieldProtocol(nve_ps=self.nve_ps, ramp_ps=self.ramp_ps)


CHAPTER_AUDIT = AuditDesign()
"""The stress chapter's defaults; what ``ship`` computes for the bundle (a test holds the two together)."""


def audit_params(model: Artifact, starts: Artifact, design: AuditDesign, seed: int, reference: str | None) -> dict:
    """Cache parameters of one audit: the model and start structures by key, and every protocol value."""
    return {
        "stage_version": STAGE_VERSION,
        "model": f"{model.stage}/{model.key}",
        "starts": f"{starts.stage}/{starts.key}",
        "time_ps": float(design.time_ps),
        "temperatures": [float(t) for t in design.temperatures],
        "n_seeds": int(design.n_seeds),
        "nve_ps": float(design.nve_ps),
        "ramp_ps": float(design.ramp_ps),
        "n_sampled_frames": int(design.n_sampled_frames),
        "seed": int(seed),
        "reference": reference,
    }


def model_audit(
    model: Artifact,
    starts: Artifact,
    design: AuditDesign = CHAPTER_AUDIT,
    *,
    seed: int = 0,
    reference: str | None = "gfn2-xtb",
    scale: Scale | None = None,
    root=None,
    device: str = "cpu",
    progress: bool = False,
    shipped: bool = True,
) -> tuple[Artifact, AuditResult]:
    """The audit of ``model`` on the molecules of ``starts``: from the cache, the scale's bundle, or computed.

    ``device`` is not part of the key (bit-for-bit reproducibility holds on the CPU with one
    thread); ``shipped=False`` computes it even when the bundle holds it.
    """
    root = Path(root) if root else artifacts_dir()
    params = audit_params(model, starts, design, seed, reference)
    found = load_artifact(STAGE, params, root)
    if found is None and shipped and scale is not None:
        found = shipped_artifact(scale, STAGE, params, root)
    if found is None:

        def build(folder: Path) -> dict:
            molecules = {atoms.info["name"]: atoms for atoms in start_images(starts)}
            potential = potential_from_checkpoint(model.file("model.pt"), device=device)
            with one_torch_thread():
                result = run_audit(
                    potential,
                    molecules,
                    design.protocol,
                    folder / "work",
                    n_seeds=design.n_seeds,
                    seed=seed,
                    reference=reference,
                    device=potential.device,
                    field=design.field,
                    progress=progress,
                )
            write_audit(result, folder)
            shutil.rmtree(folder / "work")  # the scratch run; the artifact keeps its own copy
            return {
                "n_trajectories": len(result.trajectories),
                "n_failed": int(result.trajectories["failed"].sum()),
                "n_frames": len(result.frames),
            }

        found = get_or_create(STAGE, params, build, root)
    return found, read_audit(found.path)


def chapter_audits(
    scale: Scale,
    design: AuditDesign = CHAPTER_AUDIT,
    *,
    seed: int = 0,
    reference: str | None = "gfn2-xtb",
    root=None,
    device: str = "cpu",
    progress: bool = False,
) -> dict[int, tuple[Artifact, AuditResult]]:
    """The stress chapter's audits, by training size: every learning-curve model on the sweep's molecules
    (at least the set that covers all elements), as the chapter asks for them."""
    root = Path(root) if root else artifacts_dir()
    curve = learning_curve(scale=scale, seed=seed, reference=reference or "gfn2-xtb", root=root, progress=progress)
    models = dict(zip((int(n) for n in curve["train_size"]), model_artifacts(curve, root=root), strict=True))
    starts = start_structures(max(scale.n_md_molecules, MD_MOLECULES_COVER_ALL_ELEMENTS), seed, root)
    return {
        size: model_audit(
            model,
            starts,
            design,
            seed=seed,
            reference=reference,
            scale=scale,
            root=root,
            device=device,
            progress=progress,
        )
        for size, model in models.items()
    }
