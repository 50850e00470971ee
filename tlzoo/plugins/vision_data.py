"""Image data sources beyond plain folders: Fashion-MNIST, CSVs of image paths, Hugging Face datasets.

``--data fashion-mnist`` (or ``fashion-mnist:train`` / ``fashion-mnist:test``): Zalando's
70,000 28x28 grey clothing images from Debian's ``dataset-fashion-mnist`` idx files,
decompressed once into ``$TLZOO_HOME/data`` and read back memory-mapped, so a run
holds only the rows it touches.

``--data images.csv``: a CSV/TSV with an image-path column (``--text-column``, else the
first of image/path/file/filename/filepath) and a label column; relative paths are
relative to the CSV.

``--data hf:NAME[:SPLIT]`` (online) or ``--data FOLDER`` written by ``save_to_disk``:
a Hugging Face dataset with an Image column and a label column.  Rows stay in the
memory-mapped Arrow files and decode one by one in DataLoader workers.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Any

import numpy as np

from tlzoo.core.corpus import read_csv_table, read_text
from tlzoo.core.data import RowReport, label_text
from tlzoo.core.errors import TlzooError, suggest
from tlzoo.core.features import tlzoo_home
from tlzoo.core.hookspecs import hookimpl
from tlzoo.core.interfaces import Dataset, DataOptions, DataSource
from tlzoo.core.data import IMAGE_SUFFIXES

FASHION_DIR = Path(os.environ.get("TLZOO_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
FASHION_PARTS = {"train": "train", "test": "t10k"}
PATH_COLUMNS = ("image", "path", "file", "filename", "filepath", "image_path", "img")


# --------------------------------------------------------------------------- Fashion-MNIST
def fashion_mnist_files() -> dict[str, tuple[Path, Path]]:
    """{part: (images .gz, labels .gz)}; a clear error naming the package when absent."""
    files = {part: (FASHION_DIR / f"{stem}-images-idx3-ubyte.gz", FASHION_DIR / f"{stem}-labels-idx1-ubyte.gz")
             for part, stem in FASHION_PARTS.items()}
    missing = [str(p) for pair in files.values() for p in pair if not p.is_file()]
    if missing:
        raise TlzooError(f"Fashion-MNIST is not installed ({missing[0]} is missing); install it with "
                         "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or set TLZOO_FASHION_MNIST "
                         "to a folder holding the four idx .gz files.")
    return files


def _idx_to_npy(src: Path, dst: Path, offset: int, shape: tuple[int, ...]) -> None:
    raw = gzip.decompress(src.read_bytes())
    arr = np.frombuffer(raw, dtype=np.uint8, offset=offset)
    n = arr.size // int(np.prod(shape)) if shape else arr.size
    if n * int(np.prod(shape) if shape else 1) != arr.size:
        raise TlzooError(f"'{src}' has an unexpected size; reinstall dataset-fashion-mnist.")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f"{dst.stem}.{os.getpid()}.tmp.npy")
    np.save(tmp, arr.reshape((n, *shape)))
    os.replace(tmp, dst)  # atomic: a parallel run never reads half a file


def fashion_mnist_arrays(part: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28] memory-mapped, labels uint8 [N]) for 'train' or 'test'."""
    images_gz, labels_gz = fashion_mnist_files()[part]
    folder = tlzoo_home() / "data" / "fashion-mnist"
    images, labels = folder / f"{part}-images.npy", folder / f"{part}-labels.npy"
    for src, dst, offset, shape in ((images_gz, images, 16, (28, 28)), (labels_gz, labels, 8, ())):
        if not dst.is_file() or dst.stat().st_mtime < src.stat().st_mtime:
            _idx_to_npy(src, dst, offset, shape)
    x, y = np.load(images, mmap_mode="r", allow_pickle=False), np.load(labels, allow_pickle=False)
    if len(x) != len(y):
        raise TlzooError(f"Fashion-MNIST {part}: {len(x)} images but {len(y)} labels; reinstall the package.")
    return x, y


class FashionMNIST(DataSource):
    name = "fashion-mnist"
    modality = "vision"
    description = "70,000 clothing images, 28x28 grey, 10 classes (Debian dataset-fashion-mnist)"

    def can_load(self, location: str) -> bool:
        return location == self.name or location in {f"{self.name}:{p}" for p in FASHION_PARTS}

    def load(self, location: str, options: DataOptions) -> Dataset:
        parts = [location.split(":", 1)[1]] if ":" in location else list(FASHION_PARTS)
        examples: list[Any] = []
        labels: list[str] = []
        ids: list[str] = []
        for part in parts:
            x, y = fashion_mnist_arrays(part)
            examples.extend(x[i] for i in range(len(x)))  # memory-mapped rows: read when used
            labels.extend(FASHION_CLASSES[int(c)] for c in y)
            ids.extend(f"{part}-{i:05d}" for i in range(len(x)))
        return Dataset(examples, labels, modality="vision", ids=ids, name=location)


# --------------------------------------------------------------------------- CSV of image paths
def _is_file(p: Path) -> bool:
    """``Path.is_file`` that is False, not an error, for a long text or one with a NUL byte."""
    try:
        return p.is_file()
    except (OSError, ValueError):
        return False


class ImageCSVSource(DataSource):
    name = "image-csv"
    modality = "vision"
    description = "CSV/TSV with an image-path column and a label column (paths relative to the CSV)"

    def can_load(self, location: str) -> bool:
        return location.lower().endswith((".csv", ".tsv")) and os.path.isfile(location)

    def load(self, location: str, options: DataOptions) -> Dataset:
        path = Path(location)
        table = read_csv_table(read_text(path, options.encoding),
                               "\t" if location.lower().endswith(".tsv") else ",", f"'{path}'")
        columns = table.columns
        if not columns:
            raise TlzooError(f"'{path}' is empty; give a header row with an image-path and a label column.")
        column = options.text_column if options.text_column in columns else next(
            (c for c in columns if c.lower() in PATH_COLUMNS), "")
        if not column:
            raise TlzooError(f"'{path}' has no image-path column.{suggest(options.text_column, columns)} Columns: "
                             f"{', '.join(columns)}; name it with --text-column.")
        if options.label_column not in columns:
            raise TlzooError(f"'{path}' has no column '{options.label_column}'.{suggest(options.label_column, columns)} "
                             f"Columns: {', '.join(columns)}; choose one with --label-column.")
        table.refuse_duplicates(str(path), {"--text-column": column, "--label-column": options.label_column})
        values = [str(r.get(column) or "").strip() for r in table.rows]
        present = [v for v in values if v]
        if present and not any(Path(v).suffix.lower() in IMAGE_SUFFIXES for v in present) and not any(
                _is_file(path.parent / v) for v in present[:20]):  # paths without a suffix still count
            sample = " ".join(present[0].split())[:40]
            raise TlzooError(f"'{path}' holds text, not image paths (column '{column}': '{sample}'), but the backbone "
                             "is vision; choose a text plugin (see `tl list --modality text`), or pass a folder of "
                             "images or a CSV whose column lists image files.")
        examples, labels, ids = [], [], []
        report = RowReport(path.name)
        for row, line, rel in zip(table.rows, table.lines, values):
            report.total += 1
            try:
                label = label_text(row.get(options.label_column))
            except ValueError:  # pragma: no cover - CSV fields are strings
                label = None
            if label is None:
                report.drop("with an empty, NaN or missing label", line)
                continue  # unlabelled rows cannot train or be scored
            if not rel:
                report.drop("with an empty image path", line)
                continue
            image = Path(rel) if os.path.isabs(rel) else path.parent / rel
            if not _is_file(image):
                raise TlzooError(f"'{path}' line {line}: image '{rel}' does not exist (looked in {image.parent}); "
                                 "fix the path or remove the row.")
            report.keep_label(label)
            examples.append(str(image))
            labels.append(label)
            ids.append(str(row.get("id") or rel))
        return Dataset(examples, labels, modality="vision", ids=ids, name=path.name, notes=report.notes())


# --------------------------------------------------------------------------- Hugging Face datasets
class ArrowImage:
    """One image row of a Hugging Face dataset, decoded only when a worker asks for it."""

    __slots__ = ("ds", "column", "index")

    def __init__(self, ds: Any, column: str, index: int) -> None:
        self.ds, self.column, self.index = ds, column, index

    def open_image(self) -> Any:
        return self.ds[self.index][self.column]

    def tobytes(self) -> bytes:  # the feature-cache key: the dataset's content hash + row
        return f"{self.ds._fingerprint}:{self.index}".encode()

    def __repr__(self) -> str:
        return f"<{self.column} row {self.index}>"


def is_saved_dataset(folder: Path) -> bool:
    return folder.is_dir() and any((folder / f).is_file() for f in ("dataset_dict.json", "state.json"))


class HFImageSource(DataSource):
    name = "hf-images"
    modality = "vision"
    description = "Hugging Face image datasets: hf:NAME[:SPLIT] (online) or a folder written by save_to_disk"

    def can_load(self, location: str) -> bool:
        return location.startswith("hf:") or is_saved_dataset(Path(location))

    def load(self, location: str, options: DataOptions) -> Dataset:
        ds = self._open(location)
        from datasets import ClassLabel
        from datasets import Image as ImageFeature

        features = ds.features
        images = [c for c, f in features.items() if isinstance(f, ImageFeature)]
        column = options.text_column if options.text_column in images else (images[0] if images else "")
        if not column:
            raise TlzooError(f"'{location}' has no Image column (columns: {', '.join(features)}); "
                             "this source reads image datasets.")
        label_col = options.label_column if options.label_column in features else next(
            (c for c, f in features.items() if isinstance(f, ClassLabel)), "")
        if not label_col:
            raise TlzooError(f"'{location}' has no column '{options.label_column}'."
                             f"{suggest(options.label_column, list(features))} Choose one with --label-column.")
        feature = features[label_col]
        raw = ds[label_col]
        labels: list[str | None] = []
        report = RowReport(location, position="row")
        for i, v in enumerate(raw):
            report.total += 1
            if isinstance(feature, ClassLabel):
                label = None if v is None or v == -1 else feature.int2str(int(v))
            else:
                try:
                    label = label_text(v)
                except ValueError:
                    label = None
            if label is None:  # -1: ClassLabel's "no label", e.g. a hidden test split
                report.drop("without a label (None, NaN, empty or -1)", i)
            else:
                report.keep_label(label)
            labels.append(label)
        keep = [i for i, label in enumerate(labels) if label is not None]
        ds = ds.cast_column(column, ImageFeature(decode=True))
        return Dataset([ArrowImage(ds, column, i) for i in keep], [str(labels[i]) for i in keep], modality="vision",
                       ids=[f"{i}" for i in keep], name=location, notes=report.notes())

    def _open(self, location: str) -> Any:
        import datasets

        if location.startswith("hf:"):
            name, _, split = location[3:].partition(":")
            from tlzoo.core import network

            why = ""
            try:
                with network.hub_access() as why:  # offline or no answer: the datasets cache only, at once
                    return datasets.load_dataset(name, split=split or "train")
            except Exception as exc:
                raise TlzooError(f"Could not load '{name}' from the Hugging Face hub ({type(exc).__name__}: "
                                 f"{why or str(exc)[:100]}); go online, or save it with save_to_disk and pass the "
                                 "folder.") from None
        folder = Path(location)
        loaded = datasets.load_from_disk(str(folder))
        if isinstance(loaded, datasets.DatasetDict):
            split = "train" if "train" in loaded else next(iter(loaded))
            return loaded[split]
        return loaded


SOURCES = (FashionMNIST(), ImageCSVSource(), HFImageSource())


@hookimpl
def tlzoo_register_data_sources(register: Any) -> None:
    for s in SOURCES:
        register(s)
