"""The training-step cost lives with the benchmarks; the learning-curve stage does not import them."""

import ast
from pathlib import Path

import torch

from gemrepro.benchmarks.training import training_step_cost
from gemrepro.cache import code

torch.set_num_threads(1)


def test_one_training_step_is_measured_per_preset():
    cost = training_step_cost(("tiny",), batch_size=2)
    assert list(cost.columns) == ["preset", "variant", "parameters", "batch_size", "seconds_per_step"]
    assert cost.loc[0, "parameters"] == 52_655 and cost.loc[0, "batch_size"] == 2
    assert cost.loc[0, "seconds_per_step"] > 0


def test_the_learning_curve_stage_imports_no_benchmark():
    path = Path(__file__).resolve().parents[2] / "src" / "gemrepro" / "studies" / "learning_curve.py"
    names = code.imported_names(ast.parse(path.read_text()), "gemrepro.studies.learning_curve", False)
    assert names and not [name for name in names if name.startswith("gemrepro.benchmarks")]
