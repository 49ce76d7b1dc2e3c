"""Which model the MD benchmarks run: one that does not wreck the molecules it is timed on.

A GemNet call costs what its graph costs (atoms, edges, triplets), whatever the weights' values,
but MD moves the atoms with the forces, and a random-weight network's forces tear molecules apart
within 20 steps: with the tiny preset 16 of the 60 benchmark systems break a bond, and one pyrrole
collapses until two atoms are 0.4 Å apart, which the ASE calculator refuses. So ``gemrepro bench
md`` runs, by default, the trained tiny GemNet-T shipped in ``models/tiny.tar.xz`` (the seed-0
model of the largest training set; none of the 60 systems fails in 400 steps at 300 K). A random
preset, asked for or when the bundle is absent, gets its energy read-out set to zero: every call
runs the same operations on the same graph, so it costs what any network of that preset costs,
but the forces are zero and the molecules only drift with the thermostat's kicks.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
from pathlib import Path

import torch

from gemrepro.cache.bundle import BUNDLE_MANIFEST
from gemrepro.cache.paths import shipped_models
from gemrepro.model import EnergyShift, GemNet, build_model, load_model
from gemrepro.model.blocks import OutputBlock

#: The scale whose committed bundle holds the default benchmark model.
SHIPPED_SCALE = "tiny"


def zero_readout(network: GemNet) -> GemNet:
    """``network`` with the energy read-out of every output block set to zero, in place.

    The forward and backward passes still run every operation (autograd does not skip zeros), so
    a call costs what it did; energies are constant and forces zero.
    """
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, OutputBlock):
                module.out_energy.weight.zero_()
    return network


def silent_random_model(variant: str, preset: str, seed: int = 0) -> GemNet:
    """A random-weight GemNet of ``preset`` with its read-out zeroed (see :func:`zero_readout`)."""
    torch.manual_seed(seed)
    return zero_readout(build_model(variant, preset))


def shipped_model(variant: str = "T") -> tuple[EnergyShift, str] | None:
    """The trained tiny model of ``variant`` from the committed bundle, and a line saying which; None without one.

    The bundle's checksum of the model file is verified before it is loaded.
    """
    bundle = shipped_models(SHIPPED_SCALE)
    if bundle is None:
        return None
    manifests: dict[str, dict] = {}  # by model folder
    payloads: dict[str, bytes] = {}
    files: dict[str, str] = {}
    with tarfile.open(bundle, "r:*") as tar:
        for member in tar:  # one pass: an xz stream read out of order is decompressed again from its start
            handle = tar.extractfile(member)
            if handle is None:
                continue
            if member.name == BUNDLE_MANIFEST:
                files = json.load(handle)["files"]
            elif member.name.startswith("artifacts/models/") and member.name.endswith("/manifest.json"):
                manifests[member.name.split("/")[2]] = json.load(handle).get("params", {})
            elif member.name.startswith("artifacts/models/") and member.name.endswith("/model.pt"):
                payloads[member.name.split("/")[2]] = handle.read()
    candidates = [
        (int(params["split"]["train_size"]), key)
        for key, params in manifests.items()
        if params.get("seed") == 0 and "member" not in params and params.get("model", {}).get("variant") == variant
    ]
    if not candidates:
        return None
    size, key = max(candidates)
    name = f"models/{key}/model.pt"
    payload = payloads.get(key, b"")
    if hashlib.sha256(payload).hexdigest() != files.get(name):
        raise ValueError(f"{bundle}: checksum mismatch for {name}; the bundle is corrupt")
    with tempfile.TemporaryDirectory(prefix="gemrepro-bench-model-") as scratch:
        path = Path(scratch) / "model.pt"
        path.write_bytes(payload)
        model = load_model(path, device="cpu")
    label = f"trained {SHIPPED_SCALE} GemNet-{variant} ({size} training structures, seed 0; {bundle.name})"
    return model, label
