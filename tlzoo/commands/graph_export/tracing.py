"""Tracing for graph exports: a backbone's batch as graph inputs, a module traced to ONNX or TorchScript, and
an ONNX graph run with onnxruntime (imported only in the function that runs it)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tlzoo.api.errors import TlzooError

GRAPH_TOLERANCE = 1e-4  # ONNX / TorchScript against PyTorch
SUPPORTED_GRAPHS = (
    "vision backbones (input: NCHW float images after preprocessing) and Hugging Face transformer "
    "text backbones of the bert plugin (input: token ids + attention mask)"
)


def tensor_inputs(
    backbone: Any, examples: list[Any], tokenizer: Path, what: str = ""
) -> tuple[list[str] | None, tuple[torch.Tensor, ...]]:
    """``backbone``'s batch of ``examples`` as (dict keys or None, positional tensors): NCHW float images, or the
    token ids and mask of a Hugging Face tokenizer saved as ``tokenizer``/tokenizer.json (onnx_predict.py reads
    it with `tokenizers`); a one-line refusal for any other input (``what``: the fused run's input, if any)."""
    batch = backbone.collate([backbone.transform(x, False) for x in examples])
    plugin = getattr(backbone, "plugin", "") or "?"
    if backbone.modality == "vision":
        if isinstance(batch, torch.Tensor) and batch.dim() == 4 and batch.is_floating_point():
            return None, (batch,)
    elif (
        isinstance(batch, dict)
        and {"input_ids", "attention_mask"} <= set(batch)
        and all(isinstance(v, torch.Tensor) for v in batch.values())
        and (tokenizer / "tokenizer.json").is_file()
    ):
        keys = list(batch)
        return keys, tuple(batch[k] for k in keys)
    raise TlzooError(
        f"The '{plugin}' backbone{f' of the input {what!r}' if what else ''}'s input is not a tensor a graph can "
        f"take (its own vocabulary and batching); ONNX and TorchScript export support {SUPPORTED_GRAPHS}; "
        "use --format folder."
    )


def trace_graph(
    module: nn.Module,
    example: tuple[Any, ...],
    path: Path,
    names: list[str],
    outputs: list[str],
    text: bool,
    plugin: str,
) -> Any:
    """Write ``module`` traced on ``example`` to ``path``: ONNX (``*.onnx``, a dynamic batch axis, and a
    sequence axis for texts; inputs ``names``, outputs ``outputs``) or TorchScript (``*.pt``, the traced module
    returned).  Tracing fails in many ways, all meaning "not this backbone": one line naming ``--format folder``."""
    onnx = path.suffix == ".onnx"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings of the hub libraries, the legacy exporter's notice
            if not onnx:
                with torch.no_grad():
                    traced = torch.jit.trace(module, example, check_trace=False)
                torch.jit.save(traced, str(path))
                return traced
            axes = {n: ({0: "batch", 1: "sequence"} if text else {0: "batch"}) for n in names}
            torch.onnx.export(
                module,
                example,
                str(path),
                dynamo=False,
                input_names=names,
                output_names=outputs,
                dynamic_axes={**axes, **{n: {0: "batch"} for n in outputs}},
                opset_version=17,
            )
            return None
    except TlzooError:
        raise
    except Exception as exc:  # noqa: BLE001 - tracing fails in many ways; all mean "not this backbone"
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise TlzooError(
            f"{'ONNX' if onnx else 'TorchScript'} export of the '{plugin}' backbone failed ({type(exc).__name__}: "
            f"{first}); it supports {SUPPORTED_GRAPHS}; use --format folder."
        ) from None


def run_onnx(path: Path, names: list[str], check: tuple[Any, ...]) -> tuple[np.ndarray, list[str]]:
    """The first output of the graph ``path`` from onnxruntime on ``check`` (the inputs ``names``, tensors or
    arrays), and the inputs the graph kept."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise TlzooError(
            "ONNX export checks the graph with onnxruntime, which is not installed; "
            "`pip install onnx onnxruntime` (or tlzoo[export])."
        ) from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    kept = [i.name for i in session.get_inputs()]  # the exporter drops inputs the graph never reads
    given = dict(zip(names, (t.numpy() if isinstance(t, torch.Tensor) else t for t in check)))
    return np.asarray(session.run(None, {n: given[n] for n in kept})[0]), kept
