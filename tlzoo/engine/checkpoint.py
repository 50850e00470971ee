"""Per-epoch checkpoints, and resuming an interrupted run exactly.

At the end of every epoch the trainer writes ``checkpoint.pt`` into the run directory:
the weights being trained, the optimizer and scheduler states, the best weights so far
(for early stopping / best-checkpoint restore), every random-number state (Python,
NumPy, torch, CUDA, the training DataLoader's generator) and the history rows.  The
file is written to a temporary name and renamed, so a run killed at any instant (even
with SIGKILL) leaves either the previous checkpoint or the new one, never half of one.

``tl run --resume RUN_DIR`` rebuilds the run from its own ``config.toml``, replays the
cheap steps (data, split, model, cached features) and continues training after the last
finished epoch; with the same seed the result equals an uninterrupted run's.
It is loaded with ``torch.load(weights_only=True)``: plain tensors and containers only.
Under torchrun only rank 0 writes (or removes) the file; every rank loads it to resume.
Every rank shuffles with the same generator (see ``distributed.py``), so rank 0's generator
state stands for all; but each rank augments its own piece of every batch, so its global
random states are its own: the file holds every rank's (``rank_rng``), and each rank
restores its own.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tlzoo.api.errors import TlzooError
from tlzoo.engine import distributed

CHECKPOINT = "checkpoint.pt"
FORMAT = 1
INCOMPLETE = ".incomplete"


# --------------------------------------------------------------------------- random states
def rng_state() -> dict[str, Any]:
    """Every global random state a training epoch may draw from, as plain containers."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(mt), gauss],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def gather_rng_states() -> list[dict[str, Any]] | None:
    """Under torchrun, every rank's :func:`rng_state` in rank order (on every rank; all must call
    it); None in one process."""
    if not distributed.active():
        return None
    import torch.distributed as dist

    states: list[Any] = [None] * distributed.world_size()
    dist.all_gather_object(states, rng_state())
    return states


def rank_rng_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """This rank's random states from a checkpoint: its own where the file has every rank's
    (written under torchrun with as many ranks), else rank 0's (the only ones older files hold)."""
    ranks = checkpoint.get("rank_rng") or []
    rank = distributed.rank() if distributed.active() else 0
    return ranks[rank] if rank < len(ranks) else checkpoint["rng"]


def set_rng_state(state: dict[str, Any]) -> None:
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------- the file
@dataclass
class Checkpointer:
    """Writes and reads the run directory's ``checkpoint.pt``.

    ``extra`` is merged into every saved state: the runner keeps there what outlives a
    phase (the best weights across phases), so a resumed run gets it back exactly."""

    folder: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.folder / CHECKPOINT

    @property
    def tmp_path(self) -> Path:
        return self.folder / (CHECKPOINT + ".tmp")

    def save(self, state: dict[str, Any], rank_rngs: list[dict[str, Any]] | None = None) -> None:
        """Write ``state`` with this process's random states (and ``rank_rngs``, every rank's under
        torchrun: :func:`gather_rng_states`)."""
        if not distributed.is_main():  # rank 0 writes the run folder
            return
        tmp = self.tmp_path
        ranks = {"rank_rng": rank_rngs} if rank_rngs else {}
        try:
            torch.save({"format": FORMAT, **self.extra, **state, "rng": rng_state(), **ranks}, str(tmp))
        except BaseException as exc:
            tmp.unlink(missing_ok=True)  # never leave half a checkpoint behind
            if isinstance(exc, RuntimeError) and "write" in str(exc).lower():  # torch's zip writer: disk full
                raise TlzooError(
                    f"Could not write the checkpoint {self.path} ({str(exc).splitlines()[0][:120]}); "
                    "is the disk full? Free space or choose another --out."
                ) from None
            raise
        os.replace(tmp, self.path)  # atomic: a kill leaves the old file or the new one

    def load(self) -> dict[str, Any] | None:
        if distributed.is_main():  # what a run killed while saving left: the real file is intact
            self.tmp_path.unlink(missing_ok=True)
        if not self.path.is_file():
            return None
        try:
            state = torch.load(str(self.path), map_location="cpu", weights_only=True)
        except Exception as exc:  # cannot happen through save(); a damaged disk or a hand edit
            raise TlzooError(
                f"The checkpoint {self.path} cannot be read ({type(exc).__name__}); "
                "delete it to restart training from the first epoch."
            ) from None
        if state.get("format") != FORMAT:
            raise TlzooError(
                f"The checkpoint {self.path} has format {state.get('format')}, this tlzoo reads "
                f"{FORMAT}; delete it to restart training."
            )
        return state

    def remove(self) -> None:
        if not distributed.is_main():
            return
        for p in (self.path, self.tmp_path):
            p.unlink(missing_ok=True)


def state_dict_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------- finding the run
def incomplete_dir(run_dir: str | Path) -> Path:
    """The ``<out>.incomplete`` folder of an interrupted run, given either path."""
    p = Path(run_dir)
    if p.name.endswith(INCOMPLETE):
        folder, final = p, p.with_name(p.name[: -len(INCOMPLETE)])
    else:
        folder, final = p.with_name(p.name + INCOMPLETE), p
    if not folder.is_dir():
        if final.is_dir() and (final / "metrics.json").is_file():
            raise TlzooError(f"The run '{final}' already finished; nothing to resume (see its metrics.json).")
        raise TlzooError(
            f"No interrupted run at '{run_dir}' (looked for '{folder}'); "
            "pass the --out folder of a `tl run` that was stopped."
        )
    if not (folder / "config.toml").is_file():
        raise TlzooError(f"'{folder}' has no config.toml, so it cannot be resumed; start the run again with `tl run`.")
    if final.exists() and any(final.iterdir()):
        raise TlzooError(f"Both '{folder}' and '{final}' exist; remove one of them and resume again.")
    return folder
