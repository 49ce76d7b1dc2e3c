"""Figures of the committee chapter: disagreement along trajectories, the alarm trade-off, the proxy."""

from __future__ import annotations

from typing import cast

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

FAILED, STABLE = "#c0392b", "#7f8c8d"


def _require(table: pd.DataFrame, columns, name: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}")


def disagreement_timelines(
    disagreement: pd.DataFrame,
    trajectories: pd.DataFrame,
    threshold: float | None = None,
    signal: str = "force_disagreement",
) -> plt.Figure:
    """One panel per training size: the committee's disagreement vs time for every trajectory.

    Failed trajectories are red and end in a cross at their failure; stable ones are grey. A
    recommended ``threshold`` is drawn as a dashed line.
    """
    keys = ["study", "train_size", "system"]
    _require(disagreement, [*keys, "time_ps", signal], "disagreement")
    _require(trajectories, [*keys, "failed", "time_to_failure_ps"], "trajectories")
    sizes = sorted(disagreement["train_size"].unique())
    fig, axes = plt.subplots(
        1, len(sizes), figsize=(3.4 * len(sizes), 3.4), sharey=True, constrained_layout=True, squeeze=False
    )
    fate = trajectories.set_index(keys)
    for ax, size in zip(axes[0], sizes):
        for key, group in disagreement[disagreement["train_size"] == size].groupby(keys):
            row = fate.loc[key]
            failed = bool(row["failed"])
            group = group.sort_values("time_ps")
            if failed:
                group = group[group["time_ps"] <= row["time_to_failure_ps"]]
            values = group[signal].clip(upper=1e3)
            ax.plot(
                group["time_ps"],
                values,
                color=FAILED if failed else STABLE,
                lw=1.2 if failed else 0.7,
                alpha=0.9 if failed else 0.5,
                zorder=3 if failed else 2,
            )
            if failed and len(group):
                ax.plot(group["time_ps"].iloc[-1], values.iloc[-1], "x", color=FAILED, ms=6, zorder=4)
        if threshold is not None:
            ax.axhline(threshold, ls="--", color="k", lw=1)
        ax.set(yscale="log", xlabel="time (ps)", title=f"{size} training configurations")
    axes[0][0].set_ylabel("max per-atom force disagreement (eV/Å)")
    axes[0][-1].plot([], [], color=FAILED, label="failed (x: failure)")
    axes[0][-1].plot([], [], color=STABLE, label="stable")
    axes[0][-1].legend(frameon=False, fontsize="small")
    return fig


def tradeoff_plot(tradeoff: pd.DataFrame, recommended: float | None = None) -> plt.Figure:
    """Left: detection and false-alarm rates vs threshold. Right: the same as an ROC curve."""
    _require(tradeoff, ["threshold", "detection_rate", "false_alarm_rate"], "tradeoff")
    table = tradeoff.sort_values("threshold")
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.6), constrained_layout=True)
    left.step(
        table["threshold"], table["detection_rate"], where="post", color=FAILED, lw=2, label="failures warned in time"
    )
    left.step(
        table["threshold"],
        table["false_alarm_rate"],
        where="post",
        color=STABLE,
        lw=2,
        label="false alarms on stable runs",
    )
    left.set(xscale="log", xlabel="threshold (eV/Å)", ylabel="fraction of trajectories", ylim=(-0.03, 1.03))
    right.plot(table["false_alarm_rate"], table["detection_rate"], "-o", color="#34495e", ms=3)
    right.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    right.set(xlabel="false-alarm rate", ylabel="detection rate", xlim=(-0.03, 1.03), ylim=(-0.03, 1.03))
    if recommended is not None:
        left.axvline(recommended, ls="--", color="k", lw=1, label=f"recommended {recommended:.2g} eV/Å")
        row = table.iloc[int(np.argmin(np.abs(table["threshold"].to_numpy() - recommended)))]
        right.plot(row["false_alarm_rate"], row["detection_rate"], "*", color="k", ms=12, label="recommended")
        right.legend(frameon=False, loc="lower right")
    left.legend(frameon=False, fontsize="small")
    return fig


def lead_time_plot(warnings: pd.DataFrame, ax: plt.Axes | None = None) -> plt.Figure:
    """Lead time of each warned failure, per training size (points), at one threshold."""
    _require(warnings, ["train_size", "outcome", "lead_time_ps"], "warnings")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.2), constrained_layout=True)
    else:
        fig = cast(plt.Figure, ax.figure)  # an Axes the caller made in a Figure (not a SubFigure)
    warned = warnings[warnings["outcome"] == "warned"]
    order = sorted(warnings["train_size"].unique())
    sns.stripplot(data=warned, x="train_size", y="lead_time_ps", order=order, color=FAILED, ax=ax, size=6, jitter=0.15)
    ax.set(xlabel="training configurations", ylabel="lead time (ps)")
    return fig


def proxy_plot(
    frames: pd.DataFrame, signal: str = "force_disagreement", error: str = "forces_mae", ax: plt.Axes | None = None
) -> plt.Figure:
    """The committee's disagreement against the true force error of the relabelled frames (log-log)."""
    _require(frames, ["train_size", signal, error], "frames")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 4), constrained_layout=True)
    else:
        fig = cast(plt.Figure, ax.figure)  # an Axes the caller made in a Figure (not a SubFigure)
    usable = frames.replace([np.inf, -np.inf], np.nan).dropna(subset=[signal, error])
    usable = usable[(usable[signal] > 0) & (usable[error] > 0)]
    sns.scatterplot(
        data=usable, x=signal, y=error, hue="train_size", palette="viridis_r", ax=ax, s=18, edgecolor="none", alpha=0.8
    )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="max per-atom force disagreement (eV/Å)",
        ylabel="force MAE vs reference (eV/Å)",
    )
    ax.legend(title="training configurations", frameon=False, fontsize="small")
    return fig


def proxy_by_error_plot(result, ax: plt.Axes | None = None) -> plt.Figure:
    """Median disagreement per bin of true error (a :class:`~gemrepro.analysis.warning.ProxyAtLargeError`),
    with the alarm threshold and the large-error line: where the curve flattens, the alarm goes blind."""
    bins = result.bins
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    else:
        fig = cast(plt.Figure, ax.figure)  # an Axes the caller made in a Figure (not a SubFigure)
    ax.plot(bins["median_error"], bins["median_signal"], "o-", color="#2c3e50", label="median per error bin")
    for row in bins.itertuples():
        ax.annotate(
            f"n={row.n_frames}",
            (row.median_error, row.median_signal),
            textcoords="offset points",
            xytext=(4, -10),
            fontsize="x-small",
        )
    ax.axhline(result.alarm_threshold, color=FAILED, linestyle="--", label="alarm threshold")
    ax.axvline(result.large_error, color=STABLE, linestyle=":", label="large error")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="true force MAE of the frame (eV/Å)",
        ylabel="max per-atom force disagreement (eV/Å)",
    )
    ax.legend(frameon=False, fontsize="small", loc="lower right")
    return fig
