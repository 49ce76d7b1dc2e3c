"""One model-file format, one loader, and the upgrade of files written before either.

Until the house-plan refactor a bare GemNet kept per-element energies in an ``atom_reference``
buffer and was saved in its own format (``gemrepro.gemnet-t``), while trained models were an
``EnergyShift`` in another (``gemrepro-trained-model/1``, the format of the shipped bundle).
These tests write files of both earlier formats by hand, as those versions did, and check that
``load_model`` gives the energies those versions computed.
"""

from __future__ import annotations

import pytest
import torch
from model_geometries import ETHANOL, WATER
from model_geometries import jittered_molecule as molecule
from torch_geometric.data import Batch

from gemrepro.model import (
    MODEL_FORMAT,
    EnergyShift,
    GemNetQ,
    GemNetT,
    fit_scale_factors,
    load_model,
    read_model_metadata,
    save_model,
)
from gemrepro.model.checkpoint import (
    LEGACY_NETWORK_FORMAT,
    LEGACY_TRAINED_FORMAT,
    upgrade_state_dict,
)

torch.set_num_threads(1)

LEGACY_REFERENCES = {1: -13.6, 6: -1029.0, 8: -2041.0}
REFERENCES = {1: -0.5, 6: -37.8, 8: -75.0}


def network(cls=GemNetT):
    torch.manual_seed(3)
    net = cls.from_preset("tiny").double()
    fit_scale_factors(net, Batch.from_data_list([molecule(WATER), molecule(ETHANOL)]))
    return net.eval()


def legacy_table(net, references: dict[int, float]) -> torch.Tensor:
    """The former ``atom_reference`` buffer: one value per atomic number 0..num_elements."""
    table = torch.zeros(net.config.num_elements + 1, dtype=net.dtype)
    for z, value in references.items():
        table[z] = value
    return table


def old_energy(net, data, table: torch.Tensor) -> torch.Tensor:
    """What a network with a non-zero ``atom_reference`` returned: the atoms' references added."""
    return net(data)["energy"] + table[data.z].sum()


def test_every_file_is_one_format_and_loads_as_an_energy_shift(tmp_path):
    net = network(GemNetQ)
    data = molecule(ETHANOL)
    bare = torch.load(save_model(net, tmp_path / "bare.pt"), weights_only=True)
    trained = torch.load(
        save_model(EnergyShift(net, REFERENCES), tmp_path / "trained.pt", metadata={"steps": 7}), weights_only=True
    )
    assert bare["format"] == trained["format"] == MODEL_FORMAT
    assert bare.keys() == trained.keys() and bare["state_dict"].keys() == trained["state_dict"].keys()
    assert not any("atom_reference" in key for key in trained["state_dict"])
    loaded = load_model(tmp_path / "trained.pt", device="cpu")
    assert isinstance(loaded, EnergyShift) and type(loaded.model) is GemNetQ and not loaded.training
    assert loaded.reference_energies() == REFERENCES and read_model_metadata(tmp_path / "trained.pt") == {"steps": 7}
    expected = EnergyShift(net, REFERENCES)(data)
    torch.testing.assert_close(loaded(data)["energy"], expected["energy"], rtol=0, atol=0)
    torch.testing.assert_close(loaded(data)["forces"], expected["forces"], rtol=0, atol=0)


def test_a_bare_network_file_of_the_earlier_format_keeps_its_references(tmp_path):
    net = network()
    data = molecule(ETHANOL)
    table = legacy_table(net, LEGACY_REFERENCES)
    config = net.config.to_dict()
    config.pop("variant")  # version-1 files predate GemNet-Q: no variant means GemNet-T
    torch.save(
        {
            "format": LEGACY_NETWORK_FORMAT,
            "version": 1,
            "config": config,
            "dtype": "float64",
            "state_dict": {**net.state_dict(), "atom_reference": table},
        },
        tmp_path / "old.pt",
    )
    loaded = load_model(tmp_path / "old.pt", device="cpu")
    assert type(loaded.model) is GemNetT and loaded.reference_energies() == LEGACY_REFERENCES
    torch.testing.assert_close(loaded(data)["energy"], old_energy(net, data, table), rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(loaded(data)["forces"], net(data)["forces"], rtol=0, atol=0)


def test_a_trained_file_of_the_earlier_format_loads_unchanged(tmp_path):
    net = network()
    data = molecule(WATER)
    wrapped = EnergyShift(net, REFERENCES)
    state = {**wrapped.state_dict(), "model.atom_reference": legacy_table(net, {})}  # zero, as every shipped one
    torch.save(
        {
            "format": LEGACY_TRAINED_FORMAT,
            "model_class": "gemrepro.model.gemnet:GemNetT",
            "model_config": net.config.to_dict(),
            "config_class": "gemrepro.model.presets:GemNetConfig",
            "state_dict": state,
            "element_energies": REFERENCES,
            "metadata": {"best_metrics": {"step": 3}},
        },
        tmp_path / "trained-v1.pt",
    )
    loaded = load_model(tmp_path / "trained-v1.pt", device="cpu")
    assert loaded.reference_energies() == REFERENCES and loaded.metadata == {"best_metrics": {"step": 3}}
    torch.testing.assert_close(loaded(data)["energy"], wrapped(data)["energy"], rtol=0, atol=0)


def test_a_training_checkpoint_of_the_earlier_version_resumes_with_the_same_energies():
    net = network()
    data = molecule(ETHANOL)
    table = legacy_table(net, LEGACY_REFERENCES)
    state = {**EnergyShift(net, REFERENCES).state_dict(), "model.atom_reference": table}
    upgraded = EnergyShift(network())
    upgraded.load_state_dict(upgrade_state_dict(state))
    expected = net(data)["energy"] + table[data.z].sum() + sum(REFERENCES[int(z)] for z in data.z)
    torch.testing.assert_close(upgraded(data)["energy"], expected, rtol=1e-12, atol=1e-9)


def test_an_unknown_format_is_a_one_line_error(tmp_path):
    torch.save({"format": "someone-else/3", "state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"other\.pt.*is not a gemrepro model file \(format 'someone-else/3'"):
        load_model(tmp_path / "other.pt", device="cpu")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="holds a list"):
        load_model(tmp_path / "list.pt", device="cpu")


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"model_class": "subprocess:run", "config_class": None}, "model_class 'subprocess:run' is not a network"),
        ({"config_class": "subprocess:Popen"}, "config_class 'subprocess:Popen' is not a network"),
        ({"model_class": "os:system"}, "model_class 'os:system'"),
        ({"model_config": ["touch"]}, "model_config is a list"),
    ],
)
def test_a_model_file_names_its_network_from_an_allowlist_and_runs_nothing(tmp_path, changes, match):
    marker = tmp_path / "ran"
    path = save_model(network(), tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    payload.update({"model_config": {"args": ["touch", str(marker)]}, **changes})
    torch.save(payload, path)
    with pytest.raises(ValueError, match=match) as error:
        load_model(path, device="cpu")
    assert "\n" not in str(error.value) and not marker.exists()


def test_a_model_file_without_its_class_is_a_one_line_error(tmp_path):
    path = save_model(network(), tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    del payload["model_class"]
    torch.save(payload, path)
    with pytest.raises(ValueError, match="model file without model_class"):
        load_model(path, device="cpu")
