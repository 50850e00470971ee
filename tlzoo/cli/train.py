"""``tl run``, ``tl lr-find``, ``tl compare`` and ``tl pretrain``: the commands that train."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from tlzoo.api.errors import TlzooError
from tlzoo.cli.app import cli
from tlzoo.cli.errors import friendly, offline_option
from tlzoo.infra.safe_text import printable

F = TypeVar("F", bound=Callable[..., Any])

# ---------------------------------------------------------------------------- run
# tl run's options for the engine settings are made from the settings' declarations
# (tlzoo.engine.config: flag, type, meaning, default); the sections in the order --help shows them.
_SECTIONS = ("model", "data", "head", "train", "")


def _cli_settings() -> list[Any]:
    """The declared settings that have a ``tl run`` option, model first, then data, head, train."""
    from tlzoo.engine.config import settings

    found = [d for d in settings().values() if d.flag]
    return sorted(found, key=lambda d: _SECTIONS.index(d.key.rpartition(".")[0]))


def setting_options(keys: list[str] | None = None, helps: dict[str, str] | None = None) -> Callable[[F], F]:
    """Click options for the engine settings ``keys`` (default: every setting with a flag), made
    from their declarations: the flag and its short form, the type, the help with the default.
    A bool whose flag is ``--no-X`` becomes that flag (parameter ``no_X``, None unless given).
    ``helps`` replaces a key's help where a command uses it differently (``tl compare``)."""
    from tlzoo.engine.config import settings

    decls = [settings()[k] for k in keys] if keys is not None else _cli_settings()

    def decorate(f: F) -> F:
        for decl in reversed(decls):  # click lists options in the order the decorators are written
            own = (helps or {}).get(decl.key)
            text = (dataclasses.replace(decl, option_help=own) if own else decl).help_text()
            names = [decl.flag, *([decl.short] if decl.short else [])]
            if decl.negative or decl.type is bool:  # --no-X, or a flag that turns a setting on (--refit-full)
                f = click.option(*names, decl.param, is_flag=True, default=None, help=text)(f)
            elif decl.key == "model.plugin":  # repeated: COLUMN=PLUGIN per input of a fused run
                text = text.rstrip(".") + "; or COLUMN=PLUGIN, repeated, for a fused run over several columns."
                f = click.option(*names, decl.param, multiple=True, help=text)(f)
            else:
                kind = None if decl.type is str else decl.type
                f = click.option(*names, decl.param, type=kind, help=text)(f)
        return f

    return decorate


def _run_options() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(click parameter, config key) of tl run's value options, and of its --no-X flags."""
    decls = _cli_settings()
    values = [(d.param, d.key) for d in decls if not d.negative] + [("runtime", "model.options.runtime")]
    return values, [(d.param, d.key) for d in decls if d.negative]


RUN_OPTIONS, RUN_FLAGS = _run_options()


@cli.command()
@setting_options()
@click.option(
    "--epochs",
    "-e",
    "old_epochs",
    type=int,
    hidden=True,
    help="Deprecated (0.2, removed in 0.4): the last phase's epochs; use --head-epochs or --joint-epochs.",
)
@click.option(
    "--runtime",
    help="Feature extraction on the CPU: torch, or onnx (ONNX Runtime, ~2x faster; bert and timm models) [torch].",
)
@click.option(
    "--tabular-columns",
    help="Fused run: tabular columns, comma-separated (numbers standardised with a missing flag, categories "
    "one-hot), besides the --plugin COLUMN=PLUGIN inputs.",
)
@click.option(
    "--fusion",
    help="Fused run: how the inputs' features are combined: concat (the run's head on all of them), late (a "
    "fitted head per input, probabilities mixed with weights chosen on validation) or mlp (per-input projections, "
    "modality dropout, a small MLP) [concat].",
)
@click.option(
    "--seeds",
    type=int,
    help="Repeat with N training seeds (--seed .. --seed+N-1; the split stays --seed's) into OUT/seed-<s>; "
    "report mean ± sd.",
)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="A TOML run config.")
@click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override any config key, e.g. train.lr=0.01."
)
@click.option("--quiet", "-q", is_flag=True, help="Only print the result.")
@click.option("--json", "as_json", is_flag=True, help="Print metrics as JSON on stdout.")
@click.option(
    "--resume", "resume_dir", metavar="RUN_DIR", help="Continue an interrupted run after its last finished epoch."
)
@offline_option
@friendly
def run(
    config_file: str | None,
    overrides: tuple[str, ...],
    quiet: bool,
    as_json: bool,
    no_pretrained: bool | None,
    no_augment: bool | None,
    resume_dir: str | None,
    **options: Any,
) -> None:
    """Train a transfer model: the twelve steps, one command.

    \b
    Several columns of one dataset in one model (a fused run):
      tl run --plugin image=efficientnet_lite0 --plugin title=bert --tabular-columns price,brand --data items.csv
    """
    seeds = options.pop("seeds")
    if not options.get("plugin"):
        options["plugin"] = None  # not given (click's empty tuple for a repeated option)
    if resume_dir:
        given = [f"--{k.removeprefix('old_').replace('_', '-')}" for k, v in options.items() if v is not None]
        given += ["--config"] * bool(config_file) + ["--set"] * bool(overrides)
        given += ["--no-pretrained"] * bool(no_pretrained) + ["--no-augment"] * bool(no_augment)
        given += ["--seeds"] * (seeds is not None)
        if given:
            raise TlzooError(f"--resume continues with the run's own config.toml; drop {given[0]}.")
        from tlzoo.commands.seeds import is_seeds_folder, resume_seeds, seeds_output
        from tlzoo.facade import Engine

        engine = Engine(log=(lambda m: None) if quiet else _log)
        if is_seeds_folder(resume_dir):  # an interrupted --seeds N: finished seeds kept, the rest run
            heads = engine.zoo.heads
            result = resume_seeds(resume_dir, engine.run, lambda c: heads.get(c.head.name), engine.log)
            click.echo(seeds_output(result, as_json))
            return
        _print_result(engine.resume(resume_dir), as_json)
        return
    cfg = _run_config(config_file, overrides, quiet, no_pretrained, no_augment, options)
    from tlzoo.facade import Engine

    engine = Engine(log=(lambda m: None) if quiet else _log)
    if seeds is not None:
        from tlzoo.commands.seeds import check_seeds, run_seeds, seeds_output

        check_seeds(seeds)
        factory, _ = engine.zoo.resolve_backbone(cfg.model.plugin, cfg.model.name)  # also checks --plugin first
        head_cls = engine.zoo.heads.get(cfg.head.name)
        result = run_seeds(cfg, seeds, engine.run, head_cls, factory.name, (lambda m: None) if quiet else _log)
        click.echo(seeds_output(result, as_json))
        return
    _print_result(engine.run(cfg), as_json)


def _run_config(
    config_file: str | None,
    overrides: tuple[str, ...],
    quiet: bool,
    no_pretrained: bool | None,
    no_augment: bool | None,
    options: dict[str, Any],
) -> Any:
    """The RunConfig of `tl run`'s options (``tl lr-find`` takes the same ones)."""
    from tlzoo.engine.config import RunConfig

    cfg = RunConfig.from_toml(config_file) if config_file else RunConfig()
    plugins, tabular = options.pop("plugin", None), options.pop("tabular_columns", None)
    fusion = options.pop("fusion", None)
    if plugins or tabular or fusion:  # one plugin, or COLUMN=PLUGIN inputs and tabular columns (a fused run)
        from tlzoo.engine.config_keys import apply_plugin_arguments

        weights = options.pop("weights", None) or ""
        apply_plugin_arguments(cfg, tuple(plugins or ()), tabular or "", weights, fusion or "")
    old_epochs = options.pop("old_epochs", None)
    if old_epochs is not None:  # 0.2's --epochs: read as --head-epochs or --joint-epochs once the strategy is known
        cfg.set("train.epochs", old_epochs)
    for param, key in RUN_OPTIONS:
        if options.get(param) is not None:
            cfg.set(key, options[param])
    flags = {**options, "no_pretrained": no_pretrained, "no_augment": no_augment}
    for param, key in RUN_FLAGS:  # --no-X: the setting is false; 0.2's {"amp": False} still counts
        if flags.get(param) or flags.get(key.rpartition(".")[2]) is False:
            cfg.set(key, False)
    cfg.apply_overrides(list(overrides))
    if quiet:
        cfg.progress = False
    return cfg


# ---------------------------------------------------------------------------- lr-find
@cli.command(name="lr-find")
@click.option("--out", "-o", help="Folder for lr_find.png and lr_find.json [runs/lr-find-<time>].")
@click.option("--start-lr", type=float, default=1e-7, show_default=True, help="Smallest learning rate of the sweep.")
@click.option("--end-lr", type=float, default=10.0, show_default=True, help="Largest learning rate of the sweep.")
@click.option("--steps", "num_steps", type=int, default=100, show_default=True, help="Batches in the sweep (at most).")
@click.option("--json", "as_json", is_flag=True, help="Print the sweep and the suggestion as JSON on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="Only print the suggestion.")
@friendly
def lr_find(
    out: str | None,
    start_lr: float,
    end_lr: float,
    num_steps: int,
    as_json: bool,
    quiet: bool,
    config_file: str | None,
    overrides: tuple[str, ...],
    no_pretrained: bool | None,
    no_augment: bool | None,
    **options: Any,
) -> None:
    """Find a learning rate: sweep it exponentially on the first phase `tl run` would train.

    Takes `tl run`'s data, plugin, head and strategy options. Restores the weights
    afterwards; writes lr_find.png (loss against rate) and lr_find.json; prints the
    suggested rate and the `tl run` command that uses it. Fitted heads (logreg, svm, ...)
    have no learning rate.
    """
    from tlzoo.commands.lr_find import find_lr

    cfg = _run_config(config_file, overrides, quiet, no_pretrained, no_augment, options)
    result = find_lr(
        cfg, out, start_lr=start_lr, end_lr=end_lr, steps=num_steps, log=(lambda m: None) if quiet else _log
    )
    if as_json:
        click.echo(json.dumps({"png": str(result.png), **result.as_dict()}, indent=2))
        return
    why = (
        "steepest descent of the smoothed loss: where it falls fastest, below a tenth of its minimum"
        if result.method == "steepest descent"
        else "the minimum of the smoothed loss / 10: "
        + (
            f"the steepest descent, at {result.steepest:.2g}, lies too close to where the loss turns up"
            if result.steepest is not None
            else "the curve has no clear descending stretch"
        )
    )
    click.echo(f"suggested learning rate {result.suggestion:.2g} ({why})")
    click.echo(f"  minimum of the smoothed loss at {result.minimum:.2g}; sweep: {result.sweep.stopped}")
    click.echo(f"  {_run_command(click.get_current_context(), result.option, result.suggestion)}")
    click.echo(f"  saved {result.png} and {result.json_path}", err=True)


# tl run's options that lr-find does not take (it has its own --out, --json and --quiet)
_LR_FIND_SKIPS = {"out", "resume_dir", "seeds", "as_json", "quiet"}
_LR_FIND_OWN = {"out", "start_lr", "end_lr", "num_steps", "as_json", "quiet"}
lr_find.params.extend(p for p in run.params if p.name not in _LR_FIND_SKIPS)  # the rest: exactly tl run's


def _run_command(ctx: click.Context, option: str, rate: float) -> str:
    """The `tl run` command with lr-find's run options as given, and the suggested rate for ``option``."""
    import shlex

    words = ["tl", "run"]
    rate_param = option.lstrip("-").replace("-", "_")
    for param in ctx.command.params:
        if param.name in _LR_FIND_OWN or param.name == rate_param or not isinstance(param, click.Option):
            continue
        if not param.expose_value:  # --offline, --debug: settings of this process, not of the run
            continue
        value = ctx.params.get(param.name or "")
        name = max(param.opts, key=len)
        if param.is_flag:
            words += [name] if value else []
        elif param.multiple:
            for v in value or ():
                words += [name, str(v)]
        elif value is not None:
            words += [name, str(value)]
    return shlex.join([*words, option, f"{rate:.2g}"])


def _print_result(result: Any, as_json: bool) -> None:
    from tlzoo.engine import distributed

    if not distributed.is_main():  # under torchrun every rank has the result; rank 0 prints it
        return
    if as_json:
        click.echo(json.dumps({"run_dir": str(result.run_dir), **result.metrics}, indent=2))
    else:
        t = result.metrics["test"]

        def ci(key: str) -> str:  # the 95 % bootstrap interval, when the run has one
            lo_hi = t.get(f"{key}_ci")
            return f" [{lo_hi[0]:.3f}, {lo_hi[1]:.3f}]" if lo_hi else ""

        scored = f"{t['scored_by'].split(' (')[0]}: " if t.get("scored_by") else "test "  # --test-fraction 0 --cv K
        click.echo(
            f"{scored}accuracy {t['accuracy']:.4f}{ci('accuracy')}  macro-F1 {t['macro_f1']:.4f}{ci('macro_f1')}"
            f"  (95% CI, n={t.get('n', '?')})  run {result.run_dir}"
        )


def _log(msg: str) -> None:
    click.echo(printable(msg), err=True)  # labels and texts may hold escape sequences


# ---------------------------------------------------------------------------- compare
# the run settings tl compare takes as options (any other through --set), and their help there
COMPARE_SETTINGS = [
    "data.text_column",
    "data.label_column",
    "data.encoding",
    "data.limit",
    "model.image_size",
    "model.max_length",
    "train.batch_size",
    "train.device",
    "seed",
]
COMPARE_HELP = {"train.batch_size": "Batch size for feature extraction", "seed": "Random seed (the split)"}


@cli.command()
@click.option(
    "--plugins",
    "-p",
    required=True,
    help="Comma-separated plugins or catalogued models, e.g. bert,glove; NAME=PATH uses local weights.",
)
@click.option("--data", "-d", required=True, help="The dataset, as for `tl run --data`.")
@click.option("--heads", default="logreg,knn", show_default=True, help="Comma-separated fitted heads to probe with.")
@click.option(
    "--fusion",
    "fusions",
    help="Fusion methods as contestants, e.g. concat,late,mlp: --plugins are then COLUMN=PLUGIN inputs of one fused "
    "run (features extracted once).",
)
@click.option("--tabular-columns", help="With --fusion: tabular columns of the fused run, comma-separated.")
@click.option("--out", "-o", help="Folder for leaderboard.csv and leaderboard.png [runs/compare-<time>].")
@setting_options(COMPARE_SETTINGS, COMPARE_HELP)
@click.option(
    "--seeds",
    type=int,
    default=1,
    help="Fit each head with N training seeds on the same features and split; mean ± sd columns [1].",
)
@click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Any run config key, e.g. data.text_column=review."
)
@click.option("--no-logme", is_flag=True, help="Skip the LogME score (ranks backbones without training a head).")
@click.option("--json", "as_json", is_flag=True, help="Print the leaderboard as JSON on stdout.")
@click.option("--quiet", "-q", is_flag=True, help="Only print the leaderboard.")
@offline_option
@friendly
def compare(
    plugins: str,
    data: str,
    heads: str,
    out: str | None,
    overrides: tuple[str, ...],
    no_logme: bool,
    as_json: bool,
    quiet: bool,
    seeds: int,
    fusions: str | None,
    tabular_columns: str | None,
    **options: Any,
) -> None:
    """Probe several backbones with cheap heads on cached features; print a leaderboard."""
    from tlzoo.engine.config import RunConfig, settings

    cfg = RunConfig()
    for key in COMPARE_SETTINGS:
        if options.get(settings()[key].param) is not None:
            cfg.set(key, options[settings()[key].param])
    cfg.apply_overrides(list(overrides))
    cfg.progress = not quiet
    from pathlib import Path

    from tlzoo.commands.compare import compare as run_compare, format_leaderboard, leaderboard_notes
    from tlzoo.commands.leaderboard import advice_lines, advise

    result = run_compare(
        plugins.split(","),
        data,
        heads.split(","),
        out,
        config=cfg,
        use_logme=not no_logme,
        log=(lambda m: None) if quiet else _log,
        seeds=seeds,
        fusions=(fusions or "").split(","),
        tabular=(tabular_columns or "").split(","),
    )
    w = result.winner
    # the advice reads earlier runs (under runs/ and beside the output folder) for fine-tuning's record
    advice = advise(cfg, w, runs=[Path("runs"), result.out.parent]) if w else None
    if as_json:
        nxt = {"next": vars(advice)} if advice else {}
        click.echo(json.dumps({"out": str(result.out), "rows": result.rows, **nxt}, indent=2, default=str))
        return
    for line in [*format_leaderboard(result.rows).splitlines(), *(f"  {n}" for n in leaderboard_notes(result.rows))]:
        click.echo(printable(line))  # backbone names come from folder names: no terminal escapes
    click.echo(f"\nsaved {result.csv_path} and {result.png_path}", err=True)
    for line in advice_lines(w, advice) if advice else []:
        click.echo(printable(line), err=True)


# ---------------------------------------------------------------------------- pretrain
@cli.command()
@click.option(
    "--plugin", "-p", required=True, help="Whose weights to pretrain (word2vec, fasttext, transformer, elmo, ulmfit)."
)
@click.option(
    "--corpus",
    "-c",
    required=True,
    help="A .txt file (a text per line), a folder of .txt files, a CSV/JSONL "
    "(its text column) or a dataset name such as rotten-tomatoes (labels ignored).",
)
@click.option("--out", "-o", required=True, help="Folder to write the weights, vocabulary, description and curve to.")
@click.option("--epochs", "-e", type=int, help="Training epochs (default: the pretrainer's).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="A pretrainer option, e.g. dim=100.")
@click.option("--limit", type=int, default=0, help="Use N texts of the corpus (seeded sample).")
@click.option("--seed", type=int, default=0, help="Random seed [0].")
@click.option("--text-column", default="text", help="CSV/JSONL column holding the text [text].")
@click.option("--label-column", default="label", help="With --split train: the label column [label].")
@click.option("--encoding", default="utf-8", help="Corpus file encoding [utf-8].")
@click.option("--split", type=click.Choice(["train"]), help="Only the texts `tl run` (same --limit/--seed) trains on.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the output folder.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@offline_option
@friendly
def pretrain(
    plugin: str,
    corpus: str,
    out: str,
    epochs: int | None,
    overrides: tuple[str, ...],
    limit: int,
    seed: int,
    text_column: str,
    label_column: str,
    encoding: str,
    split: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Source-task pretraining on an unlabelled corpus; then `tl run --plugin X --weights OUT`."""
    from tlzoo.commands.pretraining import pretrain as run_pretrain
    from tlzoo.engine.corpus import CorpusOptions

    options: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise TlzooError(f"--set expects key=value, got '{item}'; e.g. --set dim=100.")
        key, value = (s.strip() for s in item.split("=", 1))
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    copts = CorpusOptions(text_column=text_column, label_column=label_column, encoding=encoding, split=split or "")
    summary = run_pretrain(
        plugin,
        corpus,
        out,
        options,
        epochs=epochs,
        limit=limit,
        seed=seed,
        corpus_options=copts,
        log=None if quiet or as_json else _log,
    )
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
    else:
        click.echo(summary["out"])
