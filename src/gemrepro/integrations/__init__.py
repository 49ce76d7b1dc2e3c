"""Adapters that plug gemrepro's models into MD engines, kept apart from the science: the batched
engine of :mod:`gemrepro.md` (:class:`GemNetPotential`), ASE (:class:`GemNetCalculator`) and, as an
optional extra, TorchSim (:mod:`gemrepro.integrations.torchsim`)."""

from gemrepro.integrations.ase import GemNetCalculator
from gemrepro.integrations.potential import GemNetPotential, potential_from_checkpoint

__all__ = ["GemNetCalculator", "GemNetPotential", "potential_from_checkpoint"]
