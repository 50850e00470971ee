"""Session-wide test environment and shared fixtures.

The environment is set before anything imports tlzoo: a private ``TLZOO_HOME`` (so the
feature cache and weights cache never touch the user's), the Hugging Face hub offline,
tokenizers single-threaded and one torch thread per xdist worker (two workers share
two cores).  Fixtures build tiny offline inputs: a random 2-layer BERT checkpoint
folder, a labelled CSV of real movie snippets, a folder of digit PNGs, and a
``run_cli`` helper around click's CliRunner.  Engineers may append fixtures below.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

_HOME = tempfile.mkdtemp(prefix="tlzoo-test-home-")
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)  # feature caches of this session go with it
os.environ["TLZOO_HOME"] = _HOME
os.environ["HF_HUB_OFFLINE"] = "1"
# an empty hub cache: offline-error tests must not depend on what this machine downloaded before
os.environ["HF_HOME"] = os.path.join(_HOME, "hf")
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.pop("TLZOO_PLUGINS", None)  # every built-in plugin loads unless a test says otherwise
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402  (after the environment above)

torch.set_num_threads(1)


# --------------------------------------------------------------------------- tiny BERT
# Words of the movie-review domain plus every letter as a WordPiece continuation, so any
# lower-case English text tokenizes without falling back to [UNK] for every word.
_WORDS = """the a an and or but of to in on for with is it this that was as at by be are film movie
story plot characters character director performance performances cast comedy drama action love life
good great best bad worst funny boring dull fun smart clever beautiful ugly moving charming stupid
well not no never too very more most much little long short slow fast new old man woman young family
world time year years its his her their who what when where which all one two make makes made like
just even so than then there here about into from up out if only can will would could have has had
do does did been being some any other own same such both each few many""".split()


def _vocab() -> list[str]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'\"-:;()")
    return specials + chars + [f"##{c}" for c in chars] + sorted(set(_WORDS))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A transformers checkpoint folder: 2-layer BERT, hidden 32, random weights, WordPiece tokenizer.

    ``tl run --plugin bert --weights DIR`` and ``BackboneRequest(model="tiny", weights=DIR)`` load it.
    """
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(_vocab()) + "\n", encoding="utf-8")
    # transformers 5 reads the vocabulary from ``vocab=``; ``vocab_file=`` is silently ignored
    tokenizer = BertTokenizerFast(vocab=str(vocab), do_lower_case=True)
    assert "[UNK]" not in tokenizer.tokenize("the film"), "tiny tokenizer lost its vocabulary"
    config = BertConfig(
        vocab_size=len(_vocab()),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(1234)
    BertModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


# --------------------------------------------------------------------------- data
@pytest.fixture(scope="session")
def text_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stratified 150-row subset of the built-in rotten-tomatoes snippets as CSV (id,text,label)."""
    from tlzoo.plugins.data.builtin import export

    folder = tmp_path_factory.mktemp("text-csv")
    return Path(export("rotten-tomatoes", str(folder), limit=150, seed=0))


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 handwritten digits (12 per class) as PNGs in one sub-folder per class."""
    from tlzoo.plugins.data.builtin import export

    folder = tmp_path_factory.mktemp("digits")
    return Path(export("digits", str(folder), limit=120, seed=0))


# --------------------------------------------------------------------------- CLI
class CliResult:
    """What one ``tl`` invocation produced, with stdout and stderr kept apart."""

    def __init__(self, exit_code: int, stdout: str, stderr: str, exception: BaseException | None) -> None:
        self.exit_code, self.stdout, self.stderr, self.exception = exit_code, stdout, stderr, exception

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __repr__(self) -> str:
        return f"CliResult(exit_code={self.exit_code}, stdout={self.stdout[-800:]!r}, stderr={self.stderr[-800:]!r})"


@pytest.fixture
def run_cli() -> Callable[..., CliResult]:
    """``run_cli("run", "--plugin", "bert", ...)`` runs ``tl`` in-process with click's CliRunner."""
    from click.testing import CliRunner

    from tlzoo.cli import cli

    def invoke(*args: Any, input: str | None = None) -> CliResult:
        # plugin commands for the current environment, as a new `tl` process adds them (another test of this
        # worker may have added a narrower set: a fake plugin, a restricted TLZOO_PLUGINS)
        cli._loaded = False  # type: ignore[attr-defined]
        res = CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=True)
        stderr = res.stderr  # click >= 8.2 keeps stderr apart from stdout
        exc = res.exception if not isinstance(res.exception, SystemExit) else None
        return CliResult(res.exit_code, res.stdout, stderr, exc)

    return invoke


# --------------------------------------------------------------------------- strategies, heads, compare
# Three topics written with words the tiny BERT vocabulary knows: even random transformer
# weights keep which words a text holds, so the topics stay separable for every head.
TOPICS = {
    "action": "action fast slow world director cast man long".split(),
    "comedy": "funny comedy fun smart clever charming stupid dull".split(),
    "drama": "drama love life moving beautiful family woman young".split(),
}


@pytest.fixture(scope="session")
def word_bert_dir(tiny_bert_dir: Path) -> Path:
    """The tiny BERT checkpoint (kept as a name for tests that rely on word-level tokens)."""
    return tiny_bert_dir


@pytest.fixture(scope="session")
def topics_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """180 short texts (text,label), 60 per topic in TOPICS, seeded."""
    import csv
    import random

    rng = random.Random(0)
    filler = "the a of and is it this that was with".split()
    path = tmp_path_factory.mktemp("topics") / "topics.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for _ in range(60):
            for label, words in TOPICS.items():
                text = rng.sample(words, 3) + rng.sample(filler, 4)
                rng.shuffle(text)
                w.writerow([" ".join(text), label])
    return path


TONES = {"fun": "a funny clever comedy", "dull": "a dull boring drama"}  # small_items' titles


@pytest.fixture(scope="session")
def small_items(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 records: a title that gives the label, a price, and a small image (one of them a corrupt file)."""
    import csv
    import random

    from PIL import Image

    folder = tmp_path_factory.mktemp("small-items")
    rng, rows = random.Random(1), []
    for i in range(48):
        tone = ["fun", "dull"][i % 2]
        Image.new("RGB", (16, 16), (rng.randrange(256), 0, 0)).save(folder / f"{i}.png")
        rows.append({"id": f"r{i}", "image": f"{i}.png", "title": TONES[tone], "price": f"{rng.random():.2f}"})
        rows[-1]["label"] = tone
    (folder / "7.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")  # corrupt: a placeholder, counted
    with open(folder / "items.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder / "items.csv"
