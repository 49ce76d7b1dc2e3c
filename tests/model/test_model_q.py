"""GemNet-Q: quadruplets, dihedral basis, mirror images, both cutoffs (symmetries shared with T: test_model_symmetries.py).

A randomly initialised tiny GemNet-Q (embedding cutoff 5 Å, interaction cutoff 6 Å) with fitted
scale factors, in float64. Geometries are jittered away from planarity: the reference's dihedral
basis has a kink at dihedral 0 and 180 degrees (see ``GemNetQ``), where finite differences of
the energy would not match the force.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from model_geometries import CHFCLBR, ETHANOL, METHANE, WATER, random_rotation
from model_geometries import jittered_molecule as molecule
from scipy.special import sph_harm_y
from torch_geometric.data import Batch, Data

from gemrepro.benchmarks.model import compare_variants
from gemrepro.cli import main as cli_main
from gemrepro.model import (
    GemNetConfig,
    GemNetQ,
    GemNetT,
    build_graph,
    build_model,
    build_quadruplets,
    fit_scale_factors,
    load_model,
    save_model,
)
from gemrepro.model.basis import real_spherical_harmonics
from gemrepro.model.graph import edge_vectors, quadruplet_geometry

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model() -> GemNetQ:
    torch.manual_seed(11)
    net = GemNetQ.from_preset("tiny").double()
    fit_scale_factors(net, Batch.from_data_list([molecule(m) for m in (WATER, METHANE, ETHANOL, CHFCLBR)]))
    return net.eval()


def test_tiny_preset_and_cutoffs():
    config = GemNetQ.from_preset("tiny").config
    assert config.variant == "Q" and config.cutoff == 5.0 and config.int_cutoff == 6.0
    paper = GemNetQ.from_preset("paper").config
    assert (paper.cutoff, paper.int_cutoff, paper.emb_size_quad, paper.emb_size_sbf) == (5.0, 10.0, 32, 32)


def test_quadruplets_match_brute_force():
    data = molecule(ETHANOL)
    cutoff, int_cutoff = 2.0, 3.0
    graph = build_graph(data.pos, None, cutoff)
    quads = build_quadruplets(graph, data.pos, int_cutoff)
    distances = torch.cdist(data.pos, data.pos)
    close = lambda i, j, c: i != j and distances[i, j] < c  # noqa: E731
    expected = {
        (c, a, b, d)
        for c, a, b, d in itertools.product(range(9), repeat=4)
        if len({c, a, b, d}) == 4 and close(c, a, cutoff) and close(d, b, cutoff) and close(a, b, int_cutoff)
    }
    src, dst = graph.edge_src, graph.edge_dst
    ca, db = quads.ca_edge[quads.quad_ca], quads.db_edge[quads.quad_db]
    found = list(zip(src[ca].tolist(), dst[ca].tolist(), dst[db].tolist(), src[db].tolist()))
    assert set(found) == expected and len(found) == len(expected) > 50
    # Each quadruplet's interaction edge is b -> a; messages are grouped by the edge c -> a.
    assert torch.equal(quads.int_dst[quads.ca_int[quads.quad_ca]], dst[ca])
    assert torch.equal(quads.int_src[quads.db_int[quads.quad_db]], dst[db])
    assert torch.equal(quads.quad_edge, ca) and bool((quads.quad_edge[1:] >= quads.quad_edge[:-1]).all())
    slots: dict[int, list[int]] = {}
    for edge, slot in zip(quads.quad_edge.tolist(), quads.quad_slot.tolist()):
        slots.setdefault(edge, []).append(slot)
    assert all(sorted(s) == list(range(len(s))) for s in slots.values())
    assert quads.k_max == max(len(s) for s in slots.values())


def test_quadruplet_geometry_matches_textbook_formulas():
    data = molecule(ETHANOL)
    graph = build_graph(data.pos, None, 5.0)
    quads = build_quadruplets(graph, data.pos, 6.0)
    vectors, _ = edge_vectors(data.pos, graph)
    d_ab, cos_abd, angle_cab, dihedral = quadruplet_geometry(data.pos, vectors, quads)
    r = data.pos.numpy()
    ca, db = quads.ca_edge[quads.quad_ca], quads.db_edge[quads.quad_db]
    c, a = graph.edge_src[ca].numpy(), graph.edge_dst[ca].numpy()
    d, b = graph.edge_src[db].numpy(), graph.edge_dst[db].numpy()
    u, v = r[c] - r[a], r[b] - r[a]
    polar = np.arccos(np.sum(u * v, 1) / np.linalg.norm(u, axis=1) / np.linalg.norm(v, axis=1))
    # Signed IUPAC dihedral c-a-b-d from the normals of the two planes; ours is its magnitude.
    b1, b2, b3 = r[a] - r[c], r[b] - r[a], r[d] - r[b]
    n1, n2 = np.cross(b1, b2), np.cross(b2, b3)
    m1 = np.cross(n1, b2 / np.linalg.norm(b2, axis=1)[:, None])
    signed = np.arctan2(np.sum(m1 * n2, 1), np.sum(n1 * n2, 1))
    np.testing.assert_allclose(angle_cab[quads.quad_ca].numpy(), polar, atol=1e-10)
    np.testing.assert_allclose(dihedral.numpy(), np.abs(signed), atol=1e-10)
    assert signed.min() < -0.5 and signed.max() > 0.5  # both handednesses occur
    w = r[quads.int_dst[quads.db_int]] - r[quads.int_src[quads.db_int]]
    x = r[graph.edge_src[quads.db_edge]] - r[quads.int_src[quads.db_int]]
    np.testing.assert_allclose(
        cos_abd.numpy(), np.sum(w * x, 1) / np.linalg.norm(w, axis=1) / np.linalg.norm(x, axis=1), atol=1e-12
    )
    np.testing.assert_allclose(d_ab.numpy(), np.linalg.norm(r[quads.int_src] - r[quads.int_dst], axis=1), atol=1e-12)


def test_real_spherical_harmonics_match_scipy():
    generator = torch.Generator().manual_seed(5)
    polar = torch.pi * torch.rand(200, generator=generator, dtype=torch.float64)
    azimuth = torch.pi * torch.rand(200, generator=generator, dtype=torch.float64)
    ours = real_spherical_harmonics(7, polar, azimuth).numpy()
    assert ours.shape == (200, 49)
    column = 0
    for l in range(7):
        for m in [0, *range(1, l + 1), *range(-l, 0)]:
            complex_y = sph_harm_y(l, abs(m), polar.numpy(), azimuth.numpy())
            expected = complex_y.real if m == 0 else np.sqrt(2) * (complex_y.real if m > 0 else complex_y.imag)
            np.testing.assert_allclose(ours[:, column], expected, atol=1e-12, err_msg=f"l={l} m={m}")
            column += 1


def test_mirror_image_of_chiral_molecule(model):
    """Enantiomers get the same energy and mirrored forces (the dihedral is unsigned)."""
    data = molecule(CHFCLBR, jitter=0.1)
    reflection = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))
    improper = random_rotation(torch.Generator().manual_seed(2)) @ reflection  # det = -1
    mirrored = data.pos @ improper.T

    def handedness(pos: torch.Tensor) -> float:  # signed volume of the F, Cl, Br substituents
        f, cl, br = pos[2] - pos[0], pos[3] - pos[0], pos[4] - pos[0]
        return float(torch.dot(f, torch.linalg.cross(cl, br)))

    assert handedness(data.pos) * handedness(mirrored) < 0 and abs(handedness(data.pos)) > 1.0  # chiral
    graph = build_graph(data.pos, None, model.config.cutoff)
    assert build_quadruplets(graph, data.pos, model.config.int_cutoff).num_quadruplets > 0
    original, image = model(data), model(Data(z=data.z, pos=mirrored))
    torch.testing.assert_close(image["energy"], original["energy"], rtol=0, atol=1e-10)
    torch.testing.assert_close(image["forces"], original["forces"] @ improper.T, rtol=0, atol=1e-10)
    # A proper rotation of the original changes the forces differently: the check above can fail.
    assert (
        image["forces"] - original["forces"] @ random_rotation(torch.Generator().manual_seed(2)).T
    ).abs().max() > 1e-3


def _scan_is_smooth(grid: np.ndarray, energies: np.ndarray, cutoff: float) -> bool:
    """No kink or jump at the cutoff: second differences there no larger than elsewhere."""
    curvature = np.abs(np.diff(energies, 2))
    near = np.abs(grid[1:-1] - cutoff) < 0.05
    return bool(curvature[near].max() <= curvature[~near].max())


def test_energy_smooth_at_embedding_cutoff(model):
    """An O atom leaves water along the axis away from the hydrogens, through 5 Å."""
    water = molecule(WATER, jitter=0.0)
    direction = -(water.pos[1] + water.pos[2])
    direction = direction / direction.norm()
    lone_o = Data(z=torch.tensor([8]), pos=torch.zeros(1, 3, dtype=torch.float64))
    isolated = (model(water)["energy"] + model(lone_o)["energy"]).item()

    def energy_and_force(distance: float) -> tuple[float, float]:
        out = model(Data(z=torch.tensor([8, 1, 1, 8]), pos=torch.cat([water.pos, (distance * direction)[None]])))
        return out["energy"].item(), out["forces"][3].norm().item()

    cutoff = model.config.cutoff
    inside, f_inside = energy_and_force(cutoff - 1e-3)
    outside, f_outside = energy_and_force(cutoff + 1e-3)
    assert outside == pytest.approx(isolated, abs=1e-10) and f_outside == 0.0
    assert abs(inside - outside) < 1e-8 and f_inside < 1e-5
    grid = np.arange(cutoff - 0.4, cutoff + 0.1, 0.02)
    energies = np.array([energy_and_force(d)[0] for d in grid])
    assert abs(energies[0] - outside) > 1e-4 and _scan_is_smooth(grid, energies, cutoff)


def test_energy_smooth_at_interaction_cutoff(model):
    """Two waters whose O-O distance crosses the 6 Å interaction cutoff, all atoms > 5 Å apart.

    No edge joins them, so only quadruplets H->O ... O<-H couple the two molecules: GemNet-T
    sees two isolated waters, GemNet-Q an interaction that fades out smoothly at int_cutoff.
    """
    left = torch.tensor([[0.0, 0.0, 0.0], [-0.586, 0.757, 0.05], [-0.586, -0.757, 0.0]], dtype=torch.float64)
    right = torch.tensor([[0.0, 0.0, 0.0], [0.586, 0.1, 0.757], [0.586, 0.0, -0.757]], dtype=torch.float64)
    numbers = torch.tensor([8, 1, 1, 8, 1, 1])
    isolated = (
        model(Data(z=numbers[:3], pos=left))["energy"].item() + model(Data(z=numbers[3:], pos=right))["energy"].item()
    )
    torch.manual_seed(0)
    triplets_only = GemNetT.from_preset("tiny").double().eval()
    isolated_t = sum(triplets_only(Data(z=numbers[:3], pos=p))["energy"].item() for p in (left, right))

    def dimer(separation: float) -> Data:
        return Data(z=numbers, pos=torch.cat([left, right + torch.tensor([separation, 0.0, 0.0], dtype=torch.float64)]))

    int_cutoff = model.config.int_cutoff
    grid = np.arange(int_cutoff - 0.4, int_cutoff + 0.1, 0.02)
    assert torch.cdist(left, right + torch.tensor([grid[0], 0.0, 0.0], dtype=torch.float64)).min() > model.config.cutoff
    energies = np.array([model(dimer(s))["energy"].item() for s in grid])
    assert abs(energies[0] - isolated) > 1e-6  # coupled through quadruplets only
    assert abs(triplets_only(dimer(grid[0]))["energy"].item() - isolated_t) < 1e-10
    inside, outside = model(dimer(int_cutoff - 1e-3)), model(dimer(int_cutoff + 1e-3))
    assert outside["energy"].item() == pytest.approx(isolated, abs=1e-10)
    assert abs(inside["energy"].item() - outside["energy"].item()) < 1e-8
    assert (inside["forces"] - outside["forces"]).abs().max() < 1e-5
    assert _scan_is_smooth(grid, energies, int_cutoff)


def test_training_graph_reaches_quadruplet_weights():
    torch.manual_seed(0)
    net = GemNetQ.from_preset("tiny").train()
    data = molecule(ETHANOL)
    out = net(Data(z=data.z, pos=data.pos.float()))
    assert out["energy"].dtype == torch.float32
    out["forces"].pow(2).sum().backward()
    quadruplet = net.interaction_blocks[0].quadruplet
    assert quadruplet.bilinear.weight.grad.abs().sum() > 0 and net.mlp_sbf4.weight.grad.abs().sum() > 0


def test_build_model_and_checkpoint_round_trip(model, tmp_path):
    assert type(build_model("q", "tiny")) is GemNetQ and type(build_model("T", "tiny")) is GemNetT
    assert type(build_model(model.config)) is GemNetQ
    assert build_model("Q", None, num_blocks=1).config.num_blocks == 1
    with pytest.raises(ValueError, match="variant must be one of"):
        build_model("X", "tiny")
    with pytest.raises(ValueError, match="needs 'T'"):
        GemNetT(GemNetConfig(variant="Q"))
    path = save_model(model, tmp_path / "q.pt")
    loaded = load_model(path, device="cpu")
    assert type(loaded.model) is GemNetQ and loaded.config == model.config and loaded.model.dtype == torch.float64
    data = molecule(CHFCLBR)
    torch.testing.assert_close(loaded(data)["forces"], model(data)["forces"], rtol=0, atol=0)


def test_cli_model_info_variant_q(capsys):
    assert cli_main(["model", "info", "--preset", "tiny", "--variant", "Q"]) == 0
    out = capsys.readouterr().out
    assert "GemNet-Q" in out and f"{sum(p.numel() for p in GemNetQ.from_preset('tiny').parameters()):,}" in out
    assert cli_main(["model", "info", "--variant", "q", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["variant"] == "Q" and info["parameters"] == 2_158_499 and info["config"]["int_cutoff"] == 10.0


def test_compare_variants():
    result = compare_variants(batch_size=2, atoms_per_molecule=6, repeats=1, device="cpu")
    assert result["num_atoms"] == 12 and result["batch_size"] == 2
    assert result["parameters_Q"] > result["parameters_T"] and result["num_quadruplets"] > result["num_triplets"] > 0
    assert all(np.isfinite(result[f"seconds_{v}"]) and result[f"seconds_{v}"] > 0 for v in "TQ")
