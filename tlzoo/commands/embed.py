"""Embeddings as a public API: a backbone's pooled features for any texts or images.

``tlzoo.embed("bert", ["a fine film", "a dull one"], normalize=True)`` returns an array with one
row per input, computed by the same extraction path a run uses (``tlzoo.engine.extraction.extract``:
ordered batches, prefetching, ``--runtime onnx``) and kept in the same feature cache, so embedding
the same inputs again with the same weights reads them back.  ``tl embed`` writes them to ``.npy``
(the vectors) or ``.parquet`` (an ``id`` column and one ``e0 ... eN`` column per dimension).

``normalize=True`` divides each row by its L2 norm: cosine similarity becomes a dot product, as in
sentence-transformers' ``encode(normalize_embeddings=True)``.

Calling it again with the same plugin, model, settings and weight files reuses the backbone the
previous call built (one is kept per process: :func:`forget_backbone` frees it), as a
sentence-transformers model built once is reused: a loop over chunks of texts loads the weights once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tlzoo.api.errors import TlzooError, suggest
from tlzoo.api.interfaces import BackboneRequest, DataOptions, Dataset


@dataclass
class Embeddings:
    """The vectors (float32, one row per record) and the ids of their records."""

    vectors: np.ndarray
    ids: list[str]
    model: str
    source: str


def embed(
    plugin: str,
    inputs: str | Sequence[Any],
    *,
    normalize: bool = False,
    model: str = "",
    **settings: Any,
) -> np.ndarray:
    """One row of ``plugin``'s features per input (a text, an image path or a PIL image; a ``str`` is one input).

    ``settings``: ``weights``, ``pooling``, ``max_length``, ``image_size``, ``runtime``, ``options``,
    ``batch_size``, ``device``, ``cache`` (default True), ``zoo`` — as :func:`embed_dataset` takes them.
    """
    import inspect

    known = [p for p in inspect.signature(embed_dataset).parameters if p not in ("plugin", "data")]
    unknown = sorted(set(settings) - set(known))
    if unknown:  # embed_dataset's own keywords are the settings: one declaration
        raise TlzooError(
            f"tlzoo.embed() takes no setting '{unknown[0]}'.{suggest(unknown[0], known)} Settings: {', '.join(known)}."
        )
    items = [inputs] if isinstance(inputs, str | bytes | os.PathLike) else list(inputs)
    if not items:
        raise TlzooError("Nothing to embed; pass at least one text or image.")
    modality = "vision" if all(_looks_like_image(x) for x in items) else "text"
    odd = next((i for i, x in enumerate(items) if modality == "text" and not isinstance(x, str)), None)
    if odd is not None:
        raise TlzooError(
            f"Input {odd} is {type(items[odd]).__name__} {items[odd]!r}, not a text; pass texts (str), or image "
            "paths or PIL images (all of them images)."
        )
    data = Dataset([str(x) if isinstance(x, os.PathLike) else x for x in items], [""] * len(items), modality)
    return embed_dataset(plugin, data, normalize=normalize, model=model, **settings).vectors


def embed_data(
    plugin: str,
    location: str,
    *,
    text_column: str = "text",
    encoding: str = "utf-8",
    limit: int = 0,
    zoo: Any = None,
    **settings: Any,
) -> Embeddings:
    """The embeddings of every record at ``location`` (what ``tl run --data`` reads; labels not needed)."""
    from tlzoo.engine.data import read_dataset

    if limit < 0:
        raise TlzooError(f"--limit must be 0 (every record) or a positive number, got {limit}.")
    zoo = zoo or _zoo()
    factory, _ = zoo.resolve_backbone(plugin, settings.get("model", ""))
    options = DataOptions(text_column=text_column, encoding=encoding, require_labels=False)
    data, _source = read_dataset(location, factory.modality, zoo, options)
    if limit:
        data = data.subset(range(min(limit, len(data))))
    return embed_dataset(plugin, data, zoo=zoo, **settings)


def embed_dataset(
    plugin: str,
    data: Dataset,
    *,
    normalize: bool = False,
    model: str = "",
    weights: str | None = None,
    pooling: str = "",
    max_length: int = 128,
    image_size: int = 0,
    runtime: str | None = None,
    options: dict[str, Any] | None = None,
    batch_size: int = 32,
    device: str = "cpu",
    cache: bool = True,
    zoo: Any = None,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> Embeddings:
    """Features of ``data`` from ``plugin`` (``model`` of it), extracted as a run extracts them, and cached."""
    import torch

    from tlzoo.engine.extraction import extract
    from tlzoo.engine.features import FeatureCache, feature_spec
    from tlzoo.engine.run.state import pick_device

    if batch_size < 1:
        raise TlzooError(f"--batch-size must be at least 1, got {batch_size}.")
    if len(data) == 0:
        raise TlzooError("Nothing to embed: the data holds no records.")
    opts = dict(options or {})
    if runtime:
        opts["runtime"] = runtime
    factory, request = _request(plugin, data, model, zoo, weights, pooling, max_length, image_size, opts)
    empty = sum(isinstance(x, str) and not x.strip() for x in data.examples) if data.modality == "text" else 0
    if empty and log is not None:
        log(f"  warning: {empty} of {len(data)} texts are empty; each gets the vector of an empty text")
    spec = feature_spec(factory, request)
    backbone = _backbone(factory, request, spec)
    with torch.inference_mode():
        vectors = extract(
            backbone,
            data,
            batch_size=batch_size,
            device=pick_device(device),
            cache=FeatureCache() if cache else None,
            progress=progress,
            log=log or (lambda msg: None),
            label="embed",
            spec=spec,
        )
    vectors = np.asarray(vectors, dtype=np.float32)
    return Embeddings(
        _normalized(vectors) if normalize else vectors, list(data.ids), backbone.name, backbone.weights_source
    )


def _zoo() -> Any:
    """The installed plugins' zoo, loaded by the first call that needs it and kept for the next ones."""
    from tlzoo.engine.zoo import Zoo

    if not _ZOO:
        _ZOO.append(Zoo())
    return _ZOO[0]


_ZOO: list[Any] = []
_LAST: list[tuple[Any, Any]] = []  # [(what built it, the backbone)]: the last backbone built, reused


def _backbone(factory: Any, request: BackboneRequest, spec: dict[str, Any] | None) -> Any:
    """``factory.create(request)`` in eval mode, or the previous call's when it was built from the same
    plugin, request and weight files (``spec``: their digest).  Without a spec (random init, weights
    from the hub) every call builds its own."""
    import json

    key = (factory.name, json.dumps(spec, sort_keys=True, default=str)) if spec is not None else None
    if key is not None and _LAST and _LAST[0][0] == key:
        return _LAST[0][1]
    backbone = factory.create(request)
    backbone.eval()
    _LAST.clear()  # the previous backbone is freed before the next is kept
    if key is not None:
        _LAST.append((key, backbone))
    return backbone


def forget_backbone() -> None:
    """Free the backbone :func:`embed` keeps for its next call."""
    _LAST.clear()


def _request(
    plugin: str,
    data: Dataset,
    model: str,
    zoo: Any,
    weights: str | None,
    pooling: str,
    max_length: int,
    image_size: int,
    options: dict[str, Any],
) -> tuple[Any, BackboneRequest]:
    """The plugin's factory (its modality checked against the inputs') and the request a run would make."""

    factory, name = (zoo or _zoo()).resolve_backbone(plugin, model)
    if data.modality and factory.modality and data.modality != factory.modality:
        raise TlzooError(
            f"'{factory.name}' embeds {factory.modality}, and these inputs are {data.modality}; "
            f"choose a {data.modality} plugin (see `tl list --modality {data.modality}`)."
        )
    request = BackboneRequest(
        model=name,
        weights=weights or None,
        options=options,
        pooling=pooling,
        max_length=max_length,
        image_size=image_size,
    )
    return factory, request


def _normalized(vectors: np.ndarray) -> np.ndarray:
    """Each row divided by its L2 norm (a zero row stays zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _looks_like_image(item: Any) -> bool:
    if isinstance(item, str | os.PathLike):
        from tlzoo.engine.data import is_image_path

        return is_image_path(str(item)) and Path(item).is_file()
    return hasattr(item, "convert") and hasattr(item, "size")  # a PIL image


def check_out(out: str | Path) -> Path:
    """``out`` as a path :func:`write_embeddings` can write, checked before anything is extracted."""
    path = Path(out)
    if path.suffix.lower() not in (".npy", ".parquet"):
        raise TlzooError(f"--out '{out}' must end in .npy (the vectors) or .parquet (ids and vectors).")
    if path.is_dir():
        raise TlzooError(f"--out '{out}' is a folder; name a .npy or .parquet file.")
    return path


def write_embeddings(result: Embeddings, out: str | Path) -> Path:
    """``.npy`` (the vectors, ``allow_pickle=False`` to read) or ``.parquet`` (ids and one column per
    dimension), written to a temporary file beside ``out`` and renamed: never a half-written file."""
    path = check_out(out)
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, result.vectors, allow_pickle=False)
        else:
            _write_parquet(result, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write_parquet(result: Embeddings, path: Path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise TlzooError("Writing .parquet needs pyarrow (pip install pyarrow); or write .npy.") from None
    columns: dict[str, Any] = {"id": pa.array(result.ids, pa.string())}
    for j in range(result.vectors.shape[1]):
        columns[f"e{j}"] = pa.array(result.vectors[:, j], pa.float32())
    pq.write_table(pa.table(columns), str(path))
