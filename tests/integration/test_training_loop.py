"""The one training loop (``Trainer.fit`` and its callbacks) and the training items of issue 17:
the events in their documented order, a callback that stops a fit, a diverged run that stops in
one line instead of saving a NaN model, lr-find on an augmented fine-tune, and every rank's random
states in a checkpoint."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import one_line_error
from torch import nn

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import Phase
from tlzoo.engine import checkpoint as ckpt
from tlzoo.engine.loop.callbacks import BestWeights, EarlyStopping
from tlzoo.engine.loop.events import EVENTS, Callback, FitState, StopFit
from tlzoo.engine.training import History, Trainer, soft_cross_entropy

CPU = torch.device("cpu")


def _batches(n: int = 48, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = torch.nn.functional.one_hot((x[:, 0] > 0).long(), 2).float()
    return [(x[i : i + 16], y[i : i + 16]) for i in range(0, n, 16)]


def _trainer(history: History | None = None, log: Any = None) -> Trainer:
    return Trainer(
        device=CPU,
        loss=soft_cross_entropy(0.0),
        history=history or History(None),
        progress=False,
        log=log or (lambda m: None),
    )


class Recorder(Callback):
    def __init__(self) -> None:
        self.seen: list[tuple[str, int, int]] = []
        for event in EVENTS:
            setattr(self, event, self._record(event))

    def _record(self, event: str) -> Any:
        def call(state: FitState) -> None:
            self.seen.append((event, state.epoch, state.batch_index))

        return call


def test_fit_calls_the_events_in_their_documented_order_and_returns_rows() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    rec = Recorder()
    data = _batches()
    state = _trainer().fit(model, [{"params": list(model.parameters()), "lr": 0.1}], data, epochs=2, callbacks=[rec])
    names = [e for e, _, _ in rec.seen]
    batch = ["on_batch_begin", "on_loss", "on_backward", "on_batch_end"]
    epoch = ["on_epoch_begin", "on_train_begin", *batch * len(data), "on_validate", "on_epoch_end"]
    assert names == ["on_fit_begin", *epoch, *epoch, "on_fit_end"]
    assert state.epochs_done == 2 and state.step == 2 * len(data) and state.error is None
    assert set(state.row) == {"phase", "epoch", "train_loss", "train_accuracy", "lr", "seconds"}
    assert state.row["epoch"] == 2 and 0 <= state.row["train_accuracy"] <= 1


def test_a_callback_stops_the_fit_and_on_fit_end_still_runs_also_after_an_error() -> None:
    class StopAfter(Callback):
        def on_batch_end(self, state: FitState) -> None:
            if state.step == 2:
                raise StopFit

    model = nn.Linear(4, 2)
    rec = Recorder()
    groups = [{"params": list(model.parameters()), "lr": 0.1}]
    state = _trainer().fit(model, groups, _batches(), epochs=3, callbacks=[StopAfter(), rec])
    assert state.step == 2 and state.epochs_done == 0 and rec.seen[-1][0] == "on_fit_end"

    class Boom(Callback):
        def on_loss(self, state: FitState) -> None:
            raise RuntimeError("boom")

    rec = Recorder()
    with pytest.raises(RuntimeError, match="boom"):
        _trainer().fit(model, groups, _batches(), epochs=1, callbacks=[Boom(), rec])
    assert rec.seen[-1][0] == "on_fit_end"


def test_early_stopping_and_best_weights_as_callbacks() -> None:
    """Validation losses 5, 3, 4, 4, 4...: patience 2 stops before epoch 5, the epoch-2 weights come back."""
    losses = iter([5.0, 3.0, 4.0, 4.0, 4.0, 4.0])
    model = nn.Linear(4, 2)
    weights: dict[int, torch.Tensor] = {}

    class Snapshot(Callback):
        def on_validate(self, state: FitState) -> None:
            weights[state.epoch] = state.model.weight.detach().clone()

    logs: list[str] = []
    state = _trainer(log=logs.append).fit(
        model,
        [{"params": list(model.parameters()), "lr": 0.1}],
        _batches(),
        epochs=8,
        val_loader=[None],
        evaluate=lambda m, v: (next(losses), 0.5),
        callbacks=[EarlyStopping(2), Snapshot(), BestWeights()],
    )
    assert state.epochs_done == 4 and state.best is not None and state.best["epoch"] == 2
    assert torch.equal(model.weight, weights[2])
    assert any("early stop" in m and "best at epoch 2" in m for m in logs)
    assert any("restored the best weights (epoch 2" in m for m in logs)


def test_a_diverging_phase_stops_in_one_line_and_removes_the_checkpoint(tmp_path: Path) -> None:
    model = nn.Linear(4, 2)
    saver = ckpt.Checkpointer(tmp_path)
    saver.save({"epoch": 1})
    assert saver.path.is_file()
    data = [(torch.full((4, 4), float("nan")), torch.eye(2)[[0, 1, 0, 1]])]
    with pytest.raises(TlzooError, match=r"diverged.*lower --finetune-lr") as err:
        _trainer().run_phase(
            model,
            Phase("fine-tune", 3, 1e10, train_groups=1),
            [{"params": list(model.parameters()), "lr": 1e10}],
            data,
            None,
            checkpoint=saver,
        )
    assert "\n" not in str(err.value) and "epoch 1" in str(err.value)
    assert not saver.path.exists()  # resuming would diverge again


def test_a_diverging_scratch_phase_names_the_flag_that_set_its_rate(tmp_path: Path) -> None:
    """--no-pretrained trains every layer at --lr: the error must not send the user to --finetune-lr."""
    from tlzoo.engine.config import TrainConfig
    from tlzoo.plugins.strategies.standard import scratch_plan

    (phase,) = scratch_plan(TrainConfig(lr=1e10, joint_epochs=2)).phases  # the built-in from-scratch plan
    assert phase.train_groups == -1
    model = nn.Linear(4, 2)
    data = [(torch.full((4, 4), float("nan")), torch.eye(2)[[0, 1, 0, 1]])]
    with pytest.raises(TlzooError, match=r"diverged.*lower --lr \(10x") as err:
        _trainer().run_phase(
            model,
            phase,
            [{"params": list(model.parameters()), "lr": 1e10}],
            data,
            None,
        )
    assert "--finetune-lr" not in str(err.value)


def test_tl_run_with_a_huge_learning_rate_fails_in_one_line(
    run_cli: Any, word_bert_dir: Path, topics_csv: Path, tmp_path: Path
) -> None:
    """Issue 17: --lr 1e10 saved a NaN model and exited 0."""
    out = tmp_path / "nan"
    args = ["run", "-q", "--plugin", "bert", "--weights", word_bert_dir, "--data", topics_csv, "--max-length", "16"]
    res = run_cli(*args, "--device", "cpu", "--epochs", "3", "--lr", "1e10", "--out", out)
    line = one_line_error(res, "diverged", "lower --lr", out=out)
    assert "nan" in line or "inf" in line


def test_lr_find_on_an_augmented_fine_tune_keeps_the_augmentation_preview(
    run_cli: Any, image_folder: Path, tmp_path: Path
) -> None:
    """Issue 17: lr-find --strategy fine-tune --head-epochs 0 on images raised AttributeError 'Run' has no 'dir'."""
    out = tmp_path / "lr"
    args = ["lr-find", "--plugin", "lenet", "--no-pretrained", "--data", image_folder, "--device", "cpu"]
    res = run_cli(*args, "--strategy", "fine-tune", "--head-epochs", "0", "--steps", "12", "--out", out, "--json")
    assert res.exit_code == 0, res
    data = json.loads(res.stdout)
    assert "layer groups training" in data["target"] and data["option"] == "--finetune-lr"
    assert sorted(p.name for p in out.iterdir()) == ["augment.png", "lr_find.json", "lr_find.png"]
    assert (out / "augment.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_a_checkpoint_keeps_every_ranks_random_states_and_each_rank_restores_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 17: under torchrun only rank 0's states were saved, and every rank resumed with them."""
    states = []
    for seed in (10, 11):  # what rank 0 and rank 1 hold after an epoch of augmenting different rows
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        states.append(ckpt.rng_state())
    expected = []
    for s in states:
        ckpt.set_rng_state(s)
        expected.append(_draws())
    assert expected[0] != expected[1]
    saver = ckpt.Checkpointer(tmp_path)
    saver.save({"epoch": 1}, rank_rngs=states)
    loaded = saver.load()
    assert loaded is not None
    monkeypatch.setattr(ckpt.distributed, "active", lambda: True)
    for rank in (0, 1):
        monkeypatch.setattr(ckpt.distributed, "rank", lambda r=rank: r)
        ckpt.set_rng_state(ckpt.rank_rng_state(loaded))
        assert _draws() == expected[rank]
    monkeypatch.setattr(ckpt.distributed, "rank", lambda: 2)  # more ranks than the file knows: rank 0's
    assert ckpt.rank_rng_state(loaded) is loaded["rng"]
    old = {k: v for k, v in loaded.items() if k != "rank_rng"}  # a file written before: rank 0's for all
    assert ckpt.rank_rng_state(old) is old["rng"]


def _gather(rank: int, world: int, folder: str) -> None:
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(100 + rank)
        gathered = ckpt.gather_rng_states()
        assert gathered is not None and len(gathered) == world
        mine = ckpt.rng_state()["torch"]
        assert torch.equal(gathered[rank]["torch"], mine)
        if rank == 0:
            torch.save([g["torch"] for g in gathered], os.path.join(folder, "states.pt"))
    finally:
        dist.destroy_process_group()


def test_gather_rng_states_collects_each_rank_over_gloo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("MASTER_PORT", str(s.getsockname()[1]))
    mp.spawn(_gather, args=(2, str(tmp_path)), nprocs=2, join=True)
    got = torch.load(str(tmp_path / "states.pt"), weights_only=True)
    expected = []
    for rank in (0, 1):
        torch.manual_seed(100 + rank)
        expected.append(torch.get_rng_state())
    assert all(torch.equal(a, b) for a, b in zip(got, expected)) and not torch.equal(got[0], got[1])
