"""Throughput of GemNet energy+force evaluations (the cost that bounds MD length), T vs Q.

Structures are random "molecule-like" clusters: a jittered cubic lattice with the atom density of
organic molecules (~0.09 atoms/Å^3, so the neighbour count within the 5 Å cutoff is realistic) and
a QM7-X-like element mix. Only the cost matters here, not the chemistry.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import torch
from torch_geometric.data import Batch, Data

from gemrepro.model.gemnet import GemNet, GemNetQ, GemNetT, resolve_device
from gemrepro.model.graph import build_graph, build_quadruplets
from gemrepro.model.presets import preset_config

LATTICE_SPACING = 2.2  # Å; 1 / 2.2^3 ≈ 0.094 atoms per Å^3
ELEMENT_MIX = (1, 1, 1, 1, 6, 6, 6, 7, 8)  # roughly H:C:N:O of QM7-X molecules


def molecule_like_cluster(num_atoms: int, generator: torch.Generator) -> Data:
    """A compact cluster of ``num_atoms`` atoms at molecular density (no two closer than ~1 Å)."""
    if num_atoms < 1:
        raise ValueError(f"num_atoms must be >= 1, got {num_atoms}")
    side = math.ceil(num_atoms ** (1.0 / 3.0))
    grid = torch.stack(torch.meshgrid(*[torch.arange(side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    order = torch.argsort((grid.double() - (side - 1) / 2).norm(dim=-1), stable=True)[:num_atoms]
    jitter = 0.25 * (torch.rand(num_atoms, 3, generator=generator, dtype=torch.float64) - 0.5)
    positions = (grid[order].double() + jitter) * LATTICE_SPACING
    elements = torch.tensor(ELEMENT_MIX)[torch.randint(len(ELEMENT_MIX), (num_atoms,), generator=generator)]
    return Data(z=elements, pos=positions)


def _time_evaluations(model: GemNet, batch: Batch, repeats: int) -> float:
    """Median wall time (s) of one energy+force evaluation, after one warm-up call."""
    batch = batch.to(model.device)
    synchronize = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)
    model(batch)
    synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(batch)
        synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def benchmark_model(
    model: GemNet,
    *,
    batch_size: int = 32,
    atoms_per_molecule: int = 17,
    sizes: Sequence[int] = (8, 16, 32, 64, 128, 256),
    repeats: int = 3,
    seed: int = 0,
) -> list[dict[str, float | int | str]]:
    """Energy+force throughput: one row for a QM7-X-like batch, then one per growing size.

    Rows hold ``case``, ``num_atoms``, ``num_structures``, ``seconds`` (per evaluation),
    ``evaluations_per_second`` (structures), ``atoms_per_second`` and ``microseconds_per_atom``.
    """
    if batch_size < 1 or atoms_per_molecule < 1 or repeats < 1:
        raise ValueError("batch_size, atoms_per_molecule and repeats must all be >= 1")
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    cases = [("batch", [molecule_like_cluster(atoms_per_molecule, generator) for _ in range(batch_size)])]
    cases += [("size", [molecule_like_cluster(n, generator)]) for n in sizes]
    rows: list[dict[str, float | int | str]] = []
    try:
        for case, structures in cases:
            batch = Batch.from_data_list(structures)
            seconds = _time_evaluations(model, batch, repeats)
            num_atoms = int(batch.num_nodes)
            rows.append(
                {
                    "case": case,
                    "num_atoms": num_atoms,
                    "num_structures": len(structures),
                    "seconds": seconds,
                    "evaluations_per_second": len(structures) / seconds,
                    "atoms_per_second": num_atoms / seconds,
                    "microseconds_per_atom": 1e6 * seconds / num_atoms,
                }
            )
    finally:
        model.train(was_training)
    return rows


def compare_variants(
    batch_size: int = 32,
    *,
    atoms_per_molecule: int = 17,
    preset: str = "tiny",
    repeats: int = 3,
    seed: int = 0,
    device: str | torch.device = "auto",
    dtype: torch.dtype = torch.float32,
) -> dict[str, float | int | str]:
    """Cost of GemNet-Q relative to GemNet-T: both presets ``preset``, timed on the same batch.

    Returns the batch's size (``num_atoms``, ``num_edges``, ``num_triplets``,
    ``num_quadruplets``), the parameter counts, ``seconds_T``/``seconds_Q`` per energy+force
    evaluation, ``evaluations_per_second_T``/``_Q`` (structures per second) and
    ``cost_ratio_q_to_t`` = seconds_Q / seconds_T (how many times slower GemNet-Q is).
    """
    if batch_size < 1 or atoms_per_molecule < 1 or repeats < 1:
        raise ValueError("batch_size, atoms_per_molecule and repeats must all be >= 1")
    target = resolve_device(device)
    generator = torch.Generator().manual_seed(seed)
    batch = Batch.from_data_list([molecule_like_cluster(atoms_per_molecule, generator) for _ in range(batch_size)])
    result: dict[str, float | int | str] = {
        "preset": preset,
        "device": str(target),
        "batch_size": batch_size,
        "atoms_per_molecule": atoms_per_molecule,
        "num_atoms": int(batch.num_nodes),
    }
    for cls in (GemNetT, GemNetQ):
        torch.manual_seed(seed)
        model = cls.from_preset(preset).to(device=target, dtype=dtype).eval()
        seconds = _time_evaluations(model, batch, repeats)
        result[f"parameters_{cls.variant}"] = sum(p.numel() for p in model.parameters())
        result[f"seconds_{cls.variant}"] = seconds
        result[f"evaluations_per_second_{cls.variant}"] = batch_size / seconds
    config = preset_config(preset, variant="Q")
    edges = build_graph(batch.pos, batch.batch, config.cutoff)
    quads = build_quadruplets(edges, batch.pos, config.int_cutoff)
    result.update(
        num_edges=edges.num_edges,
        num_triplets=edges.num_triplets,
        num_quadruplets=quads.num_quadruplets,
        cost_ratio_q_to_t=float(result["seconds_Q"]) / float(result["seconds_T"]),
    )
    return result
