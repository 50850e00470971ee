"""The one data path (``read_dataset``, and ``read_unlabelled`` where labels are optional), then
splitting, subsetting and label encoding: seeded, stratified, numpy only."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlzoo.api.errors import TlzooError, suggest
from tlzoo.api.interfaces import DataOptions, Dataset

if TYPE_CHECKING:
    import numpy as np  # imported inside the functions: `tl heads`, `tl data list` and the like load no numpy


@dataclass
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset
    notes: list[str] = field(default_factory=list)  # warnings for the run log (e.g. a class missing from test)


IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


def read_dataset(location: str, modality: str, zoo: Any, options: DataOptions | None = None) -> tuple[Dataset, Any]:
    """The one data path: ``--data`` and its options as a Dataset, through the data source that reads
    ``location`` for a ``modality`` backbone (``tl run``, ``tl embed``, ``tl predict --data``, the report,
    corpora).  Returns the dataset and the source (its ``name`` says which one read it).  The source's
    notes (rows dropped, doubtful labels) travel in ``dataset.notes`` for the caller to log."""
    source = zoo.data_source_for(location, modality)
    return source.load(location, options or DataOptions()), source


def is_image_path(item: str) -> bool:
    """Whether ``item`` names an image file by its suffix (what a text model should not be given)."""
    import os

    return os.path.splitext(str(item).strip())[1].lower() in IMAGE_SUFFIXES


def image_pixel_cap() -> int:
    """The most pixels an image is decoded at: above PIL's decompression-bomb limit (about 179 million) a
    picture is decoded up to this and shrunk, beyond it refused.  ``TLZOO_MAX_IMAGE_PIXELS`` raises it
    (memory: 3 bytes a pixel)."""
    import os

    raw = os.environ.get("TLZOO_MAX_IMAGE_PIXELS", "")
    return int(raw) if raw.strip().isdigit() else 400_000_000


def image_pixels(path: str) -> int:
    """width x height from the image file's header (no decoding, no bomb check); 0 when unreadable."""
    import warnings

    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None  # the header only: the size is what the caller checks
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                return int(img.size[0]) * int(img.size[1])
    except Exception:  # noqa: BLE001 - Pillow raises many kinds for a bad file
        return 0
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def image_file_problem(path: str, check: str = "header") -> str:
    """Why Pillow cannot read the image file ``path``, or "" when it can.  ``check`` says how far:
    "header" (the format is recognised: cheap), "verify" (also a PNG's chunks and their CRCs, a JPEG's
    header) or "decode" (also every pixel: a truncated stream fails).  A picture over PIL's
    decompression-bomb limit counts as readable: decoding shrinks it, or refuses it in one line."""
    import os
    import warnings

    if not os.path.isfile(path):
        return "no such file"
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:  # parses the header
                if check != "header":
                    img.verify()
            if check == "decode":
                with Image.open(path) as img:
                    img.load()
    except Image.DecompressionBombError:
        return ""
    except Exception as exc:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError ... for a bad file
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'unreadable'}"
    return ""


# a label that is str(float("nan")) (pandas' astype(str) writes it) is a missing value, never a class
MISSING_LABELS = frozenset({"", "nan"})
# labels that often mark a missing value but may be a real class: kept, with a warning
DOUBTFUL_LABELS = frozenset({"none", "null", "na", "n/a", "#n/a", "undefined"})


def label_text(value: Any) -> str | None:
    """The class name of a raw label, or None when the label is missing (None, NaN, empty).

    Integral floats become integers, so a JSON ``1.0`` and ``1`` are one class.  Raises
    ValueError for a list or an object, which cannot be a class name.
    """
    if value is None:
        return None
    if isinstance(value, (list, dict, tuple)):
        raise ValueError(f"a {type(value).__name__} is not a class name")
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    text = str(value).strip()
    return None if text.lower() in MISSING_LABELS else text


class RowReport:
    """Counts the rows a reader skips, by reason, so the run can say what it dropped and why."""

    def __init__(self, name: str, position: str = "line") -> None:
        self.name, self.position = name, position  # position: how a row is located ("line" or "row")
        self.total = 0
        self.dropped: dict[str, list[int]] = {}
        self.doubtful: Counter[str] = Counter()

    def drop(self, reason: str, line: int) -> None:
        self.dropped.setdefault(reason, []).append(line)

    def keep_label(self, label: str) -> None:
        if label.lower() in DOUBTFUL_LABELS:
            self.doubtful[label] += 1

    def notes(self) -> list[str]:
        out = []
        n = sum(len(v) for v in self.dropped.values())
        if n:
            parts = []
            for reason, lines in self.dropped.items():
                where = ", ".join(map(str, lines[:3])) + (" ..." if len(lines) > 3 else "")
                parts.append(f"{len(lines)} {reason} ({self.position}{'s' if len(lines) > 1 else ''} {where})")
            out.append(f"dropped {n} of {self.total} rows of '{self.name}': {'; '.join(parts)}.")
        for label, count in self.doubtful.items():
            out.append(
                f"the label '{label}' ({count} rows of '{self.name}') is kept as a class; if it marks a "
                "missing value, blank those labels or remove the rows."
            )
        return out


def check_labels(ds: Dataset) -> None:
    if len(ds) == 0:
        why = f" ({'; '.join(n.rstrip('.') for n in ds.notes)})" if ds.notes else ""
        raise TlzooError(f"The dataset '{ds.name}' has no labelled examples{why}; check the path and the columns.")
    counts = Counter(ds.labels)
    if len(counts) < 2:
        only = next(iter(counts))
        raise TlzooError(
            f"The dataset '{ds.name}' has one class only ('{only}'); a classifier needs at least two. "
            "Check --label-column."
        )


def look_alike_labels(labels: list[str]) -> list[str]:
    """Warnings for classes that differ only by surrounding spaces, letter case or Unicode normal form
    ('cat', 'cat ', 'Cat', 'café' composed and decomposed): usually one class written two ways."""
    import unicodedata

    groups: dict[str, set[str]] = {}
    for label in set(labels):
        groups.setdefault(unicodedata.normalize("NFC", label).strip().casefold(), set()).add(label)
    clashes = [sorted(g) for g in groups.values() if len(g) > 1]
    return [
        f"classes {' and '.join(repr(c) for c in group)} differ only by spaces, letter case or Unicode form; "
        "they are kept apart: if they are one class, write it one way in the data"
        for group in sorted(clashes)[:5]
    ]


def stratified_limit(ds: Dataset, limit: int, seed: int) -> Dataset:
    """A stratified random subset of ``limit`` examples (class shares kept)."""
    import numpy as np

    if limit <= 0 or limit >= len(ds):
        return ds
    labels = np.array(ds.labels)
    classes, counts = np.unique(labels, return_counts=True)
    if limit < len(classes):
        raise TlzooError(f"--limit {limit} is smaller than the number of classes ({len(classes)}); raise it.")
    share = counts / counts.sum() * limit
    take = np.maximum(1, np.floor(share)).astype(int)
    # hand out the remainder by largest fractional share
    for i in np.argsort(-(share - np.floor(share))):
        if take.sum() >= limit:
            break
        if take[i] < counts[i]:
            take[i] += 1
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for cls, k in zip(classes, take):
        idx = np.flatnonzero(labels == cls)
        keep.extend(rng.choice(idx, size=min(k, len(idx)), replace=False).tolist())
    return ds.subset(sorted(keep))


def stratified_split(ds: Dataset, val_fraction: float, test_fraction: float, seed: int) -> Splits:
    import numpy as np

    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise TlzooError(
            f"Split fractions val={val_fraction}, test={test_fraction} are invalid; "
            "each must be in [0, 1) and their sum below 1."
        )
    labels = np.array(ds.labels)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n = len(idx)
        n_test = int(round(n * test_fraction))
        n_val = int(round(n * val_fraction))
        if n >= 3 and test_fraction > 0:  # every class shows up in every split when it can
            n_test = max(1, n_test)
        if n >= 3:
            n_val = max(1 if val_fraction > 0 else 0, n_val)
        n_test = min(n_test, n - 1)
        n_val = min(n_val, n - 1 - n_test)
        parts["test"].extend(idx[:n_test].tolist())
        parts["val"].extend(idx[n_test : n_test + n_val].tolist())
        parts["train"].extend(idx[n_test + n_val :].tolist())
    if not parts["test"] and test_fraction > 0:  # 0: no test split asked for (--cv K scores the run)
        sizes = Counter(ds.labels)
        if sizes and max(sizes.values()) < 2:  # no fraction can help: each class needs one to train, one to test
            raise TlzooError(
                f"Every one of the {len(sizes)} classes has a single example, and a class needs at least 2 "
                "(one to train on, one to test); add examples, or merge rare classes into broader ones."
            )
        raise TlzooError(f"Only {len(ds)} examples: too few to hold out a test set; add data or raise --test-fraction.")
    out = {k: ds.subset(sorted(v)) for k, v in parts.items()}
    return Splits(**out, notes=_small_class_notes(out, val_fraction) if test_fraction > 0 else [])


def _small_class_notes(parts: dict[str, Dataset], val_fraction: float) -> list[str]:
    """Say which classes are too small to appear in every split, and what that does to the scores."""
    counts = {k: Counter(v.labels) for k, v in parts.items()}
    classes = sorted(counts["train"], key=_natural_key)
    notes = []
    no_test = [c for c in classes if not counts["test"][c]]
    if no_test:
        sizes = ", ".join(f"'{c}' ({sum(n[c] for n in counts.values())})" for c in no_test[:5])
        more = f" and {len(no_test) - 5} more" if len(no_test) > 5 else ""
        need = "3 (train/validation/test)" if val_fraction > 0 else "2 (train/test)"
        notes.append(
            f"{len(no_test)} class{'es have' if len(no_test) > 1 else ' has'} too few examples to reach "
            f"every split (a class needs {need}): {sizes}{more}; trained on but absent from the test "
            f"set, so macro-F1 (the mean over all {len(classes)} classes) counts each as F1 0 and is at "
            f"most {(len(classes) - len(no_test)) / len(classes):.2f}; add examples to score them."
        )
    no_val = [c for c in classes if counts["test"][c] and not counts["val"][c]] if val_fraction > 0 else []
    if no_val:
        notes.append(
            f"{len(no_val)} class{'es are' if len(no_val) > 1 else ' is'} absent from the validation set "
            f"({', '.join(repr(c) for c in no_val[:5])}{' ...' if len(no_val) > 5 else ''}); "
            "validation loss and accuracy do not cover them."
        )
    return notes


@dataclass
class LabelEncoder:
    classes: list[str]

    @classmethod
    def fit(cls, labels: list[str]) -> LabelEncoder:
        return cls(sorted(set(labels), key=_natural_key))

    def encode(self, labels: list[str]) -> np.ndarray:
        import numpy as np

        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[label] for label in labels], dtype=np.int64)

    def one_hot(self, labels: list[str]) -> np.ndarray:
        import numpy as np

        y = self.encode(labels)
        out = np.zeros((len(y), len(self.classes)), dtype=np.float32)
        out[np.arange(len(y)), y] = 1.0
        return out


def _natural_key(s: str) -> tuple:
    """'2' < '10' for numeric class names; text classes sort alphabetically."""
    return (0, int(s), "") if s.lstrip("-").isdigit() else (1, 0, s)


# --------------------------------------------------------------------------- labels optional
def read_unlabelled(
    location: str,
    modality: str,
    zoo: Any,
    options: DataOptions,
    *,
    label_named: bool = False,
    from_run: bool = False,
) -> tuple[Dataset, str]:
    """:func:`read_dataset` with the labels optional: what ``tl predict --data`` and ``Engine.predict``
    classify.  A record without a label keeps the label ``""``; a table without the label column is
    read whole, unlabelled.  Returns the dataset and the name of the source that read it.

    ``label_named``: the user named ``options.label_column``, so it must exist.  ``from_run``: the
    columns are the ones the run was trained with, not the user's; a table without that text column
    falls back to ``text``.  A label column that is the text column gives no labels.
    """
    path = Path(location)
    if path.is_file() and path.suffix.lower() in (".txt", ".text") and modality == "text":
        raise TlzooError(
            f"'{path}' is a plain text file; pass it with --file (one text per line), or give a "
            "CSV/JSONL with a text column to --data."
        )
    if label_named and options.label_column == options.text_column:
        raise TlzooError(
            f"--text-column and --label-column both name '{options.text_column}'; "
            "the labels need a column of their own."
        )
    source = zoo.data_source_for(location, modality)  # the right errors for a missing path or the wrong modality
    return source.load(location, _optional_labels(source, path, options, label_named, from_run)), source.name


def _optional_labels(source: Any, path: Path, options: DataOptions, label_named: bool, from_run: bool) -> DataOptions:
    """``options`` for reading ``path`` with the labels optional (see :func:`read_unlabelled`)."""
    opts = replace(options, require_labels=False)
    if opts.label_column == opts.text_column:
        opts = replace(opts, label_column="")  # the texts are no labels
    read_table = getattr(source, "read_table", None)  # a table of texts: its columns can be checked here
    if not (path.is_file() and callable(read_table)):
        # other sources check a named label column themselves (and drop the records without a label)
        return replace(opts, require_labels=label_named and not opts.fields)
    if not (label_named or (from_run and opts.text_column != "text")):
        return opts  # nothing to decide from the columns: the table is read once, by the source
    columns = read_table(path, opts).columns
    if from_run and opts.text_column not in columns and "text" in columns:
        opts = replace(opts, text_column="text")  # the run's column is not there: the usual default is
    if label_named and opts.label_column not in columns:
        raise TlzooError(
            f"'{path}' has no column '{opts.label_column}'.{suggest(opts.label_column, columns)} "
            f"Columns: {', '.join(columns)}; choose one with --label-column, or leave it out "
            "to predict without labels."
        )
    return opts
