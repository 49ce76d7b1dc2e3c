"""Hole or real chemistry? What the reference method says about the geometry a trajectory failed in.

A trajectory fails when a bond stretches past the rule's tolerance. That is a defect of the
learned surface (a *hole*: the model makes a torn geometry cheap that the true surface makes
expensive) or a real event the reference would also allow at that temperature (a bond that
dissociates). The two are told apart by energy: between the last stored frame before the failure
and the failed geometry, the model's energy rises by ``ΔE_model`` (small, or the dynamics would
not have gone there) and the reference's by ``ΔE_ref``. When the reference charges more than
:data:`HOLE_THRESHOLD_KT` k_B T above what the model charged, the model opened a path the true
surface does not have: a hole. Otherwise the reference agrees that the break was within reach:
chemistry. The threshold is fixed before any data: 10 k_B T is a Boltzmann factor of e^-10, an
event not seen in the length of MD run here, and above the ~0.5 eV energy-difference noise of the
`tiny` models only from about 600 K, so at lower temperatures a verdict of "hole" needs a large
excess.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from ase import units

HOLE_THRESHOLD_KT = 10.0
ORIGINS: tuple[str, ...] = ("hole", "chemistry", "undetermined")


@dataclass(frozen=True)
class FailureOrigin:
    """The verdict on one failure and the numbers it came from (eV)."""

    verdict: str
    model_delta_eV: float
    reference_delta_eV: float
    threshold_eV: float
    reason: str

    @property
    def excess_eV(self) -> float:
        """How much more the reference charges for the step into the failed geometry than the model."""
        return self.reference_delta_eV - self.model_delta_eV

    def as_dict(self) -> dict:
        return {**asdict(self), "excess_eV": self.excess_eV}


def failure_origin(
    *,
    model_before: float,
    model_after: float,
    reference_before: float,
    reference_after: float,
    temperature_K: float,
    threshold_kT: float = HOLE_THRESHOLD_KT,
) -> FailureOrigin:
    """Hole, chemistry, or undetermined (a reference calculation failed), by the rule in the module docstring.

    ``*_before`` are energies (eV) of the last frame before the failure, ``*_after`` of the failed
    geometry, by the model and by the reference; ``temperature_K`` is the thermostat's.
    """
    if not (np.isfinite(temperature_K) and temperature_K > 0):
        raise ValueError(f"temperature_K: expected a positive temperature, got {temperature_K!r}")
    if not (np.isfinite(threshold_kT) and threshold_kT > 0):
        raise ValueError(f"threshold_kT: expected a positive number of k_B T, got {threshold_kT!r}")
    threshold = float(threshold_kT * units.kB * temperature_K)
    model_delta = float(model_after - model_before)
    reference_delta = float(reference_after - reference_before)
    if not np.isfinite(reference_delta):
        return FailureOrigin(
            "undetermined",
            model_delta,
            reference_delta,
            threshold,
            "a reference calculation before or at the failure did not converge",
        )
    if not np.isfinite(model_delta):
        return FailureOrigin(
            "undetermined", model_delta, reference_delta, threshold, "the model's energy at the failure is not finite"
        )
    excess = reference_delta - model_delta
    if excess > threshold:
        return FailureOrigin(
            "hole",
            model_delta,
            reference_delta,
            threshold,
            f"the reference puts the failed geometry {excess:.2f} eV higher than the model does "
            f"(more than {threshold_kT:g} kT = {threshold:.2f} eV)",
        )
    return FailureOrigin(
        "chemistry",
        model_delta,
        reference_delta,
        threshold,
        f"the reference charges {reference_delta:+.2f} eV for the break, the model {model_delta:+.2f} "
        f"eV: within {threshold_kT:g} kT = {threshold:.2f} eV, so the break was within reach",
    )
