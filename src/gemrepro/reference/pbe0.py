"""PBE0/def2-SVP with density fitting and D3(BJ) through PySCF (gpu4pyscf on a GPU).

This is the papers' level of theory (PBE0+MBD) with MBD swapped for D3(BJ) and a smaller
basis, so it stays at seconds per small molecule on a CPU. The convergence chapter counts how
often the SCF fails; PySCF does not raise on non-convergence, so ``mf.converged`` is checked.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import numpy as np
from ase.units import Bohr, Hartree

from gemrepro.reference.base import ReferenceResult
from gemrepro.reference.method import ReferenceMethod

#: Dispersion corrections PySCF (via pyscf-dispersion) accepts in ``mf.disp``.
DISPERSIONS = ("d3bj", "d3zero", "d3bjm", "d3zerom", "d3op", "d4")
DEVICES = ("auto", "cpu", "gpu")


@lru_cache(maxsize=None)
def basis_elements(basis: str) -> frozenset[int]:
    """Atomic numbers for which PySCF ships ``basis`` (def2-SVP: H-Ba, Hf-Rn)."""
    # Imported here: PySCF is slow to import and only PBE0 needs it.
    from pyscf.data.elements import ELEMENTS
    from pyscf.gto.basis import load

    found = set()
    with warnings.catch_warnings():  # PySCF suggests basis-set-exchange for every miss
        warnings.simplefilter("ignore")
        for z in range(1, 119):
            try:
                if load(basis, ELEMENTS[z]):
                    found.add(z)
            except Exception:  # noqa: BLE001 - PySCF signals a missing element in several ways
                pass
    return frozenset(found)


def gpu_available() -> bool:
    """True when gpu4pyscf imports and CUDA sees a device."""
    try:
        # Imported here: optional GPU extra, may be absent.
        import cupy
        import gpu4pyscf  # noqa: F401

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - no CUDA, no cupy, or a broken driver: all mean CPU
        return False


@dataclass(frozen=True)
class PBE0(ReferenceMethod):
    """Kohn-Sham DFT single points with analytic gradients.

    RKS for closed shells, UKS otherwise. ``dispersion=None`` switches the correction off;
    ``threads`` sets PySCF's OpenMP threads (1 by default: Dask runs one worker per core);
    ``device="auto"`` uses gpu4pyscf when it and a CUDA device are present.
    """

    name: ClassVar[str] = "pbe0"

    xc: str = "pbe0"
    basis: str = "def2-svp"
    dispersion: str | None = "d3bj"
    density_fit: bool = True
    max_cycle: int = 100
    conv_tol: float = 1e-9
    grid_level: int = 3
    threads: int = 1
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.dispersion is not None and self.dispersion not in DISPERSIONS:
            raise ValueError(f"dispersion must be None or one of {', '.join(DISPERSIONS)}, got {self.dispersion!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        for field_name in ("max_cycle", "threads"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{field_name} must be a positive integer, got {value!r}")
        if not 0 <= self.grid_level <= 9:
            raise ValueError(f"grid_level must be in 0..9, got {self.grid_level!r}")
        if not self.conv_tol > 0:
            raise ValueError(f"conv_tol must be > 0, got {self.conv_tol!r}")

    def options(self) -> dict:
        """Settings that change the numbers; ``threads`` and ``device`` do not, so they are left out."""
        settings = super().options()
        del settings["threads"], settings["device"]
        return settings

    @property
    def supported_elements(self) -> frozenset[int]:
        return basis_elements(self.basis)

    def _check_runtime(self) -> None:
        if self.device == "gpu" and not gpu_available():
            raise ValueError("device='gpu' needs gpu4pyscf and a CUDA device; neither is usable here")

    def _calculate(self, numbers: np.ndarray, positions: np.ndarray, charge: int, multiplicity: int) -> ReferenceResult:
        # Imported here: PySCF is slow to import and only PBE0 needs it.
        from pyscf import dft, gto, lib

        lib.num_threads(self.threads)
        molecule = gto.M(
            atom=[(int(z), tuple(r)) for z, r in zip(numbers, positions)],
            unit="Angstrom",
            basis=self.basis,
            ecp=_def2_ecp(self.basis, numbers),
            charge=charge,
            spin=multiplicity - 1,
            verbose=0,
        )
        kind = dft.RKS if multiplicity == 1 else dft.UKS
        mf = kind(molecule, xc=self.xc)
        if self.density_fit:
            mf = mf.density_fit()
        mf.disp = self.dispersion
        mf.grids.level = self.grid_level
        mf.conv_tol = self.conv_tol
        mf.max_cycle = self.max_cycle
        mf.verbose = 0
        if self.device == "gpu" or (self.device == "auto" and gpu_available()):
            mf = mf.to_gpu()
        energy = float(_to_numpy(mf.kernel())) * Hartree
        info = {"scf_cycles": int(getattr(mf, "cycles", -1)), "device": "gpu" if _on_gpu(mf) else "cpu"}
        if not mf.converged:
            # Gradients of an unconverged density are forces of no state: keep only the energy.
            return ReferenceResult(
                energy,
                np.full((len(numbers), 3), np.nan),
                False,
                0.0,
                f"SCF not converged in {self.max_cycle} cycles",
                info,
            )
        gradient = _to_numpy(mf.nuc_grad_method().kernel())
        forces = -np.asarray(gradient, dtype=np.float64) * (Hartree / Bohr)
        return ReferenceResult(energy, forces, True, 0.0, None, info)


def _def2_ecp(basis: str, numbers: np.ndarray) -> dict[str, str]:
    """def2 bases replace the core of atoms beyond Kr by their ECP; lighter atoms have none."""
    # Imported here: PySCF is slow to import and only PBE0 needs it.
    from pyscf.data.elements import ELEMENTS

    if not basis.lower().startswith("def2"):
        return {}
    return {ELEMENTS[int(z)]: basis for z in set(numbers.tolist()) if z > 36}


def _to_numpy(value: object) -> np.ndarray:
    """Host copy of a NumPy or CuPy result."""
    return value.get() if hasattr(value, "get") and not isinstance(value, np.ndarray) else np.asarray(value)


def _on_gpu(mf: object) -> bool:
    return type(mf).__module__.startswith("gpu4pyscf")
