"""Throughput of GemNet energy+force evaluations (the cost that bounds MD length), T vs Q.

Structures are random "molecule-like" clusters: a jittered cubic lattice with the atom density of
organic molecules (~0.09 atoms/Å^3, so the neighbour count within the 5 Å cutoff is realistic) and
a QM7-X-like element mix. Only the cost matters here, not the chemistry.

What is compared is timed in turns (:mod:`gemrepro.benchmarks.timing`): every round times every
case (or both variants) once, and the median round is reported with the lowest and highest.
Every timed call follows an untimed call on the same batch, so it reuses that batch's graph, as an
MD step does; one-off costs (allocation, lazy initialisation) are outside every clock.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
from torch_geometric.data import Batch, Data

from gemrepro.benchmarks.timing import check_repeats, round_ratios, seconds_of, spread, take_turns
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


def _evaluation_seconds(model: GemNet, batch: Batch, rewarm: bool = True) -> float:
    """Wall time (s) of one energy+force evaluation, after an untimed one on the same batch when ``rewarm``."""
    synchronize = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)
    if rewarm:
        model(batch)
        synchronize()
    return seconds_of(lambda: (model(batch), synchronize()))


def benchmark_model(
    model: GemNet,
    *,
    batch_size: int = 32,
    atoms_per_molecule: int = 17,
    sizes: Sequence[int] = (8, 16, 32, 64, 128, 256),
    repeats: int = 3,
    seed: int = 0,
) -> list[dict[str, float | int | str | list[float]]]:
    """Energy+force throughput: one row for a QM7-X-like batch, then one per growing size.

    Rows hold ``case``, ``num_atoms``, ``num_structures``, ``seconds`` (per evaluation, the median
    round; ``seconds_min``, ``seconds_max`` and ``seconds_rounds`` beside it),
    ``evaluations_per_second`` (structures), ``atoms_per_second`` and ``microseconds_per_atom``.
    The cases take turns: every round evaluates each case once.
    """
    if batch_size < 1 or atoms_per_molecule < 1:
        raise ValueError("batch_size and atoms_per_molecule must both be >= 1")
    repeats = check_repeats(repeats)
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    cases = [("batch", [molecule_like_cluster(atoms_per_molecule, generator) for _ in range(batch_size)])]
    cases += [("size", [molecule_like_cluster(n, generator)]) for n in sizes]
    batches = [Batch.from_data_list(structures).to(model.device) for _, structures in cases]
    rows: list[dict[str, float | int | str | list[float]]] = []
    try:
        for batch in batches:  # first calls: allocation and lazy initialisation, off the clock
            _evaluation_seconds(model, batch, rewarm=False)
        seconds = take_turns(
            {str(k): functools.partial(_evaluation_seconds, model, batch) for k, batch in enumerate(batches)},
            repeats,
        )
    finally:
        model.train(was_training)
    for k, ((case, structures), batch) in enumerate(zip(cases, batches, strict=True)):
        rounds = spread(seconds[str(k)])
        median, num_atoms = rounds["median"], int(batch.num_nodes)
        rows.append(
            {
                "case": case,
                "num_atoms": num_atoms,
                "num_structures": len(structures),
                "seconds": median,
                "seconds_min": rounds["min"],
                "seconds_max": rounds["max"],
                "seconds_rounds": seconds[str(k)],
                "evaluations_per_second": len(structures) / median,
                "atoms_per_second": num_atoms / median,
                "microseconds_per_atom": 1e6 * median / num_atoms,
            }
        )
    return rows


def per_atom_ratio(rows: Sequence[dict]) -> dict[str, float | int | list[float]]:
    """Cost per atom of the largest single molecule over that of the median size, round by round.

    Near 1 (or below, while fixed overheads are amortised) when the cost grows linearly with size,
    as the cutoff promises; above 1 when something grows faster. Returns ``ratio`` (median round),
    ``ratio_min``, ``ratio_max``, ``ratios`` and the two sizes, ``largest_atoms`` and ``median_atoms``.
    """
    sizes = sorted((r for r in rows if r.get("case") == "size"), key=lambda r: r["num_atoms"])
    if len(sizes) < 2:
        raise ValueError(f"rows: expected at least 2 single-molecule sizes to compare, got {len(sizes)}")
    largest, middle = sizes[-1], sizes[len(sizes) // 2]
    return {
        **round_ratios(
            [t / largest["num_atoms"] for t in largest["seconds_rounds"]],
            [t / middle["num_atoms"] for t in middle["seconds_rounds"]],
        ),
        "largest_atoms": int(largest["num_atoms"]),
        "median_atoms": int(middle["num_atoms"]),
    }


def compare_variants(
    batch_size: int = 32,
    *,
    atoms_per_molecule: int = 17,
    preset: str = "tiny",
    repeats: int = 3,
    seed: int = 0,
    device: str | torch.device = "auto",
    dtype: torch.dtype = torch.float32,
) -> dict[str, float | int | str | list[float]]:
    """Cost of GemNet-Q relative to GemNet-T: both presets ``preset``, timed on the same batch.

    Returns the batch's size (``num_atoms``, ``num_edges``, ``num_triplets``,
    ``num_quadruplets``), the parameter counts, ``seconds_T``/``seconds_Q`` per energy+force
    evaluation (median rounds), ``evaluations_per_second_T``/``_Q`` (structures per second) and
    ``ratio`` = ``cost_ratio_q_to_t``: how many times slower GemNet-Q is, the median over rounds
    of seconds_Q / seconds_T, with ``ratio_min``, ``ratio_max`` and ``ratios``. The two models
    take turns on the same batch: T, Q, T, Q, ...
    """
    if batch_size < 1 or atoms_per_molecule < 1:
        raise ValueError("batch_size and atoms_per_molecule must both be >= 1")
    repeats = check_repeats(repeats)
    target = resolve_device(device)
    generator = torch.Generator().manual_seed(seed)
    batch = Batch.from_data_list([molecule_like_cluster(atoms_per_molecule, generator) for _ in range(batch_size)])
    result: dict[str, float | int | str | list[float]] = {
        "preset": preset,
        "device": str(target),
        "batch_size": batch_size,
        "atoms_per_molecule": atoms_per_molecule,
        "num_atoms": int(batch.num_nodes),
        "repeats": repeats,
        "torch_threads": torch.get_num_threads(),
    }
    models: dict[str, GemNet] = {}
    for cls in (GemNetT, GemNetQ):
        torch.manual_seed(seed)
        models[cls.variant] = cls.from_preset(preset).to(device=target, dtype=dtype).eval()
    on_device = batch.to(target)
    for model in models.values():  # first calls off the clock; each model keeps its own graph of the batch
        _evaluation_seconds(model, on_device, rewarm=False)
    seconds = take_turns(
        {v: functools.partial(_evaluation_seconds, model, on_device, rewarm=False) for v, model in models.items()},
        repeats,
    )
    for variant, model in models.items():
        median = spread(seconds[variant])["median"]
        result[f"parameters_{variant}"] = sum(p.numel() for p in model.parameters())
        result[f"seconds_{variant}"] = median
        result[f"evaluations_per_second_{variant}"] = batch_size / median
    config = preset_config(preset, variant="Q")
    edges = build_graph(batch.pos, batch.batch, config.cutoff)
    quads = build_quadruplets(edges, batch.pos, config.int_cutoff)
    ratios = round_ratios(seconds["Q"], seconds["T"])
    result.update(
        num_edges=edges.num_edges,
        num_triplets=edges.num_triplets,
        num_quadruplets=quads.num_quadruplets,
        cost_ratio_q_to_t=ratios["ratio"],
        **ratios,
    )
    return result
