"""The modern catalogue (issue 17 §7): ViT, DeiT, CLIP, ConvNeXt, EfficientNetV2, RegNet; e5, bge, gte.

Each vision model is built on PyTorch's meta device (no memory, no initialisation) and
checked against its catalogue row: timm's default weights tag, input size, feature width
and layer groups.  The smallest model of each vision family goes through the whole kit in
test_contracts.py (and DeiT's and a 2-block CLIP's contract in test_vision_zoo.py); the
sentence encoders go through it here, on the tiny BERT folder standing in for their hub
checkpoint.  Offline, nothing downloads: `tl pull` and `tl run` stop in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import one_line_error

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import BackboneRequest
from tlzoo.engine.registry import load_catalogue
from tlzoo.testing import check_backbone, tiny_images, tiny_texts

MODERN = ("vit", "deit", "clip", "convnext", "efficientnetv2", "regnet")
CATALOGUE = load_catalogue()
MODERN_MODELS = [e.name for e in CATALOGUE if e.plugin in MODERN]


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


# --------------------------------------------------------------------------- vision


@pytest.mark.parametrize("name", MODERN_MODELS)
def test_modern_entry_matches_timm(name: str) -> None:
    """Each modern model, built on the meta device: the catalogue's hub weights are timm's default tag,
    its input size and feature width are the model's, and the layer groups are stem, blocks or stages."""
    import timm
    from timm.models import get_pretrained_cfg

    from tlzoo.plugins.vision.timm_vision import TRANSFORMERS, VARIANTS, _build_options, timm_layer_groups

    entry = next(e for e in CATALOGUE if e.name == name)
    variant = VARIANTS[name]
    cfg = get_pretrained_cfg(variant.arch)
    assert cfg is not None and entry.weights == [f"hub:{cfg.hf_hub_id}"] and entry.source == variant.arch
    assert entry.input_size == cfg.input_size[-1]
    with torch.device("meta"):
        model = timm.create_model(variant.arch, pretrained=False, **_build_options(variant.family))
    model.reset_classifier(0)
    assert model.num_features == entry.num_features
    groups = timm_layer_groups(model, variant.family)
    in_groups = [id(p) for g in groups for p in g.parameters()]
    assert len(in_groups) == len(set(in_groups)) == len(list(model.parameters()))  # disjoint, every one
    if variant.family in TRANSFORMERS:  # stem, then one group per block; the final norm with the last
        assert len(groups) == len(model.blocks) + 1
        assert {id(p) for p in model.norm.parameters()} <= {id(p) for p in groups[-1].parameters()}
        assert {id(model.cls_token), id(model.pos_embed)} <= {id(p) for p in groups[0].parameters()}
    elif variant.family == "efficientnetv2":  # stem, the block stages, conv_head + bn2
        assert len(groups) == len(model.blocks) + 2
    else:  # stem and four stages; ConvNeXt's head norm with the last stage
        assert len(groups) == 5, [sum(1 for _ in g.parameters()) for g in groups]


def test_vision_transformers_take_any_multiple_of_the_patch_size(zoo: Any) -> None:
    vit = make(zoo, "vit_tiny_patch16_224", pretrained=False, image_size=48)
    with torch.no_grad():
        out = vit.eval()(vit.collate([vit.transform(x, False) for x in tiny_images(2, size=50)]))
    assert out.shape == (2, 192) and torch.isfinite(out).all()
    with pytest.raises(TlzooError, match=r"--image-size 40 is not a multiple of .*patch size \(16 px\); use 32 or 48"):
        make(zoo, "vit_tiny_patch16_224", pretrained=False, image_size=40)


def test_modern_preprocessing_comes_from_the_weights_config(zoo: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from tlzoo.plugins.vision import timm_vision

    build = timm_vision._build_options  # CLIP at 2 blocks: its preprocessing is what is checked here
    monkeypatch.setattr(timm_vision, "_build_options", lambda f: {**build(f), **({"depth": 2} if f == "clip" else {})})
    clip = make(zoo, "clip_vit_b32", pretrained=False).preprocessing()  # OpenAI's mean/std, bicubic
    assert clip["mean"] == pytest.approx([0.48145466, 0.4578275, 0.40821073]) and clip["interpolation"] == "bicubic"
    assert clip["input_size"] == [3, 224, 224]
    v2 = make(zoo, "efficientnetv2_b0", pretrained=False).preprocessing()
    assert v2["input_size"] == [3, 192, 192] and v2["mean"] == pytest.approx([0.485, 0.456, 0.406])


@pytest.mark.parametrize("family", MODERN)
def test_pull_of_a_modern_family_offline_is_one_clear_error(run_cli: Any, family: str) -> None:
    """`tl pull FAMILY` means its default model; offline it is refused at once, naming the way out."""
    default = next(e.name for e in CATALOGUE if e.plugin == family and e.default)
    line = one_line_error(run_cli("--offline", "pull", family), f"`tl pull {default}` needs the network", "--weights")
    assert f"{default}.safetensors" in line
    one_line_error(run_cli("pull", family[:-1]), f"Did you mean '{family}'")  # a family's typo: did-you-mean


def test_run_of_a_modern_model_offline_names_tl_pull(run_cli: Any, image_folder: Path, tmp_path: Path) -> None:
    res = run_cli("run", "--plugin", "deit_tiny_patch16_224", "--data", image_folder, "--out", tmp_path / "run")
    assert res.exit_code == 2 and "Traceback" not in res.output, res
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "No pretrained weights for 'deit_tiny_patch16_224'" in errors[0], res
    assert "tl pull deit_tiny_patch16_224" in errors[0] and not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- text
# one small model per family; the tiny BERT folder stands in for the hub checkpoint (all three are BERTs)
SENTENCE_ENCODERS = {"e5-small-v2": ("mean", "query: "), "bge-small-en-v1.5": ("cls", ""), "gte-small": ("mean", "")}


@pytest.mark.parametrize("name", sorted(SENTENCE_ENCODERS))
def test_sentence_encoder_contract_pooling_and_prefix(zoo: Any, tiny_bert_dir: Path, name: str) -> None:
    """The catalogue's pooling and prefix reach the features; the kit passes on random weights."""
    from tlzoo.engine.registry import load_catalogue

    pooling, prefix = SENTENCE_ENCODERS[name]
    entry = next(e for e in load_catalogue() if e.name == name)
    assert (entry.plugin, entry.pooling, entry.text_prefix) == ("bert", pooling, prefix)
    assert entry.weights == [f"hub:{entry.source}"] and entry.num_features == 384
    factory, model = zoo.resolve_backbone(name)
    assert factory.name == "bert" and model == name
    torch.manual_seed(0)
    b = factory.create(BackboneRequest(model=name, weights=str(tiny_bert_dir), pretrained=False))
    assert b.weights_source.startswith("random init") and b.pooling == pooling
    assert b.transform("the film", False) == prefix + "the film"
    assert b.preprocessing().get("text_prefix", "") == prefix
    batch = b.collate([b.transform(t, False) for t in ("the film", "a good story was moving")])
    with torch.no_grad():
        out, hidden = b.eval()(batch), b.encoder(**batch).last_hidden_state
    expected = (
        hidden[:, 0]
        if pooling == "cls"
        else (hidden * batch["attention_mask"][..., None]).sum(1) / batch["attention_mask"].sum(1, keepdim=True)
    )
    assert torch.allclose(out, expected, atol=1e-6)
    check_backbone(b, tiny_texts())


def test_catalogue_pooling_yields_to_pooling_and_follows_hub_ids(zoo: Any, tiny_bert_dir: Path) -> None:
    def make(model: str, pooling: str = "") -> Any:
        request = BackboneRequest(model=model, weights=str(tiny_bert_dir), pretrained=False, pooling=pooling)
        return zoo.backbones.get("bert").create(request)

    assert make("bge-small-en-v1.5", pooling="mean").pooling == "mean"  # --pooling wins
    by_id = make("intfloat/e5-small-v2")  # the hub id of a catalogued model gets its hints too
    assert by_id.pooling == "mean" and by_id.transform("x", False) == "query: x"
    plain = make("tiny")  # anything else: as before, no prefix and no new preprocessing key
    assert plain.transform("x", False) == "x" and "text_prefix" not in plain.preprocessing()
    assert make("e5-small-v2").preprocessing() != make("gte-small").preprocessing()  # other features, other keys


@pytest.mark.parametrize("name", sorted(SENTENCE_ENCODERS))
def test_sentence_encoders_offline_are_one_clear_error(run_cli: Any, tmp_path: Path, name: str) -> None:
    line = one_line_error(run_cli("--offline", "pull", name), f"`tl pull {name}` needs the network", "--weights")
    assert "Hugging Face cache" in line
    data = tmp_path / "t.csv"
    data.write_text("text,label\n" + "".join(f"word {i},{i % 2}\n" for i in range(20)))
    res = run_cli("run", "--plugin", name, "--data", data, "--out", tmp_path / "run")
    assert res.exit_code == 2 and "Traceback" not in res.output, res
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and f"No pretrained weights for '{name}'" in errors[0], res
    assert f"tl pull {name}" in errors[0] and not (tmp_path / "run").exists()


def test_pull_of_a_text_encoder_fetches_only_safetensors_config_and_tokenizer(
    run_cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Online (the hub faked), `tl pull e5-small-v2` asks for no pickle and reports the cache folder."""
    import huggingface_hub

    from tlzoo.infra import network

    asked: list[dict[str, Any]] = []
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()

    def fake_download(repo_id: str, **kw: Any) -> str:
        asked.append({"repo_id": repo_id, **kw})
        return str(snapshot)

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TLZOO_OFFLINE", raising=False)
    monkeypatch.setattr(network, "unreachable", lambda url="": "")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    one_line_error(run_cli("pull", "e5-small-v2"), "'intfloat/e5-small-v2' has no safetensors weights", "--weights")
    (snapshot / "model.safetensors").write_bytes(b"")
    res = run_cli("pull", "e5-small-v2")
    assert res.exit_code == 0 and res.stdout.strip() == str(snapshot), res
    assert asked[-1]["repo_id"] == "intfloat/e5-small-v2"
    assert "*.safetensors" in asked[-1]["allow_patterns"]
    assert not any(p.endswith((".bin", ".pt", ".pth", ".h5", ".msgpack", "*")) for p in asked[-1]["allow_patterns"])
    one_line_error(run_cli("pull", "glove-6B-50d"), "without hub weights", "--weights")
