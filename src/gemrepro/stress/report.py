"""The audit as one self-contained HTML page (figures embedded as base64 PNG) and a JSON summary.

One file that opens anywhere — a CI artifact, an e-mail attachment — without a server or the
trajectory next to it.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from gemrepro.analysis.origin import HOLE_THRESHOLD_KT, ORIGINS
from gemrepro.stress import plots
from gemrepro.stress.audit import AuditResult
from gemrepro.stress.field import SOURCES

ORIGIN_RULE = (
    f"hole when the reference charges more than {HOLE_THRESHOLD_KT:g} kT above the model for the step from "
    "the last frame before the failure into the failed geometry, else chemistry (gemrepro; none of the "
    "field's benchmarks asks)"
)


def origin_line(facts: dict) -> str | None:
    """``failures: 2 holes, 1 chemistry, 0 undetermined``, or None without relabelled failures."""
    origins = facts.get("failure_origins")
    if not origins or facts["n_failed"] == 0:
        return None
    return (
        f"failures: {origins['hole']} holes in the learned surface, {origins['chemistry']} real chemistry, "
        f"{origins['undetermined']} undetermined, of {facts['n_failed']}"
    )


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def summary(result: AuditResult, label: str, min_stable_ps: float | None = None) -> dict:
    """JSON-ready summary: protocol, verdict, per-temperature counts, every trajectory, error statistics."""
    p = result.protocol
    t = result.trajectories
    per_temperature = []
    for temperature, group in t.groupby("temperature", sort=True):
        per_temperature.append(
            {
                "temperature_K": float(temperature),
                "n_trajectories": int(len(group)),
                "n_failed": int(group["failed"].sum()),
                "median_stable_ps": float(np.median(group["stable_time_ps"])),
            }
        )
    labelled = result.frames[result.frames["converged"].astype(bool)] if len(result.frames) else result.frames
    errors = None
    if len(labelled):
        errors = {
            "n_frames": int(len(result.frames)),
            "n_converged": int(len(labelled)),
            "forces_mae_median": _finite_or_none(np.nanmedian(labelled["forces_mae"])),
            "forces_mae_max": _finite_or_none(np.nanmax(labelled["forces_mae"])),
            "energy_error_abs_max": _finite_or_none(np.nanmax(np.abs(labelled["energy_error"]))),
        }
    rows = json.loads(t.to_json(orient="records"))
    origins = None
    if "origin" in t.columns:
        failed = t[t["failed"]]
        origins = {"rule": ORIGIN_RULE, **{verdict: int((failed["origin"] == verdict).sum()) for verdict in ORIGINS}}
    return {
        "potential": label,
        "protocol": {
            "temperatures_K": list(p.temperatures),
            "time_ps": result.horizon_ps,
            "dt_fs": p.dt_fs,
            "friction_per_fs": p.friction_per_fs,
            "n_steps": p.n_steps,
            "n_sampled_frames": p.n_sampled_frames,
            "reference": result.reference,
        },
        "verdict": None if min_stable_ps is None else result.verdict(min_stable_ps).as_dict(),
        "n_trajectories": int(len(t)),
        "n_failed": int(t["failed"].sum()),
        "shortest_stable_ps": float(t["stable_time_ps"].min()),
        "per_temperature": per_temperature,
        "errors": errors,
        "failure_origins": origins,
        "field_scores": None if result.field is None else result.field.as_dict(),
        "trajectories": rows,
    }


def _png(fig: plt.Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _image(fig: plt.Figure, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{_png(fig)}">'


def worst_frames_figure(result: AuditResult, n: int = 4) -> plt.Figure | None:
    """Drawings of the ``n`` worst relabelled frames (largest force error), or ``None`` without frames."""
    worst = result.worst_frames(n)
    if worst.empty:
        return None
    images, titles = [], []
    for row in worst.itertuples():
        images.append(result.atoms_of(row.system, row.frame))
        where = "failed geometry" if row.frame == -1 else f"frame {row.frame}"
        titles.append(
            f"{row.molecule}, {row.temperature:g} K, seed {row.seed}\n{row.time_ps:.3g} ps ({where}), "
            f"force MAE {row.forces_mae:.2g} eV/Å"
        )
    return plots.structures(images, titles)


def _field_section(result: AuditResult) -> list[str]:
    """The field's four scores, one line each with its source, and their tables."""
    field = result.field
    assert field is not None  # called only for an audit with field scores
    items = "".join(
        f"<li>{html.escape(line)}<br><small>{html.escape(SOURCES[key])}</small></li>"
        for key, line in field.lines().items()
    )
    table = {"float_format": lambda v: f"{v:.4g}", "index": False}
    return [
        "<h2>The field's stability scores</h2>",
        "<p>Each computed from its published definition (gemrepro.analysis.scores). MDsim and MLIPAudit read the "
        "Langevin trajectories above; a trajectory the audit froze at a failure keeps its failed geometry, so a "
        "criterion that had not fired by then counts as stable (<i>censored</i>). LAMBench runs NVE and MLIP Arena "
        "a heating ramp, one trajectory per molecule.</p>",
        f"<ul>{items}</ul>",
        field.trajectories.drop(columns=["system"]).to_html(**table),
        "<h3>NVE energy drift (LAMBench)</h3>",
        field.nve.to_html(**table),
        "<h3>Heating ramp (MLIP Arena)</h3>",
        field.ramp.to_html(**table),
    ]


def render_html(result: AuditResult, label: str, min_stable_ps: float | None = None) -> str:
    """The report page as a string."""
    facts = summary(result, label, min_stable_ps)
    verdict = facts["verdict"]
    if verdict is None:
        headline = "no gate (--min-stable-ps not given)"
    else:
        outcome = "PASSED" if verdict["passed"] else "FAILED"
        headline = (
            f"{outcome}: {verdict['n_trajectories'] - verdict['n_failed_early']} of {verdict['n_trajectories']} "
            f"trajectories stable for at least {verdict['min_stable_ps']:g} ps "
            f"(shortest {verdict['shortest_stable_ps']:.3g} ps)"
        )
    p = facts["protocol"]
    sections = [
        f"<h1>Robustness audit: {html.escape(label)}</h1>",
        f'<p class="verdict">{html.escape(headline)}</p>',
        "<h2>Protocol</h2>",
        f"<p>Langevin NVT at {', '.join(f'{t:g}' for t in p['temperatures_K'])} K, {p['dt_fs']:g} fs steps, "
        f"friction {p['friction_per_fs']:g} /fs, {p['time_ps']:g} ps ({p['n_steps']} steps) per trajectory. "
        "A trajectory fails when a bond of its start structure deviates by more than 0.5 Å, a hydrogen leaves every "
        "heavy atom, a force exceeds its bound, or the potential returns a non-finite value, raises or times out. "
        f"Up to {p['n_sampled_frames']} frames per trajectory, its start and its failed geometry are relabelled "
        f"with {html.escape(str(p['reference']))}.</p>",
        "<h2>Survival</h2>",
        _image(plots.survival(result.trajectories, result.horizon_ps), "survival curves"),
        pd.DataFrame(facts["per_temperature"]).to_html(index=False, float_format=lambda v: f"{v:.4g}"),
    ]
    if len(result.frames):
        sections += ["<h2>Error vs time</h2>", _image(plots.error_vs_time(result.frames), "force error vs time")]
        figure = worst_frames_figure(result)
        if figure is not None:
            sections += ["<h2>Worst frames</h2>", _image(figure, "worst frames")]
    line = origin_line(facts)
    if line is not None:
        sections += [
            "<h2>Hole or real chemistry?</h2>",
            f"<p>{html.escape(line)}.<br><small>Rule: {html.escape(ORIGIN_RULE)}.</small></p>",
        ]
    if result.field is not None:
        sections += _field_section(result)
    columns = ["molecule", "formula", "temperature", "seed", "failed", "stable_time_ps", "rule", "atoms", "detail"]
    columns += [c for c in ("origin", "origin_excess_eV") if c in result.trajectories.columns]
    sections += [
        "<h2>Trajectories</h2>",
        result.trajectories[columns].to_html(index=False, float_format=lambda v: f"{v:.4g}"),
    ]
    style = (
        "body{font-family:sans-serif;max-width:60em;margin:auto;padding:1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px}"
        ".verdict{font-size:1.2em;font-weight:bold}img{max-width:100%}"
    )
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>gemrepro stress: {html.escape(label)}</title>'
        f"<style>{style}</style></head><body>\n" + "\n".join(sections) + "\n</body></html>\n"
    )


def write_report(
    result: AuditResult, html_path: str | Path, json_path: str | Path, label: str, min_stable_ps: float | None = None
) -> dict:
    """Write the HTML report and the JSON summary; returns the summary."""
    facts = summary(result, label, min_stable_ps)
    html_path, json_path = Path(html_path), Path(json_path)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(render_html(result, label, min_stable_ps), encoding="utf-8")
    json_path.write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
    return facts
