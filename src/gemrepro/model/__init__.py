"""GemNet-T and GemNet-Q potentials in plain PyTorch: models, presets, checkpoints (the ASE calculator is in
:mod:`gemrepro.integrations`)."""

from gemrepro.model.checkpoint import MODEL_FORMAT, load_model, read_model_metadata, save_model
from gemrepro.model.energy_shift import EnergyShift, as_energy_shift
from gemrepro.model.gemnet import (
    GemNet,
    GemNetQ,
    GemNetT,
    build_model,
    fit_scale_factors,
    resolve_device,
    scale_factors,
)
from gemrepro.model.graph import MolecularGraph, QuadrupletGraph, build_graph, build_quadruplets
from gemrepro.model.presets import (
    PRESETS,
    PRESETS_Q,
    REFERENCE_PARAMETER_COUNTS,
    VARIANTS,
    GemNetConfig,
    preset_config,
)

__all__ = [
    "MODEL_FORMAT",
    "EnergyShift",
    "GemNet",
    "GemNetConfig",
    "GemNetQ",
    "GemNetT",
    "MolecularGraph",
    "PRESETS",
    "PRESETS_Q",
    "QuadrupletGraph",
    "REFERENCE_PARAMETER_COUNTS",
    "VARIANTS",
    "as_energy_shift",
    "build_graph",
    "build_model",
    "build_quadruplets",
    "fit_scale_factors",
    "load_model",
    "preset_config",
    "read_model_metadata",
    "resolve_device",
    "save_model",
    "scale_factors",
]
