"""The backbone request contract: typed engine settings, the plugin's own options checked by the
factory for every backbone, the factory naming the backbone, and the fit protocol's restore."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import (
    ENGINE_SETTINGS,
    Backbone,
    BackboneFactory,
    BackboneRequest,
    Dataset,
    FittableBackbone,
    check_options,
    fit_backbone,
)


def test_engine_settings_are_typed_fields_and_options_hold_the_plugins_keys() -> None:
    r = BackboneRequest(
        "m",
        options={"dim": 3},
        pooling="cls",
        max_length=16,
        image_size=64,
        augment=True,
        train_backbone=True,
        assets="/run/assets",
    )
    assert r.options == {"dim": 3} and (r.pooling, r.max_length, r.image_size) == ("cls", 16, 64)
    assert r.augment and r.train_backbone and r.assets == "/run/assets"
    assert set(ENGINE_SETTINGS) <= {f.name for f in dataclasses.fields(BackboneRequest)}


def test_a_0_1_request_with_engine_settings_in_options_still_works_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match="max_length, augment inside options is deprecated"):
        r = BackboneRequest("m", options={"max_length": "32", "augment": 1, "dim": 3})
    assert r.options == {"dim": 3} and r.max_length == 32 and r.augment is True
    with pytest.warns(DeprecationWarning):  # a field given explicitly wins
        assert BackboneRequest("m", max_length=8, options={"max_length": 32}).max_length == 8


def test_model_json_requests_of_both_forms_read_back() -> None:
    new = BackboneRequest("m", weights="w", options={"dim": 3}, pooling="max", max_length=20, train_backbone=True)
    assert BackboneRequest.from_json(new.to_json()) == new
    assert "assets" not in new.to_json()  # tl predict always sets it to the run's own folder
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reading an old run is no deprecation of the caller's
        old = BackboneRequest.from_json(
            {
                "model": "m",
                "weights": None,
                "pretrained": False,
                "options": {
                    "pooling": "cls",
                    "max_length": 64,
                    "image_size": 0,
                    "augment": False,
                    "train_backbone": True,
                    "dim": 3,
                },
            },
            assets="/run/assets",
        )
    assert old == BackboneRequest(
        "m",
        pretrained=False,
        options={"dim": 3},
        pooling="cls",
        max_length=64,
        train_backbone=True,
        assets="/run/assets",
    )
    with pytest.raises(ValueError):
        BackboneRequest.from_json({"model": "m", "max_length": "many"})


def test_check_options_merges_and_names_every_problem() -> None:
    defaults = {"dim": 128, "scale": 1.0, "norm": True, "name": "x", "seed": None}
    assert check_options("p", {"scale": 2, "seed": "any", "dim": None}, defaults) == {
        "dim": 128,
        "scale": 2.0,
        "norm": True,
        "name": "x",
        "seed": "any",
    }
    for bad, message in [
        ({"dims": 3}, "Unknown option model.options.dims for p. Did you mean 'dim'?"),
        ({"max_length": 3}, "It is an engine setting: BackboneRequest.max_length"),
        ({"dim": 2.5}, "model.options.dim of p expects int"),
        ({"dim": True}, "model.options.dim of p expects int"),
        ({"norm": "yes"}, "model.options.norm of p expects bool"),
        ({"scale": "big"}, "model.options.scale of p expects float"),
    ]:
        with pytest.raises(TlzooError) as info:
            check_options("p", bad, defaults)
        assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(TlzooError, match="Options: none"):
        check_options("p", {"x": 1}, {})


class _Flat(Backbone):
    modality, num_features, weights_source = "text", 2, "none"

    def __init__(self, request: BackboneRequest) -> None:
        super().__init__()
        self.name = request.model

    def transform(self, example: Any, train: bool) -> Any:
        return torch.tensor([float(len(example)), 1.0])

    def forward(self, batch: Any) -> torch.Tensor:
        return batch

    def layer_groups(self) -> list[nn.Module]:
        return []


class _Mean(FittableBackbone, _Flat):
    """Centres the length feature on the training mean: fitted state in a buffer, saved as JSON."""

    def __init__(self, request: BackboneRequest) -> None:
        super().__init__(request)
        self.register_buffer("mean", torch.zeros(()))

    def fit(self, train: Dataset) -> None:
        self.mean = torch.tensor(sum(map(len, train.examples)) / len(train))

    def save_assets(self, folder: str) -> None:
        (Path(folder) / "mean.json").write_text(str(float(self.mean)))

    def load_fitted(self, folder: str) -> None:
        self.mean = torch.tensor(float((Path(folder) / "mean.json").read_text()))

    def transform(self, example: Any, train: bool) -> Any:
        return torch.tensor([len(example) - float(self.mean), 1.0])


def test_the_factory_checks_options_before_building_and_names_the_backbone() -> None:
    built: list[BackboneRequest] = []

    def make(request: BackboneRequest) -> Backbone:
        built.append(request)
        return _Flat(request)

    factory = BackboneFactory("flat", "text", make, "flat-1", ("flat-1",), options={"dim": 2})
    backbone = factory.create(BackboneRequest("flat-1", options={"dim": 4}))
    assert backbone.plugin == "flat" and backbone.spec()["plugin"] == "flat"  # the feature-cache key's name
    with pytest.raises(TlzooError, match="Unknown option model.options.dimm for flat. Did you mean 'dim'"):
        factory.create(BackboneRequest("flat-1", options={"dimm": 4}))
    assert len(built) == 1  # refused before the plugin's code ran
    renamed = dataclasses.replace(factory, name="flat2")  # one wrapper, naming with the new name
    assert renamed.create(BackboneRequest("flat-1")).plugin == "flat2" and len(built) == 2
    with pytest.raises(TypeError, match="option 'pooling' is an engine setting"):
        BackboneFactory("bad", "text", make, "m", options={"pooling": "mean"})


def test_a_fittable_backbone_is_fitted_by_the_engine_and_restored_by_the_factory(tmp_path: Path) -> None:
    factory = BackboneFactory("mean", "text", _Mean, "mean-1", ("mean-1",))
    backbone = factory.create(BackboneRequest("mean-1"))
    unfitted = backbone.fingerprint()
    logged: list[str] = []
    fit_backbone(backbone, Dataset(["ab", "abcd"], ["x", "y"], "text"), logged.append)
    assert float(backbone.mean) == 3.0 and backbone.fingerprint() != unfitted  # the cache key follows the fit
    assert logged and logged[0].startswith("  fitted mean-1 on 2 training examples")
    backbone.save_assets(str(tmp_path))
    again = factory.create(BackboneRequest("mean-1", assets=str(tmp_path)))
    assert float(again.mean) == 3.0 and again.fingerprint() == backbone.fingerprint()
    with pytest.raises(TlzooError, match="fitted state of backbone 'mean-1' in .* does not load \\(FileNotFound"):
        factory.create(BackboneRequest("mean-1", assets=str(tmp_path / "elsewhere")))
    fit_backbone(_Flat(BackboneRequest("flat")), Dataset(["a"], ["x"], "text"), logged.append)  # nothing to fit
    assert len(logged) == 1


def _builtin_factories() -> list[Any]:
    from tlzoo.engine.plugins import PluginManager
    from tlzoo.engine.zoo import Zoo

    zoo = Zoo(PluginManager(load_entry_points=False))
    return [pytest.param(factory, id=name) for name, factory in zoo.backbones.items()]


@pytest.mark.parametrize("factory", _builtin_factories())
def test_every_builtin_backbone_rejects_an_unknown_option_with_its_options_listed(factory: Any) -> None:
    options = factory.defaults()
    assert not set(options) & set(ENGINE_SETTINGS), f"{factory.name} declares an engine setting as an option"
    with pytest.raises(TlzooError) as info:
        factory.create(BackboneRequest(factory.default_model, pretrained=False, options={"no_such_option": 1}))
    message = str(info.value)
    assert message.startswith(f"Unknown option model.options.no_such_option for {factory.name}.")
    assert message.endswith(f"Options: {', '.join(f'{k}={v!r}' for k, v in sorted(options.items())) or 'none'}.")
