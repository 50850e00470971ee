"""An opt-in accelerated CPU runtime for a backbone's frozen forward pass: ONNX Runtime.

``model.options.runtime=onnx`` (``tl run --runtime onnx``) on the ``bert`` and timm vision
backbones runs feature extraction (and ``tl predict``) through ONNX Runtime instead of
PyTorch.  Chosen by measurement (BENCHMARKS.md, issue 10 goal 3; 2-core AVX2 CPU, 2 threads):
all-MiniLM-L6-v2 on length-sorted batches ran 1.9x faster in ONNX Runtime (fp32) than in
PyTorch with the same features (max difference 1e-6); int8 dynamic quantisation was slower
(ONNX Runtime int8 1.5x, torch.ao int8 1.0x: no VNNI on this CPU) and moved the features
(cosine down to 0.87-0.91); EfficientNet-Lite0 ran several times faster in ONNX Runtime than
PyTorch's CPU convolutions.

:class:`OnnxForward` exports a module with ``torch.onnx.export`` (the TorchScript exporter,
which needs no extra package) the first time it is called, into memory, and runs it with
``onnxruntime`` on as many threads as torch uses.  It serves only what it can serve exactly:
CPU tensors, no gradient, the module in eval mode, and the weights it exported (an optimiser
step or ``load_state_dict`` since then bumps a parameter's version: it exports again).
Anything else runs in PyTorch: fine-tuning is untouched.  Nothing touches the network.

Each forward keeps what it cost (:attr:`OnnxForward.stats`: export and session build, batches
served and their time, and PyTorch's time on one of those batches (the second), as a comparison);
:func:`onnx_report` turns them into the line a run logs after its training step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from tlzoo.api.errors import TlzooError

RUNTIMES: tuple[str, ...] = ("torch", "onnx")
HELP = "feature extraction runtime on the CPU: torch, or onnx (ONNX Runtime, about 2x faster, same features)"


def check_runtime(value: Any, owner: str) -> str:
    """``model.options.runtime`` checked: ``torch`` or ``onnx``; else a one-line error naming the fix."""
    runtime = str(value or "torch").strip().lower()
    if runtime not in RUNTIMES:
        from tlzoo.api.errors import suggest

        raise TlzooError(
            f"Unknown runtime '{value}' for {owner}.{suggest(runtime, RUNTIMES)} Use one of {', '.join(RUNTIMES)}."
        )
    if runtime == "onnx":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise TlzooError(
                "--runtime onnx needs ONNX Runtime: pip install 'tlzoo[export]' (onnx and onnxruntime)."
            ) from None
    return runtime


class _Traced(nn.Module):
    """The module to export: ``fn(*inputs)``, with ``module``'s weights as its own."""

    def __init__(self, module: nn.Module, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.module = module
        self.fn = fn

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.fn(*inputs)


class OnnxForward:
    """``fn(*inputs)`` (the pooled features of ``module``) run by ONNX Runtime.

    ``names``: one per input tensor; ``dynamic``: for each name, the axes whose size varies
    (batch, sequence length).  Call :meth:`serves` first: where it says no, run PyTorch.
    """

    def __init__(
        self,
        module: nn.Module,
        fn: Callable[..., torch.Tensor],
        names: Sequence[str],
        dynamic: Mapping[str, Sequence[int]],
    ) -> None:
        self._module = module
        self._fn = fn
        self.names = tuple(names)
        self.dynamic = {k: list(v) for k, v in dynamic.items()}
        self._session: Any = None
        self._versions: list[tuple[int, int]] = []
        self.stats: dict[str, Any] = {"build_s": 0.0, "builds": 0, "batches": 0, "run_s": 0.0}

    def __getstate__(self) -> dict[str, Any]:  # copies export again when first used
        return {**self.__dict__, "_session": None, "_versions": []}

    def _weights(self) -> list[tuple[int, int]]:
        return [(t.data_ptr(), t._version) for t in (*self._module.parameters(), *self._module.buffers())]

    def serves(self, inputs: Sequence[torch.Tensor]) -> bool:
        """Whether ONNX Runtime computes exactly what PyTorch would for these inputs now."""
        return (
            not self._module.training
            and not torch.is_grad_enabled()
            and not torch.jit.is_tracing()  # tl export traces the PyTorch graph itself
            and not torch.onnx.is_in_onnx_export()
            and all(t.device.type == "cpu" for t in inputs)
            and all(p.device.type == "cpu" for p in self._module.parameters())
        )

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self._session is None or self._weights() != self._versions:
            self._export(inputs)
        feeds = {name: t.detach().cpu().contiguous().numpy() for name, t in zip(self.names, inputs)}
        start = time.perf_counter()
        out = torch.from_numpy(self._session.run(None, feeds)[0])
        took = time.perf_counter() - start
        self.stats["run_s"] += took
        self.stats["batches"] += 1
        if self.stats["batches"] <= 2:  # PyTorch on the same batch (the second: both warm), what ONNX Runtime saves
            start = time.perf_counter()
            self._fn(*inputs)
            self.stats["torch_batch_s"], self.stats["onnx_batch_s"] = time.perf_counter() - start, took
        return out

    def _export(self, inputs: Sequence[torch.Tensor]) -> None:
        import io
        import warnings

        import onnxruntime as ort

        start = time.perf_counter()
        buffer = io.BytesIO()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about Python control flow on shapes
            torch.onnx.export(
                _Traced(self._module, self._fn).eval(),
                tuple(inputs),
                buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects too
                dynamo=False,  # the TorchScript exporter: no onnxscript needed
                input_names=list(self.names),
                output_names=["features"],
                dynamic_axes={**self.dynamic, "features": [0]},
                opset_version=17,
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the threads torch would use
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self._session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
        self._versions = self._weights()
        self.stats["build_s"] += time.perf_counter() - start
        self.stats["builds"] += 1


def onnx_report(backbone: Any) -> str | None:
    """The log line of a backbone whose runtime is onnx: what ONNX Runtime served and what it cost (None otherwise)."""
    if getattr(backbone, "runtime", "torch") != "onnx":
        return None
    forwards = [v for v in vars(backbone).values() if isinstance(v, OnnxForward)]
    batches = sum(f.stats["batches"] for f in forwards)
    if not batches:
        return "  runtime onnx: ONNX Runtime ran no batch here (features from the cache, or every pass trained)"
    build = sum(f.stats["build_s"] for f in forwards)
    each = sum(f.stats["run_s"] for f in forwards) / batches
    line = f"  runtime onnx: ONNX Runtime served {batches} batch{'es' * (batches != 1)}, {each * 1000:.0f} ms each"
    same = next((f.stats for f in forwards if f.stats.get("onnx_batch_s")), None)
    if same is not None:
        ratio = same["torch_batch_s"] / same["onnx_batch_s"]
        line += f"; one batch {same['onnx_batch_s'] * 1000:.0f} ms against {same['torch_batch_s'] * 1000:.0f} ms"
        line += f" in PyTorch ({ratio:.1f}x)"
    return line + f"; export and session build {build:.1f} s"
