"""GemNet-T: its cutoff, graph, basis functions and plumbing (symmetries shared with Q: test_model_symmetries.py).

The model is randomly initialised (with fitted scale factors) and run in float64; these tests are
about symmetry and differentiability, not accuracy.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from model_geometries import ETHANOL, METHANE, WATER
from scipy.special import spherical_jn
from torch_geometric.data import Batch, Data

from gemrepro.cli import main as cli_main
from gemrepro.integrations import GemNetCalculator
from gemrepro.model import (
    GemNetT,
    build_graph,
    build_model,
    fit_scale_factors,
    load_model,
    save_model,
)
from gemrepro.model.basis import PolynomialEnvelope, spherical_bessel
from gemrepro.model.graph import GraphCache
from gemrepro.model.layers import ScaleFactor

torch.set_num_threads(1)


def molecule(spec, dtype=torch.float64) -> Data:
    numbers, positions = spec
    return Data(z=torch.tensor(numbers), pos=torch.tensor(positions, dtype=dtype))


@pytest.fixture(scope="module")
def model() -> GemNetT:
    torch.manual_seed(7)
    net = GemNetT.from_preset("tiny").double()
    fit_scale_factors(net, Batch.from_data_list([molecule(WATER), molecule(METHANE), molecule(ETHANOL)]))
    return net.eval()


def test_scale_factors_are_fitted_and_not_trivial(model):
    factors = [m.scale.item() for m in model.modules() if isinstance(m, ScaleFactor)]
    assert len(factors) == 3 * 2 + 3  # 3 per interaction block, 1 per output block
    assert all(np.isfinite(factors)) and any(abs(f - 1.0) > 0.05 for f in factors)


def test_scale_factor_matches_reference_variance():
    torch.manual_seed(0)
    factor = ScaleFactor().double()
    reference, x = torch.randn(500, 8, dtype=torch.float64), 3.0 * torch.randn(500, 8, dtype=torch.float64)
    factor.fitting = True
    scaled = factor(reference, x)
    assert scaled.var(0, unbiased=False).mean().item() == pytest.approx(
        reference.var(0, unbiased=False).mean().item(), rel=1e-12
    )
    factor.fitting = False
    assert torch.equal(factor(reference, x), scaled)


def test_energy_smooth_when_atom_crosses_cutoff(model):
    """An O atom moves away from water's O along the axis away from the hydrogens."""
    water = molecule(WATER)
    direction = -(water.pos[1] + water.pos[2])
    direction = direction / direction.norm()
    isolated = (
        model(water)["energy"] + model(Data(z=torch.tensor([8]), pos=torch.zeros(1, 3, dtype=torch.float64)))["energy"]
    )

    def energy_and_force(distance: float) -> tuple[float, float]:
        pos = torch.cat([water.pos, (distance * direction)[None]])
        out = model(Data(z=torch.tensor([8, 1, 1, 8]), pos=pos))
        return out["energy"].item(), out["forces"][3].norm().item()

    cutoff = model.config.cutoff
    inside, f_inside = energy_and_force(cutoff - 1e-3)
    outside, f_outside = energy_and_force(cutoff + 1e-3)
    assert outside == pytest.approx(isolated.item(), abs=1e-10) and f_outside == 0.0
    assert abs(inside - outside) < 1e-8 and f_inside < 1e-5  # envelope: u, u', u'' vanish at c
    # No kink or jump anywhere on a scan through the cutoff: second differences stay small
    # compared with those well inside the cutoff.
    grid = np.arange(cutoff - 0.5, cutoff + 0.1, 0.01)
    energies = np.array([energy_and_force(d)[0] for d in grid])
    curvature = np.abs(np.diff(energies, 2))
    near = np.abs(grid[1:-1] - cutoff) < 0.05
    assert np.abs(energies[0] - outside) > 1e-4  # the atom interacts inside the cutoff
    assert curvature[near].max() <= curvature[~near].max()


def test_graph_triplets_match_brute_force():
    data = molecule(ETHANOL)
    graph = build_graph(data.pos, None, cutoff=2.0)
    distances = torch.cdist(data.pos, data.pos)
    expected_edges = {(s, t) for s in range(9) for t in range(9) if s != t and distances[s, t] < 2.0}
    edges = list(zip(graph.edge_src.tolist(), graph.edge_dst.tolist()))
    assert set(edges) == expected_edges and len(edges) == len(expected_edges)
    assert all(edges[swap] == (t, s) for (s, t), swap in zip(edges, graph.edge_swap.tolist()))
    expected_triplets = {
        ((k, j), (j2, i)) for (k, j) in expected_edges for (j2, i) in expected_edges if j == j2 and k != i
    }
    triplets = {(edges[a], edges[b]) for a, b in zip(graph.triplet_in.tolist(), graph.triplet_out.tolist())}
    assert triplets == expected_triplets and graph.num_triplets == len(expected_triplets)
    slots = {}
    for out, slot in zip(graph.triplet_out.tolist(), graph.triplet_slot.tolist()):
        slots.setdefault(out, []).append(slot)
    assert all(sorted(s) == list(range(len(s))) for s in slots.values())
    assert graph.k_max == max(len(s) for s in slots.values())


def test_neighbourhood_blocks_hold_every_edge_once_and_every_triplet_off_the_diagonal():
    """Each block row is one atom's incoming edges; its off-diagonal (out, in) pairs are its triplets."""
    batch = Batch.from_data_list([molecule(WATER), molecule(METHANE), molecule(ETHANOL)])
    graph = build_graph(batch.pos, batch.batch, cutoff=2.0)
    blocks = graph.neighbourhoods
    assert len(blocks.tables) >= 1
    stacked = torch.cat([table.reshape(-1) for table in blocks.tables])
    real = stacked[stacked < graph.num_edges]
    assert sorted(real.tolist()) == list(range(graph.num_edges))  # every edge exactly once
    assert torch.equal(stacked[blocks.rows], torch.arange(graph.num_edges))  # rows point at each edge's slot
    triplets = set()
    for table in blocks.tables:
        for row in table.tolist():
            edges = [e for e in row if e < graph.num_edges]
            assert len({graph.edge_dst[e].item() for e in edges}) == 1  # one atom per row
            assert row == sorted(row)  # filled slots first, in edge order
            for slot_out, slot_in in itertools.permutations(edges, 2):
                triplets.add((slot_in, graph.edge_swap[slot_out].item()))  # (k -> j, j -> i)
    assert triplets == set(zip(graph.triplet_in.tolist(), graph.triplet_out.tolist()))


def test_degree_groups_trade_padding_against_blocks():
    from gemrepro.model.graph import degree_groups

    degrees, counts = [12, 11, 6, 5], [10, 10, 30, 30]
    assert degree_groups(degrees, counts, overhead=0) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert degree_groups(degrees, counts, overhead=1e9) == [(0, 4)]
    assert degree_groups(degrees, counts, overhead=1000) == [(0, 2), (2, 4)]  # similar degrees share a block
    assert degree_groups([], [], overhead=1000) == []


def test_graph_cache_reuses_topology_until_a_pair_crosses_the_cutoff():
    data = Batch.from_data_list([molecule(ETHANOL), molecule(WATER)])
    cache = GraphCache(cutoff=2.0)
    first = cache(data.pos, data.batch)
    fields = ("edge_src", "edge_dst", "edge_swap", "triplet_in", "triplet_out", "triplet_slot", "batch")

    def assert_same_as_fresh(graph, positions):
        fresh = build_graph(positions, data.batch, cutoff=2.0)
        for name in fields:
            assert torch.equal(getattr(graph, name), getattr(fresh, name)), name
        assert (graph.k_max, graph.num_atoms, graph.num_graphs) == (fresh.k_max, fresh.num_atoms, fresh.num_graphs)

    assert_same_as_fresh(first, data.pos)
    jiggled = data.pos + 1e-3
    assert cache(jiggled, data.batch.clone()) is first  # same molecules, same pairs: reused
    moved = data.pos.clone()
    moved[2] = moved[1] + torch.tensor([1.9, 0.0, 0.0], dtype=torch.float64)  # O moves: some of its pairs cross 2 Å
    rebuilt = cache(moved, data.batch)
    assert rebuilt is not first and rebuilt.num_edges != first.num_edges
    assert_same_as_fresh(rebuilt, moved)
    other = Batch.from_data_list([molecule(WATER), molecule(ETHANOL)])
    swapped = cache(other.pos, other.batch)  # other molecules: candidate pairs rebuilt
    fresh = build_graph(other.pos, other.batch, cutoff=2.0)
    assert torch.equal(swapped.edge_src, fresh.edge_src) and torch.equal(swapped.triplet_in, fresh.triplet_in)


def test_model_reuses_graph_between_md_like_calls(model):
    data = molecule(ETHANOL)
    first = model(data)
    graph = model.graph_cache(data.pos, None)
    shifted = Data(z=data.z, pos=data.pos + 1e-4)
    second = model(shifted)
    assert model.graph_cache(shifted.pos, None) is graph
    model.graph_cache.clear()
    uncached = model(shifted)
    torch.testing.assert_close(second["forces"], uncached["forces"], rtol=0, atol=0)
    assert not torch.equal(first["forces"], second["forces"])


def test_bessel_derivatives_match_scipy_and_the_values_are_those_of_the_plain_path():
    from gemrepro.model.basis import spherical_bessel_orders, spherical_bessel_orders_and_derivatives

    x = torch.linspace(1e-3, 30.0, 3001, dtype=torch.float64).expand(7, -1).contiguous()
    values, slopes = spherical_bessel_orders_and_derivatives(x)
    assert torch.equal(values, spherical_bessel_orders(x))
    for order in range(7):  # both branches: the series below x = l + 1, the recurrence above
        np.testing.assert_allclose(
            slopes[order].numpy(), spherical_jn(order, x[order].numpy(), derivative=True), atol=1e-12
        )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_radial_basis_with_analytic_derivative_agrees_with_autograd(dtype):
    from gemrepro.model.basis import SphericalBasis

    basis = SphericalBasis(7, 6, 5.0).to(dtype).eval()
    distances = (torch.linspace(0.05, 5.4, 997, dtype=dtype)).requires_grad_(True)  # up to beyond the cutoff
    weights = torch.randn(7, 997, 6, dtype=dtype, generator=torch.Generator().manual_seed(0))
    fast = basis.radial(distances)
    plain = basis._radial_values(distances)
    assert type(fast.grad_fn).__name__ == "_RadialWithDerivativeBackward" and torch.equal(fast, plain)
    (fast_grad,) = torch.autograd.grad((fast * weights).sum(), distances)
    (plain_grad,) = torch.autograd.grad((plain * weights).sum(), distances)
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(fast_grad, plain_grad, rtol=tolerance, atol=tolerance * plain_grad.abs().max().item())
    # A second derivative goes through plain autograd, so it is exact as well.
    (first,) = torch.autograd.grad((basis.radial(distances) * weights).sum(), distances, create_graph=True)
    (second,) = torch.autograd.grad(first.pow(2).sum(), distances)
    (first_plain,) = torch.autograd.grad(
        (basis._radial_values(distances) * weights).sum(), distances, create_graph=True
    )
    (second_plain,) = torch.autograd.grad(first_plain.pow(2).sum(), distances)
    torch.testing.assert_close(second, second_plain, rtol=0, atol=0)
    basis.train()  # training differentiates plain autograd (force losses need its double backward)
    assert type(basis.radial(distances).grad_fn).__name__ != "_RadialWithDerivativeBackward"
    if dtype == torch.float64:
        basis.eval()
        probe = torch.linspace(0.3, 4.9, 9, dtype=dtype).requires_grad_(True)
        mix = torch.randn(7, 1, 6, dtype=dtype, generator=torch.Generator().manual_seed(1))

        def projected(d: torch.Tensor) -> torch.Tensor:  # one output per distance keeps the Jacobians small
            return (basis.radial(d) * mix).sum(dim=(0, 2))

        assert torch.autograd.gradcheck(projected, (probe,))
        assert torch.autograd.gradgradcheck(projected, (probe,))


def test_basis_functions():
    x = torch.linspace(1e-3, 30.0, 3001, dtype=torch.float64)
    for order in range(7):
        np.testing.assert_allclose(spherical_bessel(order, x).numpy(), spherical_jn(order, x.numpy()), atol=1e-13)
    envelope = PolynomialEnvelope(5)
    t = torch.tensor([1.0 - 1e-7, 1.0, 1.5], dtype=torch.float64, requires_grad=True)
    values = envelope(t)
    (slope,) = torch.autograd.grad(values.sum(), t, create_graph=True)
    (curvature,) = torch.autograd.grad(slope.sum(), t)
    assert values[1:].abs().max() == 0 and values[0].abs() < 1e-12
    assert slope.abs().max() < 1e-11 and curvature.abs().max() < 1e-4
    assert envelope(torch.tensor([0.0])).item() == 1.0


def test_save_load_round_trip(model, tmp_path):
    path = save_model(model, tmp_path / "models" / "gemnet.pt")
    loaded = load_model(path, device="cpu")
    assert loaded.config == model.config and loaded.model.dtype == torch.float64 and not loaded.training
    assert loaded.reference_energies() == {}  # a bare network is saved without references
    data = molecule(ETHANOL)
    torch.testing.assert_close(loaded(data)["energy"], model(data)["energy"], rtol=0, atol=0)
    torch.testing.assert_close(loaded(data)["forces"], model(data)["forces"], rtol=0, atol=0)
    assert sorted(p.name for p in path.parent.iterdir()) == ["gemnet.pt"]  # no temp files left
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a gemrepro model file"):
        load_model(tmp_path / "junk.pt")


def test_float32_default_and_training_graph():
    torch.manual_seed(0)
    net = GemNetT.from_preset("tiny")
    out = net(molecule(WATER, dtype=torch.float32))
    assert out["energy"].dtype == torch.float32 and out["forces"].dtype == torch.float32
    # In training mode the forces keep their graph, so a force loss can be back-propagated.
    net.train()
    loss = net(molecule(WATER, dtype=torch.float32))["forces"].pow(2).sum()
    loss.backward()
    assert net.atom_embedding.embeddings.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("variant", "expected", "scale_factors"), [("T", 1_892_311, 17), ("Q", 2_158_499, 29)])
def test_paper_preset_parameter_count(variant, expected, scale_factors):
    net = build_model(variant, "paper")
    count = sum(p.numel() for p in net.parameters())
    print(f"GemNet-{variant} paper preset: {count:,} parameters (reference implementation: {expected:,})")
    assert count == expected  # the reference GemNet-T/-Q default config, measured
    # The quadruplet part is what separates Q from T: the same shared layers, 266,188 more parameters,
    # 29 vs 17 scale factors.
    assert sum(isinstance(m, ScaleFactor) for m in net.modules()) == scale_factors


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (Data(z=torch.tensor([8, 1]), pos=torch.zeros(3, 3)), "data.z must be integer"),
        (Data(z=torch.tensor([8, 0, 1]), pos=torch.zeros(3, 3)), "atomic numbers 1..93"),
        (Data(z=torch.tensor([8, 1, 1]), pos=torch.zeros(3, 2)), r"data.pos must have shape"),
        (Data(z=torch.tensor([8, 1, 1]), pos=torch.rand(3, 3), batch=torch.tensor([1, 0, 0])), "sorted"),
    ],
)
def test_bad_input_is_a_clear_error(model, data, message):
    with pytest.raises(ValueError, match=message):
        model(data)


def test_bad_preset_and_config():
    with pytest.raises(ValueError, match="unknown GemNet preset"):
        GemNetT.from_preset("huge")
    with pytest.raises(ValueError, match="unknown GemNet config keys"):
        GemNetT.from_preset("tiny", emb_size=3)
    with pytest.raises(ValueError, match="cutoff must be a positive"):
        GemNetT.from_preset("tiny", cutoff=-1.0)


def test_cli_model_info(capsys):
    assert cli_main(["model", "info", "--preset", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "52,655" in out and "1,892,311" in out
    assert cli_main(["model", "info", "--variant", "X"]) == 2


def test_benchmark_rows():
    from gemrepro.benchmarks.model import benchmark_model, molecule_like_cluster

    cluster = molecule_like_cluster(27, torch.Generator().manual_seed(0))
    distances = torch.cdist(cluster.pos, cluster.pos) + 10 * torch.eye(27, dtype=torch.float64)
    assert distances.min() > 1.5 and cluster.z.shape == (27,)
    torch.manual_seed(0)
    rows = benchmark_model(GemNetT.from_preset("tiny"), batch_size=2, atoms_per_molecule=5, sizes=(4, 8), repeats=1)
    assert [(r["case"], r["num_atoms"], r["num_structures"]) for r in rows] == [
        ("batch", 10, 2),
        ("size", 4, 1),
        ("size", 8, 1),
    ]
    assert all(np.isfinite(r["seconds"]) and r["seconds"] > 0 for r in rows)


def test_ase_calculator_refuses_what_is_not_a_model():
    with pytest.raises(ValueError, match="expected a GemNetT, GemNetQ, a trained"):
        GemNetCalculator(42)
