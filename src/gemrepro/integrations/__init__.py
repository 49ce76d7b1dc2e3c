"""Adapters from gemrepro's models to the outside world (ASE today), kept apart from the science."""

from gemrepro.integrations.ase import GemNetCalculator

__all__ = ["GemNetCalculator"]
