"""Learning-curve stage: cached model artifacts, resume after a kill, one row per size; the chapter."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from gemrepro.cache.artifacts import get_or_create
from gemrepro.config.designs import Recipe
from gemrepro.config.scales import SCALES, Scale
from gemrepro.data.formats import write_qm7x
from gemrepro.studies import learning_curve as lc

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[2]
MOLECULES = {  # atomic numbers and an equilibrium geometry (Å)
    1: ([8, 1, 1], [[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0]]),
    2: (
        [6, 1, 1, 1, 1],
        [[0, 0, 0], [0.63, 0.63, 0.63], [-0.63, -0.63, 0.63], [-0.63, 0.63, -0.63], [0.63, -0.63, -0.63]],
    ),
    3: ([7, 1, 1, 1], [[0, 0, 0], [1.01, 0, 0], [-0.34, 0.95, 0], [-0.34, -0.47, 0.83]]),
}


def harmonic_labels(numbers: np.ndarray, positions: np.ndarray, reference: np.ndarray) -> tuple[float, np.ndarray]:
    """Energy (eV) and forces (eV/Å) of springs between all atom pairs, rest lengths from ``reference``."""
    diff = positions[:, None] - positions[None]
    r = np.linalg.norm(diff, axis=-1)
    r0 = np.linalg.norm(reference[:, None] - reference[None], axis=-1)
    k = 2.0 + 0.5 * (numbers[:, None] > 1) * (numbers[None] > 1)
    np.fill_diagonal(r, 1.0)
    stretch = np.where(np.eye(len(numbers), dtype=bool), 0.0, r - r0)
    energy = 0.25 * float((k * stretch**2).sum())
    forces = -(k * stretch / r)[..., None] * diff
    return energy, forces.sum(axis=1)


def synthetic_dataset(folder: Path) -> dict:
    """24 displaced structures of three molecules in the QM7-X layout (what ``build_dataset`` writes)."""
    rng = np.random.default_rng(0)
    records = []
    for mol_id, (numbers, geometry) in MOLECULES.items():
        numbers, geometry = np.array(numbers), np.array(geometry, dtype=float)
        for d in range(8):
            positions = geometry + (0.0 if d == 0 else 0.08) * rng.normal(size=geometry.shape)
            energy, forces = harmonic_labels(numbers, positions, geometry)
            records.append(
                {
                    "mol_id": mol_id,
                    "isomer": 1,
                    "conformer": 1,
                    "label": "opt" if d == 0 else f"d{d}",
                    "numbers": numbers,
                    "positions": positions,
                    "energy": energy - 10.0 * len(numbers),
                    "atomization_energy": energy - 3.0 * len(numbers),
                    "forces": forces,
                }
            )
    write_qm7x(folder / "qm7x.hdf5", records, reference_method="gfn2-xtb")
    return {"n_configurations": len(records)}


@pytest.fixture
def micro(monkeypatch, tmp_path):
    """A scale of 4 / 8 training structures, 6 test structures, a one-block GemNet and 8-10 steps."""
    monkeypatch.setitem(
        SCALES,
        "micro",
        Scale(
            name="micro",
            n_molecules=3,
            n_conformers=1,
            n_displaced=7,
            train_sizes=(4, 8),
            test_size=6,
            n_md_molecules=1,
            model_preset="tiny",
            recipe=Recipe(
                max_steps=(8, 10),
                batch_size=4,
                lr=5e-3,
                warmup_steps=2,
                decay_steps=10,
                decay_rate=0.1,
                patience=5,
                eval_every=2,
                checkpoint_every=2,
                model_overrides=(("num_blocks", 1), ("emb_size_atom", 8), ("emb_size_edge", 8), ("cutoff", 3.0)),
            ),
        ),
    )

    def dataset(scale, reference, seed, root):
        return get_or_create("dataset", {"synthetic": "micro", "seed": seed}, synthetic_dataset, root)

    monkeypatch.setattr(lc, "_dataset_artifact", dataset)
    return tmp_path


def test_model_is_cached_and_has_finite_test_errors(micro, monkeypatch):
    first = lc.train_scale_model(SCALES["micro"], 8, root=micro, progress=False)
    test = first.manifest["metrics"]["test"]
    assert test["n"] == 6 and first.manifest["steps"] == 10
    assert math.isfinite(test["energy_mae"]) and 0 < test["forces_mae"] < 10
    assert first.file("model.pt").is_file() and first.file("history.csv").is_file()
    assert not (micro / f"{lc.STAGE}-work" / first.key).exists()  # the checkpoint folder is cleaned up

    def no_training(*args, **kwargs):
        raise AssertionError("a cached model was retrained")

    monkeypatch.setattr(lc, "train_model", no_training)
    second = lc.train_scale_model(SCALES["micro"], 8, root=micro, progress=False)
    assert second.path == first.path and second.manifest == first.manifest


def test_killed_training_resumes_to_the_same_model(micro, monkeypatch, tmp_path_factory):
    reference = lc.train_scale_model(SCALES["micro"], 8, root=tmp_path_factory.mktemp("uninterrupted"), progress=False)
    real_train_model = lc.train_model

    class Killed(Exception):
        pass

    def kill_at_step_5(*args, **kwargs):
        def callback(step, info):
            if step == 5:
                raise Killed

        return real_train_model(*args, **kwargs, callback=callback)

    monkeypatch.setattr(lc, "train_model", kill_at_step_5)
    with pytest.raises(Killed):
        lc.train_scale_model(SCALES["micro"], 8, root=micro, progress=False)
    assert not list((micro / lc.STAGE).glob("*/manifest.json"))  # no half artifact
    assert list((micro / f"{lc.STAGE}-work").glob("*/checkpoint.pt"))
    monkeypatch.setattr(lc, "train_model", real_train_model)

    resumed = lc.train_scale_model(SCALES["micro"], 8, root=micro, progress=False)
    assert resumed.manifest["resumed_from_step"] == 4  # the last checkpoint before the kill
    assert resumed.key == reference.key
    assert resumed.manifest["metrics"] == reference.manifest["metrics"]  # bit for bit on CPU


def test_learning_curve_has_one_row_per_size(micro):
    table = lc.learning_curve(SCALES["micro"], root=micro, progress=False)
    assert table["train_size"].tolist() == [4, 8]
    assert table["steps"].tolist() == [8, 10]
    assert np.isfinite(table[["energy_mae", "forces_mae"]].to_numpy()).all()
    assert (table["test_size"] == 6).all() and table["key"].nunique() == 2
    assert [a.key for a in lc.model_artifacts(table, root=micro)] == table["key"].tolist()


def test_bad_inputs_give_one_line_errors(micro):
    with pytest.raises(ValueError, match=r"train_size 5: expected one of the micro sizes \[4, 8\]"):
        lc.train_scale_model(SCALES["micro"], 5, root=micro)
    with pytest.raises(ValueError, match="scale 'micro' has no training recipe"):
        lc.train_config(dataclasses.replace(SCALES["micro"], recipe=None), 4)


def test_every_recipe_has_one_step_cap_per_size_and_stops_on_a_plateau():
    for scale in SCALES.values():
        recipe = scale.recipe
        assert len(recipe.max_steps) == len(scale.train_sizes)
        assert list(recipe.max_steps) == sorted(recipe.max_steps)
        assert all(steps % recipe.eval_every == 0 for steps in recipe.max_steps)
    config = lc.train_config(SCALES["tiny"], 100)
    assert config.batch_size == 8 and config.max_wall_time_s is None
    assert config.min_relative_delta > 0 and config.patience >= 3  # a creeping loss cannot keep a run alive


def test_curve_rows_of_several_seeds_and_their_spread_and_convergence(micro):
    table = lc.learning_curve(SCALES["micro"], root=micro, progress=False, members=2)
    assert sorted(zip(table["member"], table["train_size"])) == [(0, 4), (0, 8), (1, 4), (1, 8)]
    assert len(set(table["key"])) == 4  # four models, not the same one twice
    spread = lc.seed_spread(table)
    assert spread["n_seeds"].tolist() == [2, 2]
    assert (spread["forces_mae_min"] <= spread["forces_mae_mean"]).all()
    assert (spread["forces_mae_mean"] <= spread["forces_mae_max"]).all()
    status = lc.convergence_status(table)
    # micro budgets (8-10 steps, 4-5 validations) are below its patience of 5: every model is capped
    assert status.n_models == 4 and status.n_converged == 0 and not status.all_converged
    assert "NOT CONVERGED" in status.sentence and "8 configurations seed 1 (10 steps)" in status.sentence
    stopped = lc.convergence_status(table.assign(stop_reason="early_stopping"))
    assert stopped.all_converged and "none hit the step cap" in stopped.sentence
    with pytest.raises(ValueError, match="members"):
        lc.learning_curve(SCALES["micro"], root=micro, progress=False, members=0)


def test_chapter_source_has_parameters_and_checked_cells():
    import jupytext

    notebook = jupytext.read(ROOT / "notebooks" / "learning_curves.md")
    tagged = [c for c in notebook.cells if "nbval-check-output" in c.metadata.get("tags", [])]
    parameters = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1 and len(tagged) >= 4
    for name in ("scale", "seed", "reference", "data_dir", "device", "variants"):
        assert f"\n{name} = " in "\n" + parameters[0].source
    assert "book/chapters/learning_curves" in (ROOT / "_toc.yml").read_text()


def test_cli_trains_the_scale_model_then_loads_it(micro, capsys):
    from gemrepro.cli import main

    args = ["train", "--scale", "micro", "--train-size", "4", "--data-dir", str(micro), "--quiet"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "test energy MAE" in first and "8 steps" in first
    model = Path(first.strip().splitlines()[-1].removeprefix("model: "))
    assert model.is_file() and model.parent.parent == micro / "artifacts" / lc.STAGE
    assert main(args) == 0
    assert capsys.readouterr().out == first  # loaded from the cache, not retrained
    assert main(["train", "--scale", "micro"]) == 2
    assert "expected --train-size" in capsys.readouterr().err


def test_variant_resolves_to_the_scale_default_or_one_of_t_and_q():
    assert [lc.resolve_variant(SCALES[name]) for name in ("tiny", "small", "paper")] == ["T", "T", "Q"]
    assert lc.resolve_variant(SCALES["tiny"], "q") == "Q" and lc.resolve_variant(SCALES["paper"], " t ") == "T"
    assert SCALES["tiny"].learning_curve_variants == ("T",)
    assert SCALES["small"].learning_curve_variants == SCALES["paper"].learning_curve_variants == ("T", "Q")
    with pytest.raises(ValueError, match=r"^variant: expected 'T' or 'Q' .*got 'X'$"):
        lc.resolve_variant(SCALES["tiny"], "X")
    # the tiny models keep the keys they were cached under: None and "T" give one configuration
    assert lc.model_config(SCALES["tiny"], None) == lc.model_config(SCALES["tiny"], "T")
    assert lc.model_config(SCALES["paper"], None).variant == "Q"


def test_learning_curves_put_both_variants_side_by_side(micro):
    from gemrepro.model import GemNetQ, GemNetT, load_model

    table = lc.learning_curves(SCALES["micro"], variants=("T", "q"), root=micro, progress=False)
    assert table["variant"].tolist() == ["T", "T", "Q", "Q"]
    assert table["train_size"].tolist() == [4, 8, 4, 8]
    assert table["steps"].tolist() == [8, 10, 8, 10]
    assert np.isfinite(table[["energy_mae", "forces_mae"]].to_numpy()).all()
    assert table["key"].nunique() == 4  # the variant is part of every model's key
    models = lc.model_artifacts(table, root=micro)
    loaded = [load_model(m.file("model.pt"), device="cpu") for m in (models[0], models[2])]
    assert [type(m.model) for m in loaded] == [GemNetT, GemNetQ]
    assert lc.learning_curves(SCALES["micro"], root=micro, progress=False)["variant"].tolist() == ["T", "T"]
    with pytest.raises(ValueError, match="variant: expected 'T' or 'Q'"):
        lc.learning_curves(SCALES["micro"], variants=("T", "X"), root=micro)


def test_learning_curve_figure_draws_every_seed_and_a_band_and_molecules_are_drawn():
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from gemrepro import paper
    from gemrepro.catalog import md_molecules
    from gemrepro.plots import data as plots_data

    curve = pd.DataFrame(
        {
            "train_size": [100, 100, 100, 3200, 3200, 3200],
            "member": [0, 1, 2] * 2,
            "variant": "T",
            "energy_mae": [0.4, 0.3, 0.35, 0.1, 0.09, 0.11],
            "forces_mae": [0.3, 0.28, 0.31, 0.1, 0.097, 0.099],
        }
    )
    fig = plots_data.learning_curves(curve, paper.learning_curve_points())
    forces = fig.axes[1]
    dots = [line for line in forces.get_lines() if line.get_linestyle() == "None" and line.get_marker() == "."]
    assert len(dots) == 1 and len(dots[0].get_xdata()) == 6  # every seed
    assert len(forces.collections) == 1  # the seeds' range
    (paper_points,) = [line for line in forces.get_lines() if line.get_marker() == "s"]
    assert paper_points.get_linestyle() == "None"  # the paper's two results as points, no line between them
    assert any("mean of 3 seeds" in t.get_text() for t in forces.get_legend().get_texts())
    drawings = plots_data.molecule_drawings(md_molecules(5), columns=3)
    titled = [ax.get_title() for ax in drawings.axes if ax.get_images()]
    assert titled == [m.name for m in md_molecules(5)]
    with pytest.raises(ValueError, match="at least one molecule"):
        plots_data.molecule_drawings([])
