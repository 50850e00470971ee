"""The text zoo: tokenizer/vocabulary, corpora, `tl pretrain`, static vectors, the MLM transformer, text data.

Everything trains on tiny corpora in seconds; the packaged GloVe and MiniLM runs are
marked ``transfer``.  The contract kit runs over these backbones in test_contracts.py.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import BackboneRequest, DataOptions
from tlzoo.lib.text.vocab import PAD, UNK, Vocab, tokenize
from tlzoo.testing import check_backbone, tiny_texts

WORDS = {
    "good": "great funny charming clever moving beautiful smart fun".split(),
    "bad": "dull boring stupid ugly slow worst bad tedious".split(),
}
FILLER = "the a film movie is was and it this with of story".split()


def _corpus(n: int = 160, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        label = "good" if i % 2 else "bad"
        words = rng.sample(WORDS[label], 3) + rng.sample(FILLER, 5)
        rng.shuffle(words)
        texts.append(" ".join(words) + ".")
        labels.append(label)
    return texts, labels


@pytest.fixture(scope="module")
def zoo() -> Any:
    from tlzoo.engine.zoo import Zoo

    return Zoo()


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(_corpus()[0]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reviews_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Labelled CSV whose columns are NOT called text/label."""
    path = tmp_path_factory.mktemp("reviews") / "reviews.csv"
    texts, labels = _corpus(120, seed=1)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["review", "sentiment", "id"])
        w.writerows([t, lab, i] for i, (t, lab) in enumerate(zip(texts, labels)))
    return path


@pytest.fixture(scope="module")
def w2v_dir(tmp_path_factory: pytest.TempPathFactory, corpus_file: Path, zoo: Any) -> Path:
    from tlzoo.commands.pretraining import pretrain

    out = tmp_path_factory.mktemp("w2v") / "w2v"
    pretrain("word2vec", str(corpus_file), out, {"dim": 16, "min_count": 1, "window": 3}, epochs=3, zoo=zoo, log=None)
    return out


@pytest.fixture(scope="module")
def ft_dir(tmp_path_factory: pytest.TempPathFactory, corpus_file: Path, zoo: Any) -> Path:
    from tlzoo.commands.pretraining import pretrain

    out = tmp_path_factory.mktemp("ft") / "ft"
    pretrain(
        "fasttext", str(corpus_file), out, {"dim": 16, "min_count": 1, "bucket": 5000}, epochs=3, zoo=zoo, log=None
    )
    return out


# ----------------------------------------------------------------------------- tokenizer, vocabulary
def test_tokenize_lowercases_and_keeps_compounds() -> None:
    assert tokenize("Don't miss it -- a well-made, FUNNY film!") == [
        "don't",
        "miss",
        "it",
        "-",
        "-",
        "a",
        "well-made",
        ",",
        "funny",
        "film",
        "!",
    ]
    assert tokenize("") == [] and tokenize(None) == []


def test_vocab_frequency_order_roundtrip_and_unknowns(tmp_path: Path) -> None:
    v = Vocab.build(["b a a", "c b a"], max_size=4)
    assert v.itos == [PAD, UNK, "a", "b"]  # by frequency, then capped; 'c' did not fit
    assert v.encode("a c zzz b") == [2, v.unk_id, v.unk_id, 3]
    assert v.encode("a a a", max_length=2) == [2, 2]
    v.save(tmp_path / "v.json")
    again = Vocab.load(tmp_path / "v.json")
    assert again.itos == v.itos and again.encode("b a") == v.encode("b a")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(TlzooError, match="not a tlzoo vocabulary"):
        Vocab.load(tmp_path / "bad.json")


# ----------------------------------------------------------------------------- corpus
def test_read_corpus_from_txt_folder_csv_and_dataset(tmp_path: Path, zoo: Any) -> None:
    from tlzoo.engine.corpus import CorpusOptions, read_corpus

    (tmp_path / "a.txt").write_text("first line\n\n  second line \n", encoding="utf-8")
    assert read_corpus(str(tmp_path / "a.txt")) == ["first line", "second line"]
    docs = tmp_path / "docs" / "pos"
    docs.mkdir(parents=True)
    (docs / "1.txt").write_text("one whole\ndocument", encoding="utf-8")
    (docs / "2.txt").write_text("   ", encoding="utf-8")  # empty texts are dropped from a corpus
    assert read_corpus(str(tmp_path / "docs")) == ["one whole\ndocument"]
    table = tmp_path / "t.csv"
    table.write_text("body,other\nhello there,1\n,2\n", encoding="utf-8")
    assert read_corpus(str(table), CorpusOptions(text_column="body")) == ["hello there"]
    with pytest.raises(TlzooError, match="no column 'text'.*--text-column"):
        read_corpus(str(table))
    train = read_corpus("rotten-tomatoes", CorpusOptions(split="train", limit=300), zoo)
    every = read_corpus("rotten-tomatoes", CorpusOptions(limit=300), zoo)
    assert len(train) == 210 and len(every) == 300 and set(train) <= set(every)


def test_read_corpus_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    from tlzoo.engine.corpus import read_corpus

    bad = tmp_path / "latin.txt"
    bad.write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1"))
    with pytest.raises(TlzooError, match=r"latin\.txt' is not valid utf-8.*--encoding"):
        read_corpus(str(bad))
    from tlzoo.engine.corpus import CorpusOptions

    assert read_corpus(str(bad), CorpusOptions(encoding="latin-1")) == ["café crème"]
    with pytest.raises(TlzooError, match="does not exist"):
        read_corpus(str(tmp_path / "missing.txt"))


# ----------------------------------------------------------------------------- tl pretrain
def test_pretrain_word2vec_writes_vectors_description_and_curve(w2v_dir: Path) -> None:
    for name in (
        "vectors.safetensors",
        "vectors.vec",
        "vocab.json",
        "vectors.json",
        "pretraining.json",
        "pretraining_history.csv",
        "pretraining_curve.png",
    ):
        assert (w2v_dir / name).is_file(), name
    desc = json.loads((w2v_dir / "pretraining.json").read_text())
    assert desc["plugin"] == "word2vec" and desc["n_texts"] == 160 and len(desc["history"]) == 3
    losses = [r["train_loss"] for r in desc["history"]]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]  # it learned something
    assert (w2v_dir / "pretraining_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not Path(str(w2v_dir) + ".incomplete").exists()


def test_pretrained_word2vec_neighbours_reflect_the_corpus(w2v_dir: Path) -> None:
    from tlzoo.lib.text.vector_files import load_vectors

    kv = load_vectors(str(w2v_dir), "word2vec").kv
    good, bad = WORDS["good"], WORDS["bad"]
    # words that share contexts (the same label's texts) end up closer than words that never co-occur
    same = np.mean([kv.similarity(a, b) for a in good[:4] for b in good[4:]])
    other = np.mean([kv.similarity(a, b) for a in good[:4] for b in bad[4:]])
    assert same > other


def test_tl_pretrain_cli_and_its_errors(run_cli: Any, corpus_file: Path, tmp_path: Path) -> None:
    res = run_cli(
        "pretrain",
        "--plugin",
        "word2vec",
        "--corpus",
        corpus_file,
        "--out",
        tmp_path / "o",
        "--epochs",
        1,
        "--set",
        "dim=8",
        "--set",
        "min_count=1",
        "--limit",
        50,
        "--json",
    )
    assert res.exit_code == 0, res
    summary = json.loads(res.stdout)
    assert summary["n_texts"] == 50 and summary["options"]["dim"] == 8
    res = run_cli("pretrain", "--plugin", "word2vec", "--corpus", corpus_file, "--out", tmp_path / "o")
    assert res.exit_code == 2 and "already exists" in res.stderr
    res = run_cli("pretrain", "--plugin", "word2vex", "--corpus", corpus_file, "--out", tmp_path / "p")
    assert res.exit_code == 2 and "word2vec" in res.stderr  # did you mean
    res = run_cli(
        "pretrain", "--plugin", "fasttext", "--corpus", corpus_file, "--out", tmp_path / "q", "--set", "dims=3"
    )
    assert res.exit_code == 2 and "Unknown option 'dims'" in res.stderr and "dim" in res.stderr
    assert not (tmp_path / "q").exists() and not (tmp_path / "q.incomplete").exists()


# ----------------------------------------------------------------------------- static vectors
def _backbone(zoo: Any, plugin: str, weights: Path | None, **options: Any) -> Any:
    factory = zoo.backbones.get(plugin)
    b = factory.create(
        BackboneRequest(model=factory.default_model, weights=str(weights) if weights else None, options=options)
    )
    b.plugin = plugin
    return b


def _features(backbone: Any, texts: list[str]) -> torch.Tensor:
    backbone.eval()
    with torch.no_grad():
        return backbone(backbone.collate([backbone.transform(t, False) for t in texts]))


def test_feature_extraction_is_the_pooled_word_vectors(zoo: Any, w2v_dir: Path) -> None:
    from tlzoo.lib.text.vector_files import load_vectors

    kv = load_vectors(str(w2v_dir), "word2vec").kv
    b = _backbone(zoo, "word2vec", w2v_dir)
    assert b.encoder is None and b.num_features == 16
    out = _features(b, ["funny film", "zzzqqq funny film", ""])
    expected = (kv["funny"] + kv["film"]) / 2
    assert torch.allclose(out[0], torch.from_numpy(expected), atol=1e-5)
    assert torch.allclose(out[1], out[0], atol=1e-5)  # an unknown word is skipped, not averaged in as zeros
    assert torch.equal(out[2], torch.zeros(16))  # an empty text is a zero vector, not NaN
    mx = _features(_backbone(zoo, "word2vec", w2v_dir, pooling="max"), ["funny film"])[0]
    assert torch.allclose(mx, torch.from_numpy(np.maximum(kv["funny"], kv["film"])), atol=1e-5)
    sif = _features(_backbone(zoo, "word2vec", w2v_dir, pooling="sif"), ["funny film", "the film"])
    assert torch.isfinite(sif).all() and not torch.allclose(sif[0], out[0])


def test_fasttext_builds_unseen_words_from_subwords_word2vec_does_not(zoo: Any, w2v_dir: Path, ft_dir: Path) -> None:
    ft = _backbone(zoo, "fasttext", ft_dir)
    w2v = _backbone(zoo, "word2vec", w2v_dir)
    unseen = ["funnyish charmingly"]
    assert ft.transform(unseen[0], False)["extra"], "fastText gives unseen words a sub-word vector"
    assert _features(ft, unseen).abs().sum() > 0
    assert not w2v.transform(unseen[0], False)["extra"] and _features(w2v, unseen).abs().sum() == 0
    r_ft, r_w2v = ft.oov_report(unseen + ["funny film"]), w2v.oov_report(unseen + ["funny film"])
    assert r_ft["oov_rate"] == r_w2v["oov_rate"] == 0.5
    assert r_ft["unk_rate"] == 0.0 and r_w2v["unk_rate"] == 0.5


def test_compound_fallback_and_vocab_rows(zoo: Any, w2v_dir: Path) -> None:
    b = _backbone(zoo, "word2vec", w2v_dir, vocab_size=5)
    assert b.vocab_rows == 5 and b.embedding.num_embeddings == 7
    item = b.transform("funny-boring", False)  # not a word of the vectors: mean of its two parts
    assert item["ids"] == [1] and len(item["extra"]) == 1
    kv = b.vectors.kv
    assert np.allclose(item["extra"][0][1], (kv["funny"] + kv["boring"]) / 2, atol=1e-6)
    with pytest.raises(TlzooError, match="Unknown option model.options.hiden.*hidden"):
        _backbone(zoo, "word2vec", w2v_dir, hiden=3)


def test_fine_tune_form_layer_groups_and_contract(zoo: Any, ft_dir: Path) -> None:
    b = _backbone(zoo, "fasttext", ft_dir, train_backbone=True, hidden=8)
    groups = b.layer_groups()
    assert len(groups) == 2 and groups[0] is b.embedding
    assert b.num_features == 16 + 16  # pooled vectors + BiLSTM max-pooled states
    check_backbone(b, tiny_texts(4) + [""])


def test_word2vec_without_vectors_says_how_to_get_them(zoo: Any) -> None:
    with pytest.raises(TlzooError, match="tl pretrain --plugin word2vec"):
        zoo.backbones.get("word2vec").create(BackboneRequest(model="word2vec"))
    with pytest.raises(TlzooError, match="does not exist"):
        zoo.backbones.get("glove").create(BackboneRequest(model="glove-6B-50d", weights="/no/such/file.txt"))


def test_glove_text_file_and_word2vec_binary_load(zoo: Any, w2v_dir: Path, tmp_path: Path) -> None:
    from tlzoo.lib.text.vector_files import load_vectors

    kv = load_vectors(str(w2v_dir), "word2vec").kv
    glove_txt = tmp_path / "g.txt"  # GloVe format: no header line
    with glove_txt.open("w") as f:
        for w in kv.index_to_key[:20]:
            f.write(w + " " + " ".join(f"{x:.6f}" for x in kv[w]) + "\n")
    b = _backbone(zoo, "glove", glove_txt)
    assert b.vocab_rows == 20 and "glove-text" in b.weights_source
    kv.save_word2vec_format(str(tmp_path / "w.bin"), binary=True)
    b2 = _backbone(zoo, "word2vec", tmp_path / "w.bin")
    assert "word2vec-bin" in b2.weights_source and b2.vocab_rows == len(kv.index_to_key)
    assert torch.allclose(_features(b, ["the film"]), _features(b2, ["the film"]), atol=1e-4)


def test_run_word2vec_fine_tune_end_to_end_reports_oov_and_predicts(
    zoo: Any, w2v_dir: Path, reviews_csv: Path, tmp_path: Path
) -> None:
    from tlzoo.commands.predict import Predictor
    from tlzoo.engine.config import RunConfig
    from tlzoo.facade import Engine

    cfg = RunConfig()
    for key, value in {
        "model.plugin": "word2vec",
        "model.weights": str(w2v_dir),
        "data.path": str(reviews_csv),
        "data.text_column": "review",
        "data.label_column": "sentiment",
        "train.strategy": "fine-tune",
        "train.head_epochs": 1,
        "train.epochs": 1,
        "train.finetune_lr": 3e-3,
        "model.options.encoder": "cnn",
        "model.options.filters": 8,
        "out": str(tmp_path / "run"),
    }.items():
        cfg.set(key, value)
    cfg.progress = False
    logs: list[str] = []
    result = Engine(zoo, log=logs.append).run(cfg)
    assert any("out-of-vocabulary" in m for m in logs)
    assert "oov" in result.metrics and 0 <= result.metrics["oov"]["oov_rate"] < 0.2
    rows = Predictor.load(result.run_dir, zoo).predict(["a funny and charming film", ""])
    assert len(rows) == 2 and {r["label"] for r in rows} <= {"good", "bad"}


# ----------------------------------------------------------------------------- mini transformer
@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory: pytest.TempPathFactory, corpus_file: Path, zoo: Any) -> Path:
    from tlzoo.commands.pretraining import pretrain

    out = tmp_path_factory.mktemp("mlm") / "mlm"
    pretrain(
        "transformer",
        str(corpus_file),
        out,
        {"dim": 16, "layers": 2, "heads": 2, "ff": 32, "min_freq": 1, "max_length": 16, "lr": 3e-3},
        epochs=3,
        zoo=zoo,
        log=None,
    )
    return out


def test_mlm_pretraining_learns_and_transfers(mlm_dir: Path, zoo: Any) -> None:
    from safetensors.torch import load_file

    desc = json.loads((mlm_dir / "pretraining.json").read_text())
    hist = desc["history"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    assert all(k in hist[0] for k in ("val_loss", "val_perplexity", "train_perplexity"))
    assert (mlm_dir / "pretraining_curve.png").is_file()
    b = _backbone(zoo, "transformer", mlm_dir)
    saved = load_file(str(mlm_dir / "model.safetensors"))
    assert torch.equal(b.encoder.embeddings["tokens"].weight, saved["encoder.embeddings.tokens.weight"])
    assert len(b.layer_groups()) == 3 and b.num_features == 16  # embeddings + 2 layers
    check_backbone(b)
    with pytest.raises(TlzooError, match="tl pretrain --plugin transformer"):
        zoo.backbones.get("transformer").create(BackboneRequest(model="mini-transformer"))


def test_mlm_folders_of_0_1_still_load(mlm_dir: Path, zoo: Any, tmp_path: Path) -> None:
    """0.1 wrote config.json instead of description.json: such a folder gives the same backbone."""
    import shutil

    old = tmp_path / "old"
    old.mkdir()
    for name in ("model.safetensors", "vocab.json"):
        shutil.copy2(mlm_dir / name, old / name)
    config = json.loads((mlm_dir / "description.json").read_text())["config"]
    arch = {k: config[k] for k in ("dim", "layers", "heads", "ff", "max_length", "dropout")}
    vocab_size = len(json.loads((mlm_dir / "vocab.json").read_text())["tokens"]) + 4
    (old / "config.json").write_text(
        json.dumps({"format": "tlzoo-mini-transformer", "version": 1, "vocab_size": vocab_size, **arch})
    )
    new, legacy = _backbone(zoo, "transformer", mlm_dir), _backbone(zoo, "transformer", old)
    texts = ["a funny and charming film", "", "dull"]
    new.eval(), legacy.eval()
    with torch.no_grad():
        a = new(new.collate([new.transform(t, False) for t in texts]))
        b = legacy(legacy.collate([legacy.transform(t, False) for t in texts]))
    assert torch.equal(a, b)


def test_text_plugins_declare_options_as_defaults(zoo: Any) -> None:
    """Pretrainers and backbone factories answer defaults() (what --set takes), JSON-able, one shape."""
    for name in ("word2vec", "fasttext", "transformer", "elmo", "ulmfit"):
        options = zoo.pretrainers.get(name).defaults()
        assert {"epochs", "seed"} <= set(options) and json.loads(json.dumps(options)) == options, name
    assert zoo.backbones.get("bert").defaults() == {"truncation": "head", "runtime": "torch"}
    assert zoo.backbones.get("glove").defaults()["encoder"] == "bilstm"
    mini = zoo.backbones.get("transformer").defaults()
    assert mini["vocab_size"] == 20000 and "max_length" not in mini  # --max-length is the engine's


# ----------------------------------------------------------------------------- text data
def test_text_folder_source_labels_encoding_and_empty_files(tmp_path: Path, zoo: Any) -> None:
    from tlzoo.plugins.data.files import TextFolderSource

    for label, texts in {"pos": ["great fun", ""], "neg": ["dull", "boring"]}.items():
        (tmp_path / label).mkdir()
        for i, t in enumerate(texts):
            (tmp_path / label / f"{i}.txt").write_text(t, encoding="utf-8")
    source = zoo.data_source_for(str(tmp_path), "text")
    assert isinstance(source, TextFolderSource)
    ds = source.load(str(tmp_path), DataOptions())
    assert sorted(zip(ds.labels, ds.examples)) == [
        ("neg", "boring"),
        ("neg", "dull"),
        ("pos", ""),
        ("pos", "great fun"),
    ]
    (tmp_path / "neg" / "bad.txt").write_bytes(b"na\xefve")
    with pytest.raises(TlzooError, match=r"bad\.txt' is not valid utf-8.*--encoding"):
        source.load(str(tmp_path), DataOptions())
    assert "naïve" in source.load(str(tmp_path), DataOptions(encoding="latin-1")).examples


def test_saved_hugging_face_dataset_and_offline_hub_error(tmp_path: Path, zoo: Any) -> None:
    import datasets

    d = datasets.Dataset.from_dict(
        {"sentence": ["good", "bad", "fine", "awful"], "label": [1, 0, 1, 0]},
        features=datasets.Features(
            {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
        ),
    )
    datasets.DatasetDict({"train": d, "test": d.select([0, 1])}).save_to_disk(str(tmp_path / "saved"))
    source = zoo.data_source_for(str(tmp_path / "saved"), "text")
    ds = source.load(str(tmp_path / "saved"), DataOptions(text_column="sentence"))
    assert len(ds) == 6 and ds.labels[:2] == ["pos", "neg"]  # ClassLabel ids -> names; every split used
    with pytest.raises(TlzooError, match="no column 'text'.*--text-column"):
        source.load(str(tmp_path / "saved"), DataOptions())
    with pytest.raises(TlzooError, match="Could not load Hugging Face dataset.*save_to_disk"):
        zoo.data_source_for("hf:surely_not_a_dataset_xyz", "text").load("hf:surely_not_a_dataset_xyz", DataOptions())


# ----------------------------------------------------------------------------- real packaged weights
@pytest.mark.transfer
def test_glove_and_bert_with_renamed_columns(run_cli: Any, reviews_csv: Path, tmp_path: Path) -> None:
    for plugin in ("glove", "bert"):
        res = run_cli(
            "run",
            "--plugin",
            plugin,
            "--data",
            reviews_csv,
            "--text-column",
            "review",
            "--label-column",
            "sentiment",
            "--epochs",
            20,
            "--out",
            tmp_path / plugin,
            "--json",
            "-q",
        )
        assert res.exit_code == 0, res
        metrics = json.loads(res.stdout)
        assert metrics["test"]["accuracy"] >= 0.8, (plugin, metrics["test"])  # 3 sentiment words per text
        if plugin == "glove":
            assert metrics["oov"]["oov_rate"] == 0.0  # every word of these texts is in GloVe 6B


@pytest.mark.transfer
def test_packaged_glove_analogy() -> None:
    from tlzoo.lib.text.vector_files import load_vectors

    kv = load_vectors(None, "glove").kv
    assert len(kv.index_to_key) == 400000 and kv.vector_size == 50
    assert kv.most_similar(positive=["king", "woman"], negative=["man"], topn=1)[0][0] == "queen"


# ----------------------------------------------------------------------------- bert
def test_bert_truncation_side_layer_groups_and_options(zoo: Any, word_bert_dir: Path) -> None:
    def make(pooling: str = "", **options: Any) -> Any:
        return zoo.backbones.get("bert").create(
            BackboneRequest(model="tiny", weights=str(word_bert_dir), max_length=4, pooling=pooling, options=options)
        )

    text = "funny drama love life moving"
    head, tail = make(), make(truncation="tail")
    tok = head.tokenizer
    assert tok.convert_ids_to_tokens(head.collate([text])["input_ids"][0]) == ["[CLS]", "funny", "drama", "[SEP]"]
    assert tok.convert_ids_to_tokens(tail.collate([text])["input_ids"][0]) == ["[CLS]", "life", "moving", "[SEP]"]
    assert head.preprocessing() != tail.preprocessing()  # different features, different cache keys
    groups = head.layer_groups()
    assert len(groups) == 1 + 2 and groups[0] is head.encoder.embeddings  # embeddings, layer 0, layer 1
    assert len(make(pooling="pooler").layer_groups()) == 4  # ... and the pooler on top
    with pytest.raises(TlzooError, match="Unknown option model.options.encoder for bert"):
        make(encoder="cnn")
    with pytest.raises(TlzooError, match="Unknown truncation 'middle'"):
        make(truncation="middle")


def test_text_catalogue_names_every_text_plugin(run_cli: Any) -> None:
    res = run_cli("list", "--modality", "text", "--json")
    assert res.exit_code == 0, res
    plugins = {e["plugin"] for e in json.loads(res.stdout)}
    assert {"bert", "transformer", "glove", "word2vec", "fasttext", "elmo", "ulmfit"} <= plugins
