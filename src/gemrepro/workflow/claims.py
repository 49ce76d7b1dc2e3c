"""Every claim of the papers (``../shared/PAPER.md``) next to our value, computed from the artifacts.

A :class:`Claim` names the paper's statement, the paper's value (from :mod:`gemrepro.paper`) and
a function that evaluates it on a scale's results. The function reads the chapters' artifacts
through the same cached workflow functions the chapters call, so nothing is typed in and nothing
is recomputed when the chapters have run. The verdict is one of

``reproduced``
    our numbers show what the paper states (a qualitative claim, or a number within its stated range);
``not reproduced``
    they do not;
``not comparable``
    the paper's number depends on what this scale changes (PBE0+MBD labels, millions of
    configurations, 1 ns): we print ours beside it and draw no conclusion.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gemrepro import paper

REPRODUCED, NOT_REPRODUCED, NOT_COMPARABLE = "reproduced", "not reproduced", "not comparable"
CLAIMS_VERSION = 1  # bump when a claim's computation changes (part of the saved results' key)


@dataclass(frozen=True)
class Outcome:
    """Our value of a claim at one scale and its verdict."""

    value: str
    verdict: str

    def __post_init__(self) -> None:
        if self.verdict not in (REPRODUCED, NOT_REPRODUCED, NOT_COMPARABLE):
            raise ValueError(f"verdict: expected reproduced, not reproduced or not comparable, got {self.verdict!r}")


def judged(holds: bool, value: str) -> Outcome:
    return Outcome(value, REPRODUCED if holds else NOT_REPRODUCED)


@dataclass(frozen=True)
class Claim:
    """One statement of a paper, where the book reproduces it, and how to evaluate it."""

    id: str
    source: str  # "Stocker et al. Fig. 1"
    statement: str
    paper_value: str
    chapter: str  # chapter file name under book/chapters/
    evaluate: Callable[["Results"], Outcome]


class Results:
    """Lazy access to a scale's chapter results (each loaded once, from the artifact cache)."""

    def __init__(self, scale: str, seed: int = 0, reference: str = "gfn2-xtb", root=None, device: str = "cpu"):
        self.scale, self.seed, self.reference, self.root, self.device = scale, seed, reference, root, device

    @functools.cached_property
    def curve(self) -> pd.DataFrame:
        from gemrepro.workflow.learning_curve import learning_curve

        return learning_curve(self.scale, self.seed, self.reference, root=self.root, progress=False, device=self.device)

    @functools.cached_property
    def sweep(self):
        from gemrepro.workflow.sweep import temperature_sweep

        return temperature_sweep(self.scale, self.seed, self.reference, root=self.root, device=self.device)

    @functools.cached_property
    def sweep_means(self) -> pd.DataFrame:
        from gemrepro.analysis import errors

        return errors.mean_over_molecules(errors.trajectory_errors(self.sweep.frames)).set_index(
            ["train_size", "temperature"])

    @functools.cached_property
    def converged(self) -> pd.Series:
        from gemrepro.analysis import errors

        return errors.converged_percent(self.sweep.frames).set_index(["train_size", "temperature"])["converged_percent"]

    @functools.cached_property
    def seeds_study(self):
        from gemrepro.workflow.holes import seeds_study

        return seeds_study(scale=self.scale, seed=self.seed, reference=self.reference, root=self.root,
                           device=self.device)

    @functools.cached_property
    def out_of_sample(self):
        from gemrepro.workflow.out_of_sample import out_of_sample

        return out_of_sample(scale=self.scale, seed=self.seed, reference=self.reference, root=self.root,
                             device=self.device)

    @functools.cached_property
    def pretraining(self):
        from gemrepro.workflow.pretraining import pretraining_study

        return pretraining_study(scale=self.scale, seed=self.seed, reference=self.reference, root=self.root,
                                 device=self.device)

    @property
    def sizes(self) -> list[int]:
        return sorted(int(n) for n in self.curve["train_size"])


# ----------------------------------------------------------------------------- Stocker et al.
def _fig1_largest(r: Results) -> Outcome:
    row = r.curve.set_index("train_size").loc[r.sizes[-1]]
    return Outcome(f"{row['forces_mae']:.3g} eV/Å ({r.sizes[-1]:,} configurations)", NOT_COMPARABLE)


def _fig1_shape(r: Results) -> Outcome:
    forces = r.curve.set_index("train_size").loc[r.sizes, "forces_mae"].to_numpy()
    steps = forces[:-1] / forces[1:]  # improvement per tenfold more data
    holds = bool(np.all(steps > 1.0) and steps[-1] < steps[0])
    return judged(holds, "improvement per 10x data: " + ", ".join(f"{s:.2f}x" for s in steps))


def _fig2b_sparse(r: Results) -> Outcome:
    cold = min(r.sweep.protocol.temperatures)
    value = r.sweep_means.loc[(r.sizes[0], cold), "energy_mae"]
    return judged(value > paper.TEMPERATURE_SWEEP["3.2k AE MAE at 300 K (lower bound)"],
                  f"{value:.3g} eV ({r.sizes[0]:,}, {cold:.0f} K)")


def _fig2b_exhaustive(r: Results) -> Outcome:
    hot = max(r.sweep.protocol.temperatures)
    value = r.sweep_means.loc[(r.sizes[-1], hot), "energy_mae"]
    return Outcome(f"{value:.3g} eV ({r.sizes[-1]:,}, {hot:.0f} K)", NOT_COMPARABLE)


def _fig2c_shape(r: Results) -> Outcome:
    cold, hot = min(r.sweep.protocol.temperatures), max(r.sweep.protocol.temperatures)
    rise = {n: r.sweep_means.loc[(n, hot), "forces_mae"] / r.sweep_means.loc[(n, cold), "forces_mae"]
            for n in (r.sizes[0], r.sizes[-1])}
    sparse_ae = r.sweep_means.loc[(r.sizes[0], hot), "energy_mae"]
    exhaustive_ae = r.sweep_means.loc[(r.sizes[-1], hot), "energy_mae"]
    holds = rise[r.sizes[-1]] < 2.0 and sparse_ae > 5 * exhaustive_ae
    return judged(holds, f"largest model's force MAE rises {rise[r.sizes[-1]]:.2f}x from {cold:.0f} to {hot:.0f} K; "
                         f"at {hot:.0f} K the sparsest model's AE MAE is {sparse_ae / exhaustive_ae:.0f}x the largest's")


def _fig2d_exhaustive(r: Results) -> Outcome:
    values = r.converged.loc[r.sizes[-2:]]
    return judged(bool((values == 100.0).all()), f"{values.min():.0f}–{values.max():.0f} % ({r.reference}, "
                                                 f"{r.sizes[-2]:,} and {r.sizes[-1]:,})")


def _fig2d_sparse(r: Results) -> Outcome:
    hot = max(r.sweep.protocol.temperatures)
    value = r.converged.loc[(r.sizes[0], hot)]
    verdict = NOT_COMPARABLE if r.reference != "pbe0" else (REPRODUCED if 25 <= value <= 75 else NOT_REPRODUCED)
    return Outcome(f"{value:.0f} % ({r.reference}, {r.sizes[0]:,}, {hot:.0f} K)", verdict)


def _exhaustive_pair(r: Results) -> Outcome:
    table = r.curve.set_index("train_size")
    ratio = table.loc[r.sizes[-2], "forces_mae"] / table.loc[r.sizes[-1], "forces_mae"]
    stable = r.sweep.trajectories.groupby("train_size")["failed"].mean()
    holds = ratio < 2.0 and stable.loc[r.sizes[-2]] <= 0.2 and stable.loc[r.sizes[-1]] <= 0.2
    return judged(bool(holds), f"test force MAE {ratio:.2f}x apart; failed trajectories "
                               f"{100 * stable.loc[r.sizes[-2]]:.0f} % and {100 * stable.loc[r.sizes[-1]]:.0f} %")


EXHAUSTIVE_TRAJECTORY = "exhaustive model's trajectory"

# The holes chapter's search, with its default parameters (see notebooks/holes.md).
HOLE_TEMPERATURE, CROSS_TEMPERATURE, MIN_STABLE_FRACTION, MIN_HOLE_FRACTION = 600.0, 1200.0, 0.5, 0.25


def _hole(r: Results):
    from gemrepro.workflow import holes

    study = r.seeds_study
    horizon = study.protocol.md_time_ps
    temperatures = study.design.temperatures or study.protocol.temperatures
    sparse = holes.sparse_model(study.trajectories, horizon, HOLE_TEMPERATURE, MIN_STABLE_FRACTION)
    searched, row = holes.find_hole(study.trajectories, sorted(n for n in study.md if n >= sparse),
                                    sorted(t for t in temperatures if t >= HOLE_TEMPERATURE), horizon,
                                    MIN_HOLE_FRACTION)
    return sparse, searched, row


def _fig2e_hole(r: Results) -> Outcome:
    sparse, searched, row = _hole(r)
    if row is None:
        return judged(False, f"no trajectory of {len(searched)} searched failed after "
                             f"{MIN_HOLE_FRACTION:.0%} of the run")
    return judged(True, f"{int(row['train_size']):,} model, {row['molecule']} at {row['temperature']:g} K: "
                        f"stable for {row['stable_fraction']:.0%} of the run, then failed")


def _cross_trajectory(r: Results) -> Outcome:
    from gemrepro.workflow import holes

    sparse, _, row = _hole(r)
    model = int(row["train_size"]) if row is not None else sparse
    molecule = row["molecule"] if row is not None else str(r.sweep.trajectories["molecule"].iloc[0])
    exhaustive = r.sizes[-1]
    table = holes.cross_trajectory(r.sweep, molecule, CROSS_TEMPERATURE, sizes=(model, exhaustive), device=r.device)
    by = table.set_index(["model", "trajectory_of"])["forces_mae"]
    own, other = by.loc[(model, model)], by.loc[(model, exhaustive)]
    return judged(bool(own > other), f"{own:.2g} vs {other:.2g} eV/Å ({model:,} model, {molecule})")


def _oos_table(r: Results) -> pd.DataFrame:
    from gemrepro.analysis.shift import molecule_errors

    result = r.out_of_sample
    return molecule_errors(result.frames, result.trajectories)


def _fig3_sign(r: Results) -> Outcome:
    table = _oos_table(r)
    positive = int((table["mean_shift"] > 0).sum())
    largest = table.sort_values("n_atoms").iloc[-1]
    return judged(positive == len(table), f"{positive} of {len(table)} molecules shifted up; "
                                          f"largest ({largest['molecule']}): {largest['mean_shift']:+.2g} eV")


def _fig3_accuracy(r: Results) -> Outcome:
    table = _oos_table(r)
    return judged(bool(table["r2"].min() > 0.99), f"R² {table['r2'].min():.2f}–{table['r2'].max():.2f}; force MAE "
                                                  f"{table['forces_mae'].min():.2g}–{table['forces_mae'].max():.2g} eV/Å")


def _fig3_stable(r: Results) -> Outcome:
    table = _oos_table(r)
    return judged(bool(table["stable"].all()), f"{int(table['stable'].sum())} of {len(table)} trajectories stable")


def _fig3_dispersion(r: Results) -> Outcome:
    from gemrepro.analysis.shift import dispersion_share

    shares = dispersion_share(r.out_of_sample.frames)
    largest = shares.sort_values("n_atoms").iloc[-1]
    share = largest["share_beyond_cutoff"]
    return judged(bool(share > 0.5), f"dispersion beyond the cutoff: {100 * share:.0f} % of the "
                                     f"{largest['molecule']} shift")


def _pretraining_mae(r: Results) -> Outcome:
    errors = r.pretraining.errors.set_index("model")["forces_mae"]
    scratch, tuned = errors.loc["scratch"], errors.loc["pretrained"]
    ratio = max(scratch, tuned) / min(scratch, tuned)
    return judged(bool(ratio < 1.25), f"{1000 * scratch:.2g} (scratch) vs {1000 * tuned:.2g} (pretrained) meV/Å")


def _pretraining_stability(r: Results) -> Outcome:
    from gemrepro.analysis.survival import bootstrap_ratio

    study = r.pretraining
    t = study.trajectories
    ratio = bootstrap_ratio(t.loc[t["model"] == "pretrained", "stable_time_ps"].to_numpy(),
                            t.loc[t["model"] == "scratch", "stable_time_ps"].to_numpy(), seed=r.seed)
    value = f"{ratio.ratio:.2f}x ({ratio.low:.2f}–{ratio.high:.2f}), {study.horizon_ps:g} ps runs"
    if not t.loc[t["model"].isin(["scratch", "pretrained"]), "failed"].any():
        return Outcome(value + "; no trajectory failed", NOT_COMPARABLE)
    return judged(ratio.low > 1.0, value)


CLAIMS: list[Claim] = [
    Claim("fig1-largest", "Stocker et al. Fig. 1", "force MAE of the largest model",
          f"{paper.LEARNING_CURVE['3.2M']['forces_mae']} eV/Å (3.2M)", "learning_curves", _fig1_largest),
    Claim("fig1-shape", "Stocker et al. Fig. 1",
          "force MAE falls with every tenfold increase of the training set, by less at the top",
          "linear on log-log 3.2k→320k, levels off 320k→3.2M", "learning_curves", _fig1_shape),
    Claim("fig2b-sparse", "Stocker et al. Fig. 2b", "the sparsest model's AE MAE on MD frames at the lowest T",
          "> 10 eV (3.2k, 300 K)", "temperature_sweep", _fig2b_sparse),
    Claim("fig2b-exhaustive", "Stocker et al. Fig. 2b", "the largest model's AE MAE on MD frames at the highest T",
          f"{paper.TEMPERATURE_SWEEP['3.2M AE MAE at 1200 K']} eV (3.2M, 1200 K)", "temperature_sweep",
          _fig2b_exhaustive),
    Claim("fig2bc-shape", "Stocker et al. Fig. 2b, c",
          "exhaustive models' errors rise only slightly with T, sparse ones' dramatically",
          paper.TEMPERATURE_SWEEP["shape"], "temperature_sweep", _fig2c_shape),
    Claim("fig2d-exhaustive", "Stocker et al. Fig. 2d",
          "every reference calculation on the two largest models' frames converges", "100 % (320k, 3.2M)",
          "convergence", _fig2d_exhaustive),
    Claim("fig2d-sparse", "Stocker et al. Fig. 2d", "share of converged reference calculations, sparsest model, hottest T",
          f"about {paper.DFT_CONVERGENCE['3.2k at 1200 K']['converged_percent']:.0f} % (3.2k, 1200 K, PBE0+MBD)",
          "convergence", _fig2d_sparse),
    Claim("exhaustive-pair", "Stocker et al., conclusion",
          "the two largest models are about equally accurate and robust", "320k ≈ 3.2M", "learning_curves",
          _exhaustive_pair),
    Claim("fig2e-hole", "Stocker et al. Fig. 2e",
          "a sparse model's trajectory stays accurate for a long while, then falls into a hole",
          f"3.2k, {paper.HOLES['temperature']:.0f} K: fine for ~{paper.HOLES['time before the hole (ps)']:.0f} of "
          f"{paper.HOLES['trajectory length (ps)']:.0f} ps, then AE error > "
          f"{paper.HOLES['AE error after the hole (eV, lower bound)']:.0f} eV", "holes", _fig2e_hole),
    Claim("cross-trajectory", "Stocker et al., cross-trajectory",
          "a sparse model's force MAE is larger on its own trajectory than on the exhaustive model's",
          f"{paper.CROSS_TRAJECTORY['own trajectory']} vs {paper.CROSS_TRAJECTORY[EXHAUSTIVE_TRAJECTORY]} eV/Å",
          "holes", _cross_trajectory),
    Claim("fig3-sign", "Stocker et al. Fig. 3", "AE errors on larger, unseen molecules are systematically positive",
          f"tripeptide mean shift +{paper.OUT_OF_SAMPLE['tripeptide mean AE shift (eV)']} eV", "out_of_sample",
          _fig3_sign),
    Claim("fig3-accuracy", "Stocker et al. Fig. 3", "the model stays accurate on them: R² and force MAE",
          f"R² {paper.OUT_OF_SAMPLE['R2']}, force MAE {paper.OUT_OF_SAMPLE['force MAE range (eV/Å)'][0]}–"
          f"{paper.OUT_OF_SAMPLE['force MAE range (eV/Å)'][1]} eV/Å", "out_of_sample", _fig3_accuracy),
    Claim("fig3-stable", "Stocker et al. Fig. 3", "no instabilities on the larger molecules", "4 of 4 stable",
          "out_of_sample", _fig3_stable),
    Claim("fig3-dispersion", "Stocker et al., discussion of Fig. 3",
          "the shift comes from long-range interactions beyond the cutoff (dispersion)", "the paper's explanation",
          "out_of_sample", _fig3_dispersion),
    Claim("pretraining-mae", "Maheshwari et al.", "scratch and pretrained models reach the same force MAE",
          f"both ≈ {1000 * paper.PRETRAINING['force MAE, both models (eV/Å)']:.0f} meV/Å", "pretraining",
          _pretraining_mae),
    Claim("pretraining-stability", "Maheshwari et al.", "the pretrained model stays stable longer",
          f"up to {paper.PRETRAINING['stable-time ratio, pretrained / scratch (up to)']:.0f}x", "pretraining",
          _pretraining_stability),
]


def evaluate(results: Results, claims: list[Claim] | None = None) -> pd.DataFrame:
    """One row per claim: source, statement, paper value, ours, verdict, chapter."""
    rows = []
    for claim in claims or CLAIMS:
        outcome = claim.evaluate(results)
        rows.append({"id": claim.id, "source": claim.source, "claim": claim.statement, "paper": claim.paper_value,
                     "ours": outcome.value, "verdict": outcome.verdict, "chapter": claim.chapter})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- snapshots per scale
def snapshot_path(scale: str, root=None):
    """Where the latest evaluation of a scale is kept: ``<data>/results/<scale>.csv``."""
    from pathlib import Path

    from gemrepro.workflow.paths import artifacts_dir
    from gemrepro.workflow.scales import get_scale

    get_scale(scale)
    return (Path(root) if root else artifacts_dir()).parent / "results" / f"{scale}.csv"


def save_snapshot(table: pd.DataFrame, scale: str, root=None) -> None:
    """Keep ``table`` as the latest evaluation of ``scale`` (atomic: written aside, then renamed)."""
    import os

    path = snapshot_path(scale, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + f".{os.getpid()}.partial")
    table.assign(claims_version=CLAIMS_VERSION).to_csv(partial, index=False)
    os.replace(partial, path)


def load_snapshots(root=None) -> dict[str, pd.DataFrame]:
    """The latest evaluation of every scale that has one (current claims version only)."""
    from gemrepro.workflow.scales import SCALES

    found = {}
    for scale in SCALES:
        path = snapshot_path(scale, root)
        if path.is_file():
            table = pd.read_csv(path, keep_default_na=False)
            if (table.get("claims_version") == CLAIMS_VERSION).all():
                found[scale] = table.drop(columns="claims_version")
    return found


MARKS = {REPRODUCED: "✓ reproduced", NOT_REPRODUCED: "✗ not reproduced", NOT_COMPARABLE: "○ not comparable"}


def at_a_glance(snapshots: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per claim: source, claim, paper, then ours and the verdict at every scale that has run."""
    if not snapshots:
        raise ValueError("snapshots: expected the evaluation of at least one scale")
    first = next(iter(snapshots.values()))
    table = first[["id", "source", "claim", "paper", "chapter"]].copy()
    for scale, snapshot in snapshots.items():
        by_id = snapshot.set_index("id")
        table[f"ours ({scale})"] = [f"{by_id.loc[i, 'ours']} — {MARKS[by_id.loc[i, 'verdict']]}" if i in by_id.index
                                   else "not run" for i in table["id"]]
    return table
