"""What every GemNet variant must satisfy, tested once for T and Q: symmetries, calculus, locality, batching.

Each variant is a random tiny model with fitted scale factors, in float64 (these tests are about
symmetry and differentiability, not accuracy). Geometries are jittered away from planarity: the
dihedral basis of GemNet-Q has a kink at 0 and 180 degrees, where finite differences of the energy
would not match the force. What only one variant has (GemNet-T's cutoff scan, GemNet-Q's
quadruplets and mirror images) stays in ``test_model.py`` and ``test_model_q.py``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from ase import Atoms
from model_geometries import CHFCLBR, ETHANOL, METHANE, WATER, random_rotation
from model_geometries import jittered_molecule as molecule
from torch_geometric.data import Batch, Data

from gemrepro.integrations import GemNetCalculator
from gemrepro.model import EnergyShift, GemNetQ, GemNetT, fit_scale_factors

torch.set_num_threads(1)

VARIANTS = {"T": (GemNetT, 7), "Q": (GemNetQ, 11)}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def model(request) -> EnergyShift:
    cls, seed = VARIANTS[request.param]
    torch.manual_seed(seed)
    net = cls.from_preset("tiny").double()
    fit_scale_factors(net, Batch.from_data_list([molecule(m) for m in (WATER, METHANE, ETHANOL, CHFCLBR)]))
    # References for every element of the test molecules (CHFClBr too): the model refuses unseen ones.
    return EnergyShift(net, {1: -13.6, 6: -1029.0, 8: -2041.0, 9: -2700.0, 17: -12500.0, 35: -7000.0}).eval()


def test_rotation_translation_and_permutation(model):
    generator = torch.Generator().manual_seed(1)
    data = molecule(ETHANOL)
    reference = model(data)
    rotation = random_rotation(generator)
    shift = 10.0 * torch.randn(3, generator=generator, dtype=torch.float64)
    moved = model(Data(z=data.z, pos=data.pos @ rotation.T + shift))
    assert abs(reference["energy"].item()) > 1.0 and reference["forces"].abs().max() > 0.1
    torch.testing.assert_close(moved["energy"], reference["energy"], rtol=0, atol=1e-10)
    torch.testing.assert_close(moved["forces"], reference["forces"] @ rotation.T, rtol=0, atol=1e-10)
    order = torch.randperm(9, generator=generator)
    permuted = model(Data(z=data.z[order], pos=data.pos[order]))
    torch.testing.assert_close(permuted["energy"], reference["energy"], rtol=0, atol=1e-10)
    torch.testing.assert_close(permuted["forces"], reference["forces"][order], rtol=0, atol=1e-10)


def test_forces_are_negative_energy_gradient_and_sum_to_zero(model):
    data = molecule(CHFCLBR, jitter=0.1)
    forces = model(data)["forces"]
    step = 1e-5
    numerical = torch.zeros_like(forces)
    for atom, axis in itertools.product(range(len(data.z)), range(3)):
        plus, minus = data.pos.clone(), data.pos.clone()
        plus[atom, axis] += step
        minus[atom, axis] -= step
        e_plus, e_minus = model(Data(z=data.z, pos=plus))["energy"], model(Data(z=data.z, pos=minus))["energy"]
        numerical[atom, axis] = -(e_plus - e_minus).item() / (2 * step)
    assert forces.abs().max() > 0.1  # a flat model would pass the comparison trivially
    torch.testing.assert_close(forces, numerical, rtol=0, atol=1e-6)
    # Translation invariance implies Newton's third law for conservative forces.
    torch.testing.assert_close(forces.sum(0), torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-10)


def test_size_extensivity(model):
    single = molecule(ETHANOL)
    extent = (single.pos.max(0).values - single.pos.min(0).values).norm().item()
    reach = max(model.config.cutoff, model.config.int_cutoff)
    shift = torch.tensor([extent + reach + 1.0, 0.0, 0.0], dtype=torch.float64)
    pair = Data(z=torch.cat([single.z, single.z]), pos=torch.cat([single.pos, single.pos + shift]))
    one, two = model(single), model(pair)
    torch.testing.assert_close(two["energy"], 2 * one["energy"], rtol=1e-13, atol=0)
    torch.testing.assert_close(two["forces"], torch.cat([one["forces"], one["forces"]]), rtol=0, atol=1e-12)


def test_batch_equals_individual_molecules(model):
    molecules = [molecule(WATER), molecule(METHANE), molecule(ETHANOL), molecule(CHFCLBR)]
    batched = model(Batch.from_data_list(molecules))
    singles = [model(m) for m in molecules]
    torch.testing.assert_close(batched["energy"], torch.cat([s["energy"] for s in singles]), rtol=0, atol=1e-10)
    torch.testing.assert_close(batched["forces"], torch.cat([s["forces"] for s in singles]), rtol=0, atol=1e-10)
    assert batched["energy"].shape == (4,) and batched["forces"].shape == (22, 3)


def test_ase_calculator_matches_model(model):
    data = molecule(CHFCLBR)
    atoms = Atoms(numbers=data.z.numpy(), positions=data.pos.numpy())
    atoms.calc = GemNetCalculator(model, device="cpu")
    expected = model(data)
    assert atoms.get_potential_energy() == pytest.approx(expected["energy"].item(), abs=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), expected["forces"].numpy(), atol=1e-10)
