"""No code runs from any file tlzoo reads (issue 8, items 1-3).

A crafted pickle whose ``__reduce__`` creates a marker file is planted at every path
tlzoo reads: ``--weights`` files and folders, ``tl compare``, a run directory's
``model.json`` / ``model.safetensors`` / assets, a feature-cache shard and a resume
checkpoint.  The marker must never appear, and every command must refuse with one
``Error:`` line (exit 2, no traceback).  The safe formats that replace the pickles are
checked too: ``tl pretrain`` writes no pickle, the rebuilt fastText vectors equal
gensim's (unseen words included), and a run trained on those vectors predicts what its
predictions.csv says.
"""

from __future__ import annotations

import csv
import json
import pickle
import random
import shutil
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import one_line_error

from tlzoo.api.errors import TlzooError

TOPICS = {
    "action": "action fast slow world director cast man long".split(),
    "comedy": "funny comedy fun smart clever charming stupid dull".split(),
    "drama": "drama love life moving beautiful family woman young".split(),
}
FILLER = "the a of and is it this that was with".split()


class Evil:
    """Unpickling this calls ``open(marker, 'w')``: the marker file appears iff a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.marker, "w"))


def plant(path: Path, marker: Path, how: str = "pickle") -> Path:
    """Write the evil object to ``path``: a plain pickle (protocol 4 or 2), a protocol-0 pickle or torch.save's zip."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "torch":
        torch.save(Evil(marker), str(path))
    else:
        path.write_bytes(pickle.dumps(Evil(marker), protocol={"pickle": 4, "p2": 2, "p0": 0}[how]))
    return path


def refused(res: Any, fragment: str = "") -> str:
    return one_line_error(res, fragment)


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    m = tmp_path / "PWNED"
    yield m
    assert not m.exists(), "a pickle was loaded: its __reduce__ ran"


# --------------------------------------------------------------------------- shared inputs
@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 short texts in three topics, as id,text,label."""
    rng = random.Random(3)
    path = tmp_path_factory.mktemp("sec-data") / "topics.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "label"])
        for i in range(40):
            for label, words in TOPICS.items():
                text = rng.sample(words, 3) + rng.sample(FILLER, 3)
                rng.shuffle(text)
                w.writerow([f"{label}-{i}", " ".join(text), label])
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, labelled: Path) -> Path:
    path = tmp_path_factory.mktemp("sec-corpus") / "corpus.txt"
    with labelled.open() as f:
        path.write_text("\n".join(row["text"] for row in csv.DictReader(f)) + "\n")
    return path


def _cli(*args: Any) -> Any:
    from click.testing import CliRunner

    from tlzoo.cli import cli

    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)
    assert res.exit_code == 0, (res.stdout[-500:], res.stderr[-1500:])
    return res


def _pretrain(factory: pytest.TempPathFactory, corpus: Path, plugin: str, *settings: str) -> Path:
    """Small vectors pretrained by `tl pretrain --plugin PLUGIN` on the corpus."""
    out = factory.mktemp(f"sec-{plugin}") / plugin
    sets = [a for s in ("dim=12", "min_count=1", *settings) for a in ("--set", s)]
    _cli("pretrain", "--plugin", plugin, "--corpus", corpus, "--out", out, "--epochs", 2, *sets)
    return out


@pytest.fixture(scope="module")
def w2v(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Path:
    return _pretrain(tmp_path_factory, corpus, "word2vec")


@pytest.fixture(scope="module")
def ft(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Path:
    return _pretrain(tmp_path_factory, corpus, "fasttext", "bucket=2000")


@pytest.fixture(scope="module")
def w2v_run(tmp_path_factory: pytest.TempPathFactory, w2v: Path, labelled: Path) -> Path:
    """A finished word2vec run (feature extraction, logreg) on ``--weights w2v``."""
    out = tmp_path_factory.mktemp("sec-run") / "run"
    _cli("run", "-q", "--plugin", "word2vec", "--weights", w2v, "--data", labelled, "--head", "logreg", "--out", out)
    return out


def _copy_run(run: Path, dst: Path, edit: Any = None) -> Path:
    shutil.copytree(run, dst, symlinks=True)
    if edit is not None:
        desc = json.loads((dst / "model.json").read_text())
        edit(desc)
        (dst / "model.json").write_text(json.dumps(desc))
    return dst


def _is_pickle_or_zip(path: Path) -> bool:
    head = path.read_bytes()[:4]
    return (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5) or head[:2] == b"PK"


# --------------------------------------------------------------------------- the safe formats
def test_pretrain_writes_no_pickle_and_describes_the_arrays(w2v: Path, ft: Path) -> None:
    for folder in (w2v, ft):
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        assert not [p for p in files if _is_pickle_or_zip(p)], files
        assert not [p for p in files if p.suffix in (".kv", ".model", ".pkl", ".npy")], files
        assert {"vectors.safetensors", "vocab.json", "vectors.json", "vectors.vec"} <= {p.name for p in files}
    desc = json.loads((ft / "vectors.json").read_text())
    assert desc["file"] == "vectors.safetensors" and desc["subwords"] is True
    assert (desc["min_n"], desc["max_n"], desc["bucket"], desc["dim"]) == (3, 6, 2000, 12)
    vocab = json.loads((w2v / "vocab.json").read_text())
    assert len(vocab["words"]) == len(vocab["counts"]) == json.loads((w2v / "vectors.json").read_text())["vocabulary"]
    assert vocab["counts"] == sorted(vocab["counts"], reverse=True)  # most frequent first


@pytest.mark.parametrize("fasttext", [True, False])
def test_saved_vectors_rebuild_exactly_what_gensim_computed(tmp_path: Path, corpus: Path, fasttext: bool) -> None:
    from gensim.models import FastText, Word2Vec

    from tlzoo.lib.text.vector_files import load_vectors, save_vectors
    from tlzoo.lib.text.vocab import tokenize

    sentences = [tokenize(line) for line in corpus.read_text().splitlines()]
    common = dict(vector_size=10, min_count=2, seed=1, workers=1, epochs=2)
    model = FastText(sentences, min_n=2, max_n=4, bucket=3000, **common) if fasttext else Word2Vec(sentences, **common)
    save_vectors(model.wv, tmp_path / "v", "fasttext" if fasttext else "word2vec")
    loaded = load_vectors(str(tmp_path / "v"), "x")
    kv = loaded.kv
    assert type(kv).__name__ == type(model.wv).__name__ and loaded.subwords == fasttext
    assert kv.index_to_key == model.wv.index_to_key
    assert np.array_equal(kv.vectors, model.wv.vectors)
    assert loaded.counts == [model.wv.get_vecattr(w, "count") for w in model.wv.index_to_key]
    if fasttext:
        for unseen in ("funnyish", "dramatically", "zq", "moviegoers"):  # built from character n-grams
            assert unseen not in model.wv.key_to_index
            assert np.array_equal(kv.get_vector(unseen), model.wv.get_vector(unseen)), unseen
        assert np.array_equal(kv.vectors_ngrams, model.wv.vectors_ngrams)
        assert (kv.min_n, kv.max_n, kv.bucket) == (2, 4, 3000)
    assert np.allclose(kv.most_similar("funny", topn=3)[0][1], model.wv.most_similar("funny", topn=3)[0][1])


def test_run_on_pretrained_folder_keeps_a_copy_and_predict_agrees(
    w2v_run: Path, w2v: Path, labelled: Path, tmp_path: Path, run_cli: Any
) -> None:
    desc = json.loads((w2v_run / "model.json").read_text())
    assert desc["backbone"]["weights_copy"] == "assets/vectors"
    assert not [p for p in w2v_run.rglob("*") if p.is_file() and _is_pickle_or_zip(p)]
    texts = {}
    with labelled.open() as f:
        for row in csv.DictReader(f):
            texts[row["id"]] = row["text"]
    with (w2v_run / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows
    classes = [k[2:] for k in rows[0] if k.startswith("p_")]
    # predict from a copy of the run, in a folder of its own, after the original vectors are gone
    moved = _copy_run(w2v_run, tmp_path / "elsewhere" / "run")
    hidden = tmp_path / "hidden"
    shutil.copytree(w2v, hidden)
    shutil.rmtree(w2v)
    try:
        inputs = tmp_path / "inputs.txt"
        inputs.write_text("\n".join(texts[r["id"]] for r in rows) + "\n")
        res = run_cli("predict", moved, "--file", inputs, "--json")
    finally:
        shutil.copytree(hidden, w2v)
    assert res.exit_code == 0, res
    got = [json.loads(line) for line in res.stdout.splitlines()]
    assert [g["label"] for g in got] == [r["predicted"] for r in rows]
    for g, r in zip(got, rows):
        assert all(abs(g["probabilities"][c] - float(r[f"p_{c}"])) < 1e-4 for c in classes)


def test_pickle_detection_by_content(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    from tlzoo.lib.text.vector_files import pickle_kind

    marker = tmp_path / "never"
    assert "protocol 4" in pickle_kind(plant(tmp_path / "a.txt", marker))
    assert "protocol 2" in pickle_kind(plant(tmp_path / "b.vec", marker, "p2"))
    assert "zip" in pickle_kind(plant(tmp_path / "c.bin", marker, "torch"))
    assert pickle_kind(plant(tmp_path / "d.kv", marker, "p0"))  # no magic number: the suffix decides
    # a safetensors header of 0x280 bytes starts with 80 02, like a protocol-2 pickle: still not one
    path = tmp_path / "vectors.safetensors"
    for pad in range(300, 1500):
        save_file({"vectors": np.zeros((2, 3), np.float32)}, str(path), metadata={"pad": "x" * pad})
        if path.read_bytes()[:2] == b"\x80\x02":
            break
    assert path.read_bytes()[:2] == b"\x80\x02" and pickle_kind(path) is None
    (tmp_path / "w.vec").write_text("1 2\nfilm 0.5 0.25\n")
    assert pickle_kind(tmp_path / "w.vec") is None
    assert not marker.exists()


# --------------------------------------------------------------------------- --weights
@pytest.mark.parametrize(
    "plugin,name,how",
    [
        ("word2vec", "evil.kv", "pickle"),
        ("glove", "evil.model", "pickle"),
        ("word2vec", "evil.pkl", "p0"),  # protocol 0 has no magic number: refused by its suffix
        ("fasttext", "evil.pickle", "p2"),
        ("word2vec", "vectors.txt", "pickle"),  # a renamed pickle: refused by its first bytes
        ("glove", "vectors.bin", "torch"),  # torch.save's zip with data.pkl
        ("word2vec", "vectors.pt", "torch"),
    ],
)
def test_weights_file_that_is_a_pickle_is_refused(
    run_cli: Any, labelled: Path, tmp_path: Path, marker: Path, plugin: str, name: str, how: str
) -> None:
    evil = plant(tmp_path / name, marker, how)
    out = tmp_path / "run"
    res = run_cli("run", "-q", "--plugin", plugin, "--weights", evil, "--data", labelled, "--out", out)
    line = refused(res, "could run code")
    assert "save_word2vec_format" in line and str(evil) in line
    assert not out.exists()


def test_pretrain_folder_naming_a_pickle_is_refused_and_points_at_the_vec(
    run_cli: Any, labelled: Path, w2v: Path, tmp_path: Path, marker: Path
) -> None:
    old = tmp_path / "old-w2v"  # what tlzoo's earlier `tl pretrain` wrote: vectors.json -> vectors.kv
    old.mkdir()
    shutil.copy(w2v / "vectors.vec", old / "vectors.vec")
    plant(old / "vectors.kv", marker)
    (old / "vectors.json").write_text(
        json.dumps({"format": "tlzoo-vectors", "plugin": "word2vec", "file": "vectors.kv"})
    )
    res = run_cli("run", "-q", "--plugin", "word2vec", "--weights", old, "--data", labelled, "--out", tmp_path / "run")
    line = refused(res, "vectors.json")
    assert str(old / "vectors.vec") in line
    # the same folder renamed inside: the content gives it away
    (old / "vectors.json").write_text(json.dumps({"format": "tlzoo-vectors", "file": "vectors.safetensors"}))
    (old / "vectors.kv").rename(old / "vectors.safetensors")
    refused(
        run_cli("run", "-q", "--plugin", "word2vec", "--weights", old, "--data", labelled, "--out", tmp_path / "run"),
        "pickle",
    )


def test_fasttext_folder_with_a_model_file_is_refused(
    run_cli: Any, labelled: Path, tmp_path: Path, marker: Path
) -> None:
    folder = tmp_path / "ft-gensim"  # gensim's FastText.save(): a .model pickle plus .npy arrays
    plant(folder / "ft.model", marker)
    np.save(folder / "ft.model.wv.vectors_ngrams.npy", np.zeros((4, 3), np.float32))
    res = run_cli(
        "run", "-q", "--plugin", "fasttext", "--weights", folder, "--data", labelled, "--out", tmp_path / "run"
    )
    refused(res, "ft.model")


def test_vectors_json_cannot_name_files_outside_its_folder(tmp_path: Path, w2v: Path) -> None:
    from tlzoo.lib.text.vector_files import load_vectors

    folder = tmp_path / "v"
    shutil.copytree(w2v, folder)
    shutil.copy(w2v / "vectors.vec", tmp_path / "outside.vec")
    (folder / "vectors.json").write_text(json.dumps({"format": "tlzoo-vectors", "file": "../outside.vec"}))
    with pytest.raises(TlzooError, match="outside its folder"):
        load_vectors(str(folder), "word2vec")
    (folder / "vectors.json").write_text("{not json")
    with pytest.raises(TlzooError, match="damaged"):
        load_vectors(str(folder), "word2vec")


def test_damaged_vector_arrays_are_one_line(tmp_path: Path, w2v: Path) -> None:
    from tlzoo.lib.text.vector_files import load_vectors

    folder = tmp_path / "v"
    shutil.copytree(w2v, folder)
    data = (folder / "vectors.safetensors").read_bytes()
    (folder / "vectors.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(TlzooError, match="damaged") as err:
        load_vectors(str(folder), "word2vec")
    assert "\n" not in str(err.value)
    shutil.copy(w2v / "vectors.safetensors", folder / "vectors.safetensors")
    vocab = json.loads((folder / "vocab.json").read_text())
    (folder / "vocab.json").write_text(json.dumps({**vocab, "words": vocab["words"][:-1]}))
    with pytest.raises(TlzooError, match="damaged"):
        load_vectors(str(folder), "word2vec")


def test_compare_with_a_pickled_weights_file_is_refused(
    run_cli: Any, labelled: Path, tmp_path: Path, marker: Path
) -> None:
    evil = plant(tmp_path / "evil.kv", marker)
    res = run_cli(
        "compare",
        "--plugins",
        f"word2vec={evil}",
        "--data",
        labelled,
        "--heads",
        "logreg",
        "--out",
        tmp_path / "cmp",
        "--no-logme",
    )
    refused(res, "could run code")


# --------------------------------------------------------------------------- run directories
def _drop_copy(desc: dict[str, Any]) -> None:
    desc["backbone"].pop("weights_copy", None)


@pytest.mark.parametrize("case", ["relative", "weights_copy", "absolute-outside"])
def test_run_directory_pointing_at_a_pickle_is_refused(
    run_cli: Any, w2v_run: Path, tmp_path: Path, marker: Path, case: str
) -> None:
    outside = plant(tmp_path / "downloads" / "vectors.kv", marker)

    def edit(desc: dict[str, Any]) -> None:
        if case == "weights_copy":
            desc["backbone"]["weights_copy"] = "assets/vectors.kv"
            return
        _drop_copy(desc)
        desc["backbone"]["request"]["weights"] = "assets/vectors.kv" if case == "relative" else str(outside)

    run = _copy_run(w2v_run, tmp_path / "given" / "run", edit)
    plant(run / "assets" / "vectors.kv", marker)
    refused(run_cli("predict", run, "a funny film"), "could run code")


def test_run_directory_paths_cannot_lead_out_of_it(
    run_cli: Any, w2v_run: Path, w2v: Path, tmp_path: Path, marker: Path
) -> None:
    def copy_to(value: str) -> Any:
        return lambda desc: desc["backbone"].update(weights_copy=value)

    run = _copy_run(w2v_run, tmp_path / "a", copy_to("../../secret"))
    refused(run_cli("predict", run, "a funny film"), "backbone.weights_copy")
    run = _copy_run(w2v_run, tmp_path / "b", copy_to(str(w2v)))  # absolute: also outside
    refused(run_cli("predict", run, "a funny film"), "leads out of the run directory")

    def weights(value: str) -> Any:
        return lambda desc: (_drop_copy(desc), desc["backbone"]["request"].update(weights=value))

    run = _copy_run(w2v_run, tmp_path / "c", weights("../" + w2v.name))
    refused(run_cli("predict", run, "a funny film"), "backbone.request.weights")
    # an absolute path into another run directory's assets: refused, whatever is there
    other = _copy_run(w2v_run, tmp_path / "other-run")
    run = _copy_run(w2v_run, tmp_path / "d", weights(str(other / "assets" / "vectors")))
    refused(run_cli("predict", run, "a funny film"), "another run directory")
    # a link inside the run's assets that leads out
    run = _copy_run(w2v_run, tmp_path / "e")
    shutil.rmtree(run / "assets" / "vectors")
    (run / "assets" / "vectors").symlink_to(w2v, target_is_directory=True)
    refused(run_cli("predict", run, "a funny film"), "link leading out")
    # and the untouched copy still predicts (relative weights_copy, resolved against the run)
    res = run_cli("predict", _copy_run(w2v_run, tmp_path / "f"), "a funny film")
    assert res.exit_code == 0, res


def test_model_safetensors_replaced_by_a_pickle_is_refused(
    run_cli: Any, w2v_run: Path, tmp_path: Path, marker: Path
) -> None:
    for how in ("pickle", "torch"):
        run = _copy_run(w2v_run, tmp_path / how)
        plant(run / "model.safetensors", marker, how)
        refused(run_cli("predict", run, "a funny film"), "model.safetensors' is damaged")


@pytest.mark.parametrize(
    "damage,fragment",
    [
        ("truncated-json", "model.json' is damaged"),
        ("not-an-object", "not a JSON object"),
        ("no-classes", "no 'classes'"),
        ("wrong-type", "'backbone.num_features' is a str"),
        ("weights-type", "'backbone.request.weights' is a int"),
        ("head-kind", "unknown head kind"),
        ("head-params", "(head: Unknown option head.no_such_parameter"),
        ("truncated-tensors", "model.safetensors' is damaged"),
        ("garbage-tensors", "model.safetensors' is damaged"),
        ("wrong-tensors", "do not fit model.json"),
    ],
)
def test_damaged_run_directory_is_one_line(
    run_cli: Any, w2v_run: Path, tmp_path: Path, damage: str, fragment: str
) -> None:
    run = _copy_run(w2v_run, tmp_path / "run")
    desc_path, tensors = run / "model.json", run / "model.safetensors"
    desc = json.loads(desc_path.read_text())
    if damage == "truncated-json":
        desc_path.write_text(desc_path.read_text()[:100])
    elif damage == "not-an-object":
        desc_path.write_text("[1, 2]")
    elif damage == "no-classes":
        del desc["classes"]
    elif damage == "wrong-type":
        desc["backbone"]["num_features"] = "12"
    elif damage == "weights-type":
        desc["backbone"]["request"]["weights"] = 7
    elif damage == "head-kind":
        desc["head"]["kind"] = "pickle"
    elif damage == "head-params":  # a fitted head rebuilt from parameters it does not take
        desc["head"].update(kind="fitted", params={"no_such_parameter": 1})
    elif damage == "truncated-tensors":
        tensors.write_bytes(tensors.read_bytes()[:40])
    elif damage == "garbage-tensors":
        tensors.write_bytes(b"\x00garbage" * 50)
    elif damage == "wrong-tensors":
        from safetensors.torch import save_file

        save_file({"head.weight": torch.zeros(2, 5), "head.bias": torch.zeros(2)}, str(tensors))
    if damage not in ("truncated-json", "not-an-object"):
        desc_path.write_text(json.dumps(desc))
    line = refused(run_cli("predict", run, "a funny film"), fragment)
    if "model.json" in fragment:
        assert "rerun `tl run`" in line


# --------------------------------------------------------------------------- cache shards and checkpoints
def test_feature_cache_shard_replaced_by_a_pickled_npy_is_rebuilt(
    run_cli: Any, w2v: Path, labelled: Path, tmp_path: Path, marker: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TLZOO_HOME", str(tmp_path / "home"))
    args = ("run", "-q", "--json", "--plugin", "word2vec", "--weights", w2v, "--data", labelled, "--head", "logreg")
    first = run_cli(*args, "--out", tmp_path / "r1")
    assert first.exit_code == 0, first
    manifests = list((tmp_path / "home" / "features").glob("*/manifest.json"))
    assert manifests
    for manifest in manifests:  # a forged shard with a matching manifest (size and crc32 pass)
        meta = json.loads(manifest.read_text())
        shard = manifest.parent / meta["shards"][0]["name"]
        np.save(shard, np.array([Evil(marker), 1.0], dtype=object), allow_pickle=True)
        data = shard.read_bytes()
        meta["shards"][0].update(bytes=len(data), crc32=zlib.crc32(data))
        manifest.write_text(json.dumps(meta))
    second = run_cli(*args, "--out", tmp_path / "r2")
    assert second.exit_code == 0, second  # the cache entry counts as damaged: features are computed again
    assert json.loads(second.stdout)["test"] == json.loads(first.stdout)["test"]


@pytest.mark.parametrize("how", ["p2", "torch"])
def test_resume_from_a_pickled_checkpoint_is_refused(
    run_cli: Any, w2v_run: Path, tmp_path: Path, marker: Path, how: str
) -> None:
    folder = tmp_path / "r.incomplete"
    folder.mkdir()
    shutil.copy(w2v_run / "config.toml", folder / "config.toml")
    plant(folder / "checkpoint.pt", marker, how)
    refused(run_cli("run", "-q", "--resume", tmp_path / "r"), "checkpoint.pt cannot be read")
