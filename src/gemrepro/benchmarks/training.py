"""What one training step costs: parameters and seconds of a step, per preset.

:mod:`gemrepro.studies.estimate` multiplies it by a recipe's step budget, and the learning-curve
chapter shows it for the larger presets. It times a single model, so nothing takes turns here.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import Batch

from gemrepro.benchmarks.model import molecule_like_cluster
from gemrepro.model import build_model, fit_scale_factors, preset_config
from gemrepro.train import EnergyForceLoss


def training_step_cost(
    presets: tuple[str, ...] = ("small", "paper"),
    variant: str = "T",
    batch_size: int = 32,
    *,
    graphs: list | None = None,
    repeats: int = 1,
    device: str = "cpu",
) -> pd.DataFrame:
    """Parameters and measured seconds of one training step (energy+force loss, backward, AMSGrad).

    ``graphs`` are the molecules of the batch (default: random QM7-X-like 17-atom clusters).
    One untimed step first (allocation, lazy initialisation), then the median of ``repeats``.
    """
    if graphs is None:
        generator = torch.Generator().manual_seed(0)
        graphs = []
        for _ in range(batch_size):
            g = molecule_like_cluster(17, generator)
            g.forces = torch.zeros_like(g.pos)
            g.energy = torch.zeros(1, dtype=g.pos.dtype)
            graphs.append(g)
    rows = []
    for name in presets:
        model = build_model(preset_config(name, variant=variant)).to(device)
        batch = Batch.from_data_list(list(graphs)[:batch_size]).to(device)
        batch.pos, batch.forces, batch.energy = (t.float() for t in (batch.pos, batch.forces, batch.energy))
        fit_scale_factors(model, batch)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, amsgrad=True)
        loss_fn = EnergyForceLoss()
        times = []
        for i in range(repeats + 1):
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss, _ = loss_fn(model(batch), batch)
            loss.backward()
            optimizer.step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if i:
                times.append(time.perf_counter() - start)
        rows.append(
            {
                "preset": name,
                "variant": variant,
                "parameters": sum(p.numel() for p in model.parameters()),
                "batch_size": int(batch.num_graphs),
                "seconds_per_step": float(np.median(times)),
            }
        )
    return pd.DataFrame(rows)
