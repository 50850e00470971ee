"""The LSTM language models (elmo, ulmfit): pretraining, transfer, the ulmfit strategy, contracts.

Everything runs on tiny configurations (a few thousand parameters, a repetitive corpus
of a few dozen sentences), so the whole file takes well under a minute.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import BackboneRequest

TINY = {
    "elmo": {"dim": 16, "hidden": 24, "char_dim": 8, "batch_size": 8, "epochs": 3, "lr": 1e-2},
    "ulmfit": {"emb": 16, "hidden": 24, "layers": 2, "batch_size": 4, "bptt": 12, "epochs": 3, "lr": 1e-2},
}

CORPUS = [
    "the film is a delight from start to finish .",
    "the story is dull and the acting is worse .",
    "a smart , funny and moving comedy .",
    "the plot makes no sense and the jokes fall flat .",
    "a beautiful film about love and family .",
    "boring , slow and far too long .",
] * 8


def _make(plugin: str, **kw: Any) -> Any:
    from tlzoo.plugins.text.elmo import ElmoBackbone
    from tlzoo.plugins.text.ulmfit import UlmfitBackbone

    cls = ElmoBackbone if plugin == "elmo" else UlmfitBackbone
    return cls(BackboneRequest(model=plugin, **kw))


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both models pretrained for a few epochs on the tiny corpus through the engine (as `tl pretrain`)."""
    from tlzoo.commands.pretraining import pretrain

    out = {}
    for plugin, opts in TINY.items():
        folder = tmp_path_factory.mktemp("pt") / plugin
        pretrain(plugin, CORPUS, folder, dict(opts), log=None)
        out[plugin] = folder
    return out


@pytest.mark.parametrize("plugin", ["elmo", "ulmfit"])
def test_pretraining_writes_weights_vocab_description_curve_and_learns(
    pretrained: dict[str, Path], plugin: str
) -> None:
    folder = pretrained[plugin]
    for name in (
        "model.safetensors",
        "vocab.json",
        "description.json",
        "pretraining.json",
        "pretraining_curve.png",
        "pretraining_history.csv",
    ):
        assert (folder / name).is_file(), name
    assert (folder / "pretraining_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    desc = json.loads((folder / "description.json").read_text())
    assert desc["plugin"] == plugin and desc["config"]["epochs"] == 3
    rows = list(csv.DictReader((folder / "pretraining_history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    # a language model on a repetitive corpus: perplexity must fall well below the vocabulary size
    first, last = float(rows[0]["train_perplexity"]), float(rows[-1]["train_perplexity"])
    assert last < first * 0.7, (first, last)
    assert float(rows[-1]["val_perplexity"]) < desc["vocab_size"] + desc["hash_buckets"]


@pytest.mark.parametrize("plugin", ["elmo", "ulmfit"])
def test_weights_transfer_into_the_backbone(pretrained: dict[str, Path], plugin: str) -> None:
    from safetensors.torch import load_file

    bb = _make(plugin, weights=str(pretrained[plugin]), max_length=32)
    saved = load_file(str(pretrained[plugin] / "model.safetensors"))
    state = bb.state_dict()
    pairs = (
        [(f"lm.{k}", k) for k in saved] if plugin == "ulmfit" else [(k, k) for k in saved]
    )  # elmo: bilm.*, softmax.*
    assert pairs
    for mine, theirs in pairs:
        assert torch.equal(state[mine], saved[theirs]), mine
    assert "tl pretrain folder" in bb.weights_source
    scratch = _make(plugin, pretrained=False, max_length=32)
    assert scratch.weights_source.startswith("random init")


@pytest.mark.parametrize("plugin", ["elmo", "ulmfit"])
def test_missing_or_wrong_weights_say_how_to_make_them(
    pretrained: dict[str, Path], plugin: str, tmp_path: Path
) -> None:
    with pytest.raises(TlzooError, match=f"tl pretrain --plugin {plugin}.*--no-pretrained"):
        _make(plugin)  # pretrained by default, and no package ships these weights
    with pytest.raises(TlzooError, match="tl pretrain"):
        _make(plugin, weights=str(tmp_path))  # an empty folder
    other = "ulmfit" if plugin == "elmo" else "elmo"
    with pytest.raises(TlzooError, match=f"not {plugin}"):
        _make(plugin, weights=str(pretrained[other]))


def test_cli_run_without_weights_is_a_one_line_error(run_cli: Any, text_csv: Path, tmp_path: Path) -> None:
    res = run_cli("run", "--plugin", "elmo", "--data", text_csv, "--out", tmp_path / "r")
    assert res.exit_code == 2
    assert "tl pretrain --plugin elmo" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize("plugin", ["elmo", "ulmfit"])
def test_contract_checks_pass(pretrained: dict[str, Path], plugin: str) -> None:
    from tlzoo.testing import check_backbone, tiny_texts

    check_backbone(_make(plugin, weights=str(pretrained[plugin]), max_length=24), tiny_texts())
    check_backbone(_make(plugin, pretrained=False, max_length=24), tiny_texts())


def test_ulmfit_strategy_contract_and_plan() -> None:
    from tlzoo.engine.config import TrainConfig
    from tlzoo.plugins.heads.fc import FCHead
    from tlzoo.plugins.text.ulmfit import UlmfitStrategy
    from tlzoo.testing import check_strategy

    check_strategy(UlmfitStrategy())
    plan = UlmfitStrategy().plan(FCHead(), TrainConfig(head_epochs=1, epochs=2))
    assert [p.train_groups for p in plan.phases] == [0, 1, 2, 3, -1]
    assert all(p.schedule == "slanted" for p in plan.phases)
    assert all(abs(p.lr_decay - 1 / 2.6) < 1e-9 for p in plan.phases[1:])
    assert plan.phases[-1].epochs == 2


def test_elmo_scalar_mix_weights_the_layers() -> None:
    bb = _make("elmo", pretrained=False, max_length=16, pooling="mean").eval()
    batch = bb.collate([bb.transform("a fine film", False)])
    layers, _, _ = bb.bilm.run(batch["chars"], batch["lengths"])
    assert len(layers) == 3 and all(h.shape == layers[0].shape for h in layers)
    with torch.no_grad():
        bb.mix.scalars.copy_(torch.tensor([-30.0, 30.0, -30.0]))  # all weight on LSTM layer 1
        bb.mix.gamma.fill_(2.0)
        out = bb(batch)
    expected = 2.0 * layers[1].mean(1)
    assert torch.allclose(out, expected, atol=1e-4)
    assert bb.layer_groups()[-1] is bb.mix and bb.layer_groups()[0] is bb.bilm.chars


def test_lm_finetuning_sees_training_texts_only() -> None:
    """The ulmfit strategy works through StrategyContext and the LanguageModelBackbone protocol."""
    from tlzoo.api.interfaces import Dataset, LanguageModelBackbone, Plan, StrategyContext
    from tlzoo.plugins.text.ulmfit import UlmfitStrategy

    seen: dict[str, Any] = {}

    class Recorder:  # structurally a language model: it has finetune_language_model
        name = "ulmfit"

        def finetune_language_model(self, texts: list[str], val_texts: list[str], **kw: Any) -> list[dict[str, Any]]:
            seen.update(texts=texts, val=val_texts)
            kw["on_epoch"]({"phase": "lm-finetune", "epoch": 1, "train_loss": 5.0, "not_a_column": 1})
            return []

    class NotALanguageModel:
        name = "resnet18"

    def texts(*items: str) -> Dataset:
        return Dataset(examples=list(items), labels=["a"] * len(items), modality="text")

    rows: list[dict[str, Any]] = []

    def context(backbone: Any) -> StrategyContext:
        return StrategyContext(
            backbone=backbone,
            head=None,
            plan=Plan([], False),  # type: ignore[arg-type]
            train_set=texts("train a", "train b"),
            val_set=texts("val a"),
            train=SimpleNamespace(lm_epochs=1, lr=1e-3, batch_size=4),
            seed=0,
            device=torch.device("cpu"),
            log=lambda m: None,
            record=rows.append,
            assets=None,
        )

    assert isinstance(Recorder(), LanguageModelBackbone) and not isinstance(NotALanguageModel(), LanguageModelBackbone)
    UlmfitStrategy().before_training(context(Recorder()))
    assert seen["texts"] == ["train a", "train b"] and seen["val"] == ["val a"]
    assert not hasattr(context(Recorder()), "splits")  # a context holds no test split
    assert rows == [{"phase": "lm-finetune", "epoch": 1, "train_loss": 5.0}]
    with pytest.raises(TlzooError, match="needs a language-model backbone .* not resnet18"):
        UlmfitStrategy().before_training(context(NotALanguageModel()))


def test_ulmfit_run_three_stages_in_history_then_predict(
    pretrained: dict[str, Path], text_csv: Path, tmp_path: Path
) -> None:
    from tlzoo import Engine, RunConfig

    cfg = RunConfig()
    cfg.data.path, cfg.data.limit = str(text_csv), 60
    import shutil

    weights = tmp_path / "weights"
    shutil.copytree(pretrained["ulmfit"], weights)
    cfg.model.plugin, cfg.model.weights, cfg.model.max_length = "ulmfit", str(weights), 32
    for k, v in {
        "train.strategy": "ulmfit",
        "train.lm_epochs": 2,
        "train.head_epochs": 1,
        "train.epochs": 1,
        "train.batch_size": 16,
    }.items():
        cfg.set(k, v)
    cfg.out, cfg.progress = str(tmp_path / "run"), False
    before = _make("ulmfit", weights=str(pretrained["ulmfit"])).state_dict()["lm.embedding.weight"].clone()
    res = Engine(log=None).run(cfg)
    rows = list(csv.DictReader((res.run_dir / "history.csv").open()))
    phases = [r["phase"] for r in rows]
    assert phases == ["lm-finetune", "lm-finetune", "head", "unfreeze-1", "unfreeze-2", "unfreeze-3", "unfreeze-all"]
    assert 0 <= res.accuracy <= 1
    from tlzoo.commands.predict import Predictor

    shutil.rmtree(weights)  # the run keeps its own copy of the pretrained folder in assets/
    pred = Predictor.load(res.run_dir)
    # the saved, fine-tuned backbone (not the pretrained one) is what predicts
    assert not torch.equal(pred.backbone.state_dict()["lm.embedding.weight"], before)
    out = pred.predict(["a delight", "dull and long"])
    assert len(out) == 2 and abs(sum(out[0]["probabilities"].values()) - 1) < 1e-5


def test_elmo_scratch_fine_tune_through_the_cli(run_cli: Any, text_csv: Path, tmp_path: Path) -> None:
    res = run_cli(
        "run",
        "--plugin",
        "elmo",
        "--no-pretrained",
        "--data",
        text_csv,
        "--limit",
        60,
        "--strategy",
        "fine-tune",
        "--set",
        "train.head_epochs=1",
        "--set",
        "train.epochs=1",
        "--set",
        "model.max_length=24",
        "--out",
        tmp_path / "r",
        "--quiet",
    )
    assert res.exit_code == 0, res
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["run"]["plugin"] == "elmo" and metrics["run"]["weights"].startswith("random init")
    phases = {r["phase"] for r in csv.DictReader((tmp_path / "r" / "history.csv").open())}
    assert phases == {"head", "fine-tune"}


def test_tl_pretrain_cli_then_list(run_cli: Any, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS[:12]))
    res = run_cli(
        "pretrain",
        "--plugin",
        "ulmfit",
        "--corpus",
        corpus,
        "--out",
        tmp_path / "w",
        "--epochs",
        1,
        "--set",
        "emb=8",
        "--set",
        "hidden=8",
        "--set",
        "layers=1",
        "--set",
        "bptt=8",
        "--quiet",
    )
    assert res.exit_code == 0, res
    assert (tmp_path / "w" / "model.safetensors").is_file()
    bad = run_cli("pretrain", "--plugin", "ulmfit", "--corpus", corpus, "--out", tmp_path / "w2", "--set", "hiden=8")
    assert bad.exit_code == 2 and "hidden" in bad.output
    listed = run_cli("list", "--modality", "text", "--json")
    names = {e["name"] for e in json.loads(listed.stdout)}
    assert {"elmo", "ulmfit"} <= names
