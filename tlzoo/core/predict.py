"""Load a finished run directory and classify new examples with it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .artifacts import load_model_files
from .errors import TlzooError
from .interfaces import Backbone, BackboneRequest
from .loaders import example_loader
from .zoo import Zoo


class Predictor:
    def __init__(self, backbone: Backbone, head: Any, classes: list[str], head_kind: str) -> None:
        self.backbone, self.head, self.classes, self.head_kind = backbone, head, classes, head_kind

    @classmethod
    def load(cls, run_dir: str | Path, zoo: Zoo | None = None) -> "Predictor":
        folder = Path(run_dir)
        desc, tensors = load_model_files(folder)
        zoo = zoo or Zoo()
        b = desc["backbone"]
        factory, model = zoo.resolve_backbone(b["plugin"], b["request"]["model"])
        req = b["request"]
        options = dict(req.get("options", {}))
        options["assets"] = str(folder / "assets")
        backbone = factory.create(BackboneRequest(model=model, weights=req.get("weights"),
                                                  pretrained=req.get("pretrained", True), options=options))
        backbone.plugin = factory.name
        if b.get("weights_saved"):
            state = {k[len("backbone."):]: v for k, v in tensors.items() if k.startswith("backbone.")}
            backbone.load_state_dict(state)
        elif b.get("fingerprint") and backbone.fingerprint() != b["fingerprint"]:
            raise TlzooError(
                f"The backbone weights found now ({backbone.weights_source}) differ from the ones this run was "
                f"trained on; restore those weights or retrain with `tl run`."
            )
        head_state = {k[len("head."):]: v for k, v in tensors.items() if k.startswith("head.")}
        classes = desc["classes"]
        kind = desc["head"]["kind"]
        if kind in ("torch", "linear"):
            head_cls = zoo.heads.get(desc["head"]["name"]) if kind == "torch" else None
            if head_cls is not None:
                module = head_cls(**desc["head"]["params"]).build(b["num_features"], len(classes))
            else:
                module = nn.Linear(b["num_features"], len(classes))
            module.load_state_dict(head_state)
            head: Any = module.eval()
        else:
            head = zoo.heads.get(desc["head"]["name"])(**desc["head"]["params"])
            head.load_state({k: v.numpy() for k, v in head_state.items()})
        return cls(backbone.eval(), head, classes, kind)

    @torch.inference_mode()
    def predict_proba(self, inputs: list[Any], batch_size: int = 32) -> np.ndarray:
        loader = example_loader(inputs, self.backbone, train=False, batch_size=batch_size)
        feats = torch.cat([self.backbone(batch).float() for batch in loader]) if inputs else torch.zeros(0)
        if self.head_kind in ("torch", "linear"):
            return torch.softmax(self.head(feats), 1).numpy()
        return self.head.predict_proba(feats.numpy())

    def predict(self, inputs: list[Any]) -> list[dict[str, Any]]:
        proba = self.predict_proba(inputs)
        out = []
        for x, p in zip(inputs, proba):
            i = int(p.argmax())
            out.append({"input": x if isinstance(x, str) else repr(x), "label": self.classes[i],
                        "probability": float(p[i]),
                        "probabilities": {c: float(v) for c, v in zip(self.classes, p)}})
        return out
