"""A word-level tokenizer and vocabulary shared by the text plugins without a tokenizer of their own.

Used by the static-vector backbones (glove, word2vec, fasttext), the small MLM
``transformer`` and the LSTM language models (elmo, ulmfit).  Deterministic on purpose: the same text
always gives the same tokens on any machine, so saved vocabularies stay valid.

* ``tokenize(text)``: lower-cases, then splits into words (letters/digits, keeping
  inner apostrophes and hyphens: "don't", "well-made") and single punctuation marks.
* ``Vocab``: token <-> id with reserved specials (``<pad>`` = 0, ``<unk>`` = 1, and
  optionally ``<bos>``/``<eos>``/``<mask>``), built from a corpus by frequency with ties
  broken alphabetically, saved and loaded as JSON.
* ``HashedVocab``: a ``Vocab`` plus hash buckets for the words outside it, and
  ``hash_bucket``, the word hashing itself: CRC32 of the UTF-8 bytes, because Python's
  ``hash`` changes between processes (features, and ``tl predict``, would too).
"""

from __future__ import annotations

import json
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from tlzoo.api.errors import TlzooError

PAD, UNK, BOS, EOS, MASK = "<pad>", "<unk>", "<bos>", "<eos>", "<mask>"
LM_SPECIALS = (PAD, UNK, BOS, EOS)  # the specials of the LSTM language models' vocabularies

# a word: letters/digits, possibly joined by ' or - ; or any single other visible character
_TOKEN = re.compile(r"[^\W_]+(?:['\u2019\-][^\W_]+)*|[^\w\s]", re.UNICODE)


def tokenize(text: str | None, lower: bool = True) -> list[str]:
    """Split ``text`` into word and punctuation tokens ("" and None give [])."""
    if not text:
        return []
    if lower:
        text = text.lower()
    return _TOKEN.findall(text)


class Vocab:
    """A fixed mapping token -> id; unknown tokens map to ``<unk>``."""

    def __init__(self, tokens: Sequence[str], specials: Sequence[str] = (PAD, UNK), lower: bool = True) -> None:
        if PAD not in specials or UNK not in specials:
            raise ValueError("a Vocab needs <pad> and <unk> among its specials")
        self.specials = list(specials)
        self.itos: list[str] = list(self.specials) + [t for t in tokens if t not in self.specials]
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("duplicate tokens in the vocabulary")
        self.lower = lower
        self.pad_id = self.stoi[PAD]
        self.unk_id = self.stoi[UNK]

    # ------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        max_size: int = 30000,
        min_freq: int = 1,
        specials: Sequence[str] = (PAD, UNK),
        lower: bool = True,
    ) -> Vocab:
        """The ``max_size`` most frequent tokens seen at least ``min_freq`` times."""
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(tokenize(text, lower))
        ranked = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
        room = max(0, max_size - len(specials)) if max_size > 0 else len(ranked)
        return cls(ranked[:room], specials, lower)

    # ------------------------------------------------------------ use
    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def tokenize(self, text: str | None) -> list[str]:
        return tokenize(text, self.lower)

    def encode(self, text: str | None, max_length: int = 0) -> list[int]:
        """Token ids of ``text``, cut to ``max_length`` tokens when that is above 0."""
        ids = [self.stoi.get(t, self.unk_id) for t in self.tokenize(text)]
        return ids[:max_length] if max_length > 0 else ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] if 0 <= i < len(self.itos) else UNK for i in ids]

    def id(self, token: str) -> int:
        return self.stoi.get(token, self.unk_id)

    # ------------------------------------------------------------ files
    def to_dict(self) -> dict:
        return {
            "format": "tlzoo-vocab",
            "version": 1,
            "lower": self.lower,
            "specials": self.specials,
            "tokens": self.itos[len(self.specials) :],
        }

    def save(self, path: str | Path) -> None:
        p = Path(path)
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")
        tmp.replace(p)

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        p = Path(path)
        if not p.is_file():
            raise TlzooError(f"Vocabulary file '{p}' does not exist; pass the folder written by `tl pretrain`.")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise TlzooError(
                f"'{p}' is not a tlzoo vocabulary (JSON); pass the folder written by `tl pretrain`."
            ) from None
        if not isinstance(data, dict) or data.get("format") != "tlzoo-vocab":
            raise TlzooError(f"'{p}' is not a tlzoo vocabulary; pass the folder written by `tl pretrain`.")
        return cls(data["tokens"], data["specials"], bool(data.get("lower", True)))


def hash_bucket(token: str, buckets: int) -> int:
    """``token``'s bucket among ``buckets``: the same in every process and on every machine."""
    return zlib.crc32(token.encode("utf-8")) % buckets


class HashedVocab:
    """``Vocab`` ids first, then ``buckets`` hashed ids for the words outside it.

    A model without a vocabulary (``HashedVocab.empty``) still tells words apart, and a
    pretrained one keeps rare target-domain words distinct instead of folding them into
    ``<unk>``; with ``buckets=0`` it is the plain vocabulary.
    """

    def __init__(self, vocab: Vocab, buckets: int) -> None:
        if buckets < 0:
            raise TlzooError(f"hash buckets must be 0 or more, got {buckets}.")
        self.vocab, self.buckets = vocab, buckets

    @classmethod
    def build(
        cls, texts: Iterable[str], max_size: int, min_freq: int, buckets: int, specials: Sequence[str] = LM_SPECIALS
    ) -> HashedVocab:
        return cls(Vocab.build(texts, max_size=max_size, min_freq=min_freq, specials=specials), buckets)

    @classmethod
    def empty(cls, buckets: int, specials: Sequence[str] = LM_SPECIALS) -> HashedVocab:
        """Only the specials: every word is hashed."""
        return cls(Vocab([], specials=specials), buckets)

    def __len__(self) -> int:
        return len(self.vocab) + self.buckets

    @property
    def pad_id(self) -> int:
        return self.vocab.pad_id

    def id(self, token: str) -> int:
        i = self.vocab.stoi.get(token)
        if i is not None:
            return i
        if not self.buckets:
            return self.vocab.unk_id
        return len(self.vocab) + hash_bucket(token, self.buckets)

    def tokens(self, text: str | None, max_length: int = 0) -> list[str]:
        toks = tokenize(text, self.vocab.lower)
        return toks[:max_length] if max_length > 0 else toks

    def encode(self, text: str | None, max_length: int = 0) -> list[int]:
        return [self.id(t) for t in self.tokens(text, max_length)]

    def save(self, folder: Path) -> None:
        self.vocab.save(folder / "vocab.json")

    def digest(self) -> str:
        return f"{len(self.vocab)}+{self.buckets}:{zlib.crc32(' '.join(self.vocab.itos).encode()):08x}"
