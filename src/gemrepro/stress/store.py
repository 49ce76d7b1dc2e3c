"""An audit written to a folder and read back unchanged, so it can be cached, shipped and reread.

An :class:`~gemrepro.stress.audit.AuditResult` is tables (trajectories, relabelled frames, the
field's scores), the trajectory file and the geometries the failed trajectories broke in. The
tables go to CSV with their dtypes beside them (a string column keeps its empty strings, a float
column its NaNs, every float its last bit); geometries to ``.npz`` without pickles; nothing in the
folder runs code when read.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from gemrepro.stress.audit import AuditResult
from gemrepro.stress.field import FieldProtocol, FieldScores
from gemrepro.studies.sweep import Protocol

__all__ = ["read_audit", "write_audit"]

MISSING = "nan"  # how a missing float is written; empty strings stay empty strings
TRAJECTORY_FILE = "trajectory.h5"
TRAJECTORY_FOLDER = "trajectories"
FAILURES = "failure_positions.npz"
META = "audit.json"


def write_table(table: pd.DataFrame, path: Path) -> dict[str, str]:
    """Write ``table`` as CSV; returns its column dtypes, which :func:`read_table` needs."""
    table.to_csv(path, index=False, na_rep=MISSING, float_format="%.17g")  # 17 digits: every double exact
    return {str(column): str(dtype) for column, dtype in table.dtypes.items()}


def read_table(path: Path, dtypes: dict[str, str]) -> pd.DataFrame:
    """The table :func:`write_table` wrote, with the same columns, dtypes and values."""
    text_columns = {column: str for column, dtype in dtypes.items() if dtype == "object"}
    table = pd.read_csv(
        path, keep_default_na=False, na_values=[MISSING], dtype=text_columns, float_precision="round_trip"
    )
    for column, dtype in dtypes.items():
        if dtype == "object":
            table[column] = table[column].astype(object)
        else:
            table[column] = table[column].astype(dtype)
    return table[list(dtypes)]


def write_audit(result: AuditResult, folder: str | Path) -> None:
    """Copy ``result`` (tables, trajectory, failure geometries) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source = Path(result.trajectory_path)
    if source.is_dir():
        shutil.copytree(source, folder / TRAJECTORY_FOLDER, dirs_exist_ok=True)
    else:
        shutil.copyfile(source, folder / TRAJECTORY_FILE)
    geometries: dict[str, np.ndarray] = {str(system): p for system, p in result.failure_positions.items()}
    np.savez(folder / FAILURES, allow_pickle=False, **geometries)
    p = result.protocol
    meta: dict = {
        "protocol": {
            "md_time_ps": p.md_time_ps,
            "temperatures": list(p.temperatures),
            "dt_fs": p.dt_fs,
            "friction_per_fs": p.friction_per_fs,
            "n_sampled_frames": p.n_sampled_frames,
        },
        "reference": result.reference,
        "trajectory": TRAJECTORY_FOLDER if source.is_dir() else TRAJECTORY_FILE,
        "tables": {
            "trajectories": write_table(result.trajectories, folder / "trajectories.csv"),
            "frames": write_table(result.frames, folder / "frames.csv"),
        },
    }
    if result.field is not None:
        f = result.field
        meta["field"] = {"nve_ps": f.protocol.nve_ps, "ramp_ps": f.protocol.ramp_ps}
        for name, table in (("field_trajectories", f.trajectories), ("field_nve", f.nve), ("field_ramp", f.ramp)):
            meta["tables"][name] = write_table(table, folder / f"{name}.csv")
    (folder / META).write_text(json.dumps(meta, indent=2) + "\n")


def read_audit(folder: str | Path) -> AuditResult:
    """The audit :func:`write_audit` wrote into ``folder``."""
    folder = Path(folder)
    meta_path = folder / META
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder}: no {META}; expected a folder written by write_audit")
    meta = json.loads(meta_path.read_text())
    tables = {name: read_table(folder / f"{name}.csv", dtypes) for name, dtypes in meta["tables"].items()}
    with np.load(folder / FAILURES, allow_pickle=False) as stored:
        failures = {int(system): stored[system] for system in stored.files}
    protocol = meta["protocol"]
    field = None
    if "field" in meta:
        field = FieldScores(
            tables["field_trajectories"],
            tables["field_nve"],
            tables["field_ramp"],
            FieldProtocol(**meta["field"]),
        )
    return AuditResult(
        Protocol(
            protocol["md_time_ps"],
            tuple(protocol["temperatures"]),
            protocol["dt_fs"],
            protocol["friction_per_fs"],
            protocol["n_sampled_frames"],
        ),
        tables["trajectories"],
        tables["frames"],
        folder / meta["trajectory"],
        meta["reference"],
        failures,
        field,
    )
