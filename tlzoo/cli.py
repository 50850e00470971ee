"""The ``tl`` command: a thin click layer over the Python API.

torch, timm and transformers are imported only inside commands that need them, so
``tl --help`` and ``tl list`` stay fast.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from tlzoo.api.errors import TlzooError

_CLICK_FLOW = (click.ClickException, click.exceptions.Exit, click.exceptions.Abort)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Every exception -> one line on stderr, never a traceback (``--debug`` prints it).

    Bad input (TlzooError, a full disk, a permission problem) exits 2; an unexpected error
    exits 1 and names the step and plugin, with its traceback in a log file; Ctrl-C exits
    130 and SIGTERM 143.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _CLICK_FLOW:
            raise
        except (Exception, KeyboardInterrupt) as exc:
            fail(exc)

    return wrapper


def _debug() -> bool:
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.meta.get("tlzoo.debug"):
        return True
    return os.environ.get("TLZOO_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta["tlzoo.debug"] = True


def _set_offline(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """--offline: no socket at all; set before any hub library is imported (network imports nothing heavy)."""
    from tlzoo.infra import network

    if value:
        network.set_offline()
    else:
        network.configure_hub()  # short hub timeouts; TLZOO_OFFLINE=1 mirrored into the hub's switches


# on the group (`tl --offline run ...`) and on the commands that may reach the network
offline_option = click.option(
    "--offline",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_set_offline,
    help="Open no network connection: local files and caches only (or TLZOO_OFFLINE=1).",
)


def _flat(text: str, limit: int = 0) -> str:
    """One line: newlines folded, optionally shortened."""
    line = " ".join(str(text).split())
    return line if not limit or len(line) <= limit else line[: limit - 3] + "..."


def _command_name() -> str:
    ctx = click.get_current_context(silent=True)
    parts = ctx.command_path.split()[1:] if ctx is not None else []
    return "-".join(parts) or "tl"


def fail(exc: BaseException, command: str | None = None) -> NoReturn:
    """Print the one line for ``exc`` (and, with --debug, its traceback) and exit with its code.

    ``command``: the sub-command's name when the current click context no longer knows it.
    """
    from tlzoo.engine import distributed  # torch-free

    debug = _debug()
    if distributed.is_relayed(exc) and not debug:  # under torchrun: rank 0 has printed this one
        sys.exit(exc.exit_code if isinstance(exc, TlzooError) else 1)
    if debug:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    code, line = _one_line(exc, debug, command or _command_name())
    if not distributed.is_main():
        line = f"[rank {distributed.rank()}] {line}"
    click.echo(line, err=True)
    sys.exit(code)


def _one_line(exc: BaseException, debug: bool, command: str) -> tuple[int, str]:
    resume = getattr(exc, "tlzoo_resume", None)
    kept = f" The finished epochs are kept: continue with `tl run --resume {resume}`." if resume else ""
    if isinstance(exc, KeyboardInterrupt):
        code = int(getattr(exc, "exit_code", 130))
        return code, f"Interrupted ({'SIGTERM' if code == 143 else 'Ctrl-C'}).{kept}"
    if isinstance(exc, TlzooError):
        return exc.exit_code, f"Error: {_flat(str(exc))}{kept}"
    if isinstance(exc, OSError):
        from tlzoo.infra.lifecycle import os_error_message

        message = os_error_message(exc)
        if message:
            return 2, f"Error: {message}{kept}"
    step, plugin = getattr(exc, "tlzoo_step", None), getattr(exc, "tlzoo_plugin", None)
    where = f"in step '{step}'" if step else f"in `tl {command.replace('-', ' ')}`"
    where += f" (plugin '{plugin}')" if plugin else ""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return 2, (
            f"Error: out of memory {where}; use a smaller --batch-size, --max-length/--image-size or "
            f"--limit, or another --device.{kept}"
        )
    detail = _flat(str(exc), 240)
    head = f"Error: unexpected {type(exc).__name__} {where}" + (f": {detail}" if detail else "") + "."
    if debug:
        return 1, head + kept
    try:
        log = _write_log(exc, step, plugin, command)
        tail = f" Details in {log}; rerun with --debug to print them."
    except Exception as log_exc:  # a full or read-only TLZOO_HOME: still one line
        tail = f" (could not save the details: {_flat(str(log_exc), 80)}); rerun with --debug to print them."
    return 1, head + kept + tail


def _write_log(exc: BaseException, step: str | None, plugin: str | None, command: str) -> Path:
    """The full traceback in ``$TLZOO_HOME/logs/<time>-<cmd>.log``, for a bug report."""
    import platform
    import traceback

    from tlzoo.infra.lifecycle import tlzoo_home

    folder = tlzoo_home() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{command}"
    path = folder / f"{stem}.log"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.log"
    try:
        from importlib import metadata

        version = metadata.version("tlzoo")
    except Exception:
        version = "?"
    head = [
        f"command: tl {' '.join(sys.argv[1:])}",
        f"tlzoo {version}, Python {platform.python_version()}",
        f"step: {step or '-'}, plugin: {plugin or '-'}",
        "",
    ]
    body = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    path.write_text("\n".join(head) + body, encoding="utf-8")
    return path


class _PluginCommands:
    """What a plugin's ``tlzoo_register_commands`` gets as ``cli``: the tl group, except that
    a command name tl already has keeps tl's command (the clash is recorded).
    ``cli.subgroup("data")`` adds to an existing group (``tl data ...``) by the same rule."""

    def __init__(self, group: click.Group, plugin: str, pm: Any) -> None:
        self._group, self._plugin, self._pm = group, plugin, pm

    def subgroup(self, name: str) -> _PluginCommands:
        """An existing group of ``tl`` (such as ``data``) to add commands to."""
        group = self._group.commands.get(name)
        if not isinstance(group, click.Group):
            groups = sorted(n for n, c in self._group.commands.items() if isinstance(c, click.Group))
            raise TlzooError(f"tl has no command group '{name}' to add commands to; groups: {', '.join(groups)}.")
        return _PluginCommands(group, self._plugin, self._pm)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        name = name or cmd.name or ""
        if self._group.commands.get(name) is cmd:  # the same command again (plugin commands reloaded)
            return
        if name in self._group.commands:
            self._pm.record(self._plugin, f"command '{name}' already exists; the plugin's one is ignored", warning=True)
            return
        self._group.add_command(cmd, name)

    def _decorator(self, make: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if len(args) == 1 and callable(args[0]) and not kwargs:  # @cli.command without parentheses
            cmd = make()(args[0])
            self.add_command(cmd)
            return cmd

        def decorator(f: Callable[..., Any]) -> Any:
            cmd = make(*args, **kwargs)(f)
            self.add_command(cmd)
            return cmd

        return decorator

    def command(self, *args: Any, **kwargs: Any) -> Any:
        return self._decorator(click.command, args, kwargs)

    def group(self, *args: Any, **kwargs: Any) -> Any:
        return self._decorator(click.group, args, kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._group, name)


class PluginGroup(click.Group):
    """Adds commands that plugins register (built-in or installed), loading them only when needed.

    Each plugin's ``tlzoo_register_commands`` runs on its own; a failure is recorded
    (``tl plugins`` shows it) and ``tl --help`` and every other command keep working.
    Running a command installs the SIGINT/SIGTERM handlers and turns any exception,
    from a plugin's command too, into one line (see ``friendly``).
    """

    _loaded = False
    _command_plugins: Any = None  # the PluginManager that loaded plugin commands, for `tl plugins`

    def _load_plugin_commands(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        self._command_plugins = None
        from tlzoo.engine.plugins import COMMAND_PLUGINS, PluginManager

        pm = PluginManager(builtins=COMMAND_PLUGINS)  # only the light built-ins that add commands: no torch
        pm.call_register("tlzoo_register_commands", lambda plugin: _PluginCommands(self, plugin, pm))
        self._command_plugins = pm

    def command_problems(self) -> list[Any]:
        """The PluginInfo of every plugin that failed or clashed while adding its commands."""
        from tlzoo.engine.plugins import allowed_plugins

        self._load_plugin_commands()
        if self._command_plugins is None:
            return []
        allowed = allowed_plugins()  # the commands were added once per process: TLZOO_PLUGINS may have changed since
        return [
            i
            for i in self._command_plugins.plugins()
            if (i.error or i.warnings) and (allowed is None or i.name in allowed)
        ]

    def invoke(self, ctx: click.Context) -> Any:
        from tlzoo.infra.lifecycle import signals_raise_interrupted

        if os.environ.get("TLZOO_PLUGINS"):
            from tlzoo.engine.plugins import unknown_allowed

            for why in unknown_allowed().values():
                click.echo(f"Warning: {why} See `tl plugins`.", err=True)
        with signals_raise_interrupted():
            try:
                return super().invoke(ctx)
            except _CLICK_FLOW:
                raise
            except (Exception, KeyboardInterrupt) as exc:  # a plugin command without @friendly, or the group
                fail(exc, ctx.invoked_subcommand or None)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is None:
            self._load_plugin_commands()
            cmd = super().get_command(ctx, name)
        return cmd

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            name = args[0] if args else ""
            from tlzoo.api.errors import suggest

            hint = suggest(name, self.list_commands(ctx))
            if hint and "No such command" in str(exc):
                raise click.UsageError(f"No such command '{name}'.{hint}", ctx) from None
            raise


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tlzoo", message="tlzoo %(version)s")
@click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    callback=_set_debug,
    help="Print the full traceback of an unexpected error (or set TLZOO_DEBUG=1).",
)
@offline_option
def cli() -> None:
    """tlzoo: transfer learning in one command.

    \b
      tl run --plugin bert --data reviews.csv
      tl run --plugin efficientnet --data ./images/
      tl predict runs/<run> "a new sentence"
      tl list            # known models
    """


# ---------------------------------------------------------------------------- run
RUN_OPTIONS: list[tuple[str, str]] = [
    # (cli param name, config key)
    ("plugin", "model.plugin"),
    ("model", "model.name"),
    ("weights", "model.weights"),
    ("pooling", "model.pooling"),
    ("max_length", "model.max_length"),
    ("image_size", "model.image_size"),
    ("runtime", "model.options.runtime"),
    ("data", "data.path"),
    ("text_column", "data.text_column"),
    ("label_column", "data.label_column"),
    ("encoding", "data.encoding"),
    ("limit", "data.limit"),
    ("val_fraction", "data.val_fraction"),
    ("test_fraction", "data.test_fraction"),
    ("head", "head.name"),
    ("strategy", "train.strategy"),
    ("epochs", "train.epochs"),
    ("head_epochs", "train.head_epochs"),
    ("batch_size", "train.batch_size"),
    ("lr", "train.lr"),
    ("finetune_lr", "train.finetune_lr"),
    ("unfreeze", "train.unfreeze"),
    ("device", "train.device"),
    ("amp", "train.amp"),
    ("num_workers", "train.num_workers"),
    ("seed", "seed"),
    ("out", "out"),
]


@cli.command()
@click.option("--plugin", "-p", help="Backbone plugin (bert, efficientnet, ...) or a catalogued model name.")
@click.option("--model", "-m", help="Model of the plugin; default: the plugin's default (see `tl list`).")
@click.option("--weights", help="Local weights: a checkpoint folder or a weights file.")
@click.option(
    "--no-pretrained",
    is_flag=True,
    default=None,
    help="Random weights, every layer trained from epoch 1 (the scratch baseline).",
)
@click.option(
    "--data",
    "-d",
    help="CSV/JSONL of texts, a folder with one sub-folder of images or .txt files per "
    "class, hf:NAME or a saved Hugging Face dataset, or a built-in name (tl data list).",
)
@click.option("--text-column", help="Column holding the text [text].")
@click.option("--label-column", help="Column holding the label [label].")
@click.option("--encoding", help="Text file encoding [utf-8].")
@click.option("--limit", type=int, help="Use a stratified subset of N examples.")
@click.option("--val-fraction", type=float, help="Validation share [0.15].")
@click.option("--test-fraction", type=float, help="Test share [0.15].")
@click.option("--no-augment", is_flag=True, default=None, help="No training-time augmentation.")
@click.option("--head", help="New head: fc, logreg, svm, rf, knn, tree, nb (options: `tl heads`) [fc].")
@click.option(
    "--strategy", "-s", help="feature-extraction, fine-tune or ulmfit (see `tl strategies`) [feature-extraction]."
)
@click.option(
    "--epochs",
    "-e",
    type=int,
    help="Head epochs (feature-extraction) [30], joint epochs (fine-tune) [3], from scratch [10].",
)
@click.option("--head-epochs", type=int, help="Fine-tune: epochs with the backbone frozen first [10].")
@click.option("--batch-size", "-b", type=int, help="Batch size [32].")
@click.option("--lr", type=float, help="Head learning rate [3e-3].")
@click.option("--finetune-lr", type=float, help="Fine-tune learning rate of the unfrozen groups [5e-5].")
@click.option("--unfreeze", type=int, help="Fine-tune: top layer groups to unfreeze (-1 = all) [2].")
@click.option("--pooling", help="Text: mean, cls, max or pooler.")
@click.option("--max-length", type=int, help="Text: tokens per example [128].")
@click.option("--image-size", type=int, help="Vision: input size (default from the weights).")
@click.option(
    "--runtime",
    help="Feature extraction on the CPU: torch, or onnx (ONNX Runtime, ~2x faster; bert and timm models) [torch].",
)
@click.option("--device", help="auto, cpu or cuda [auto].")
@click.option(
    "--no-amp",
    "amp",
    flag_value=False,
    default=None,
    help="On a GPU: train and extract in float32 (default: bfloat16 autocast where the GPU supports it).",
)
@click.option("--num-workers", type=int, help="DataLoader worker processes [0].")
@click.option("--seed", type=int, help="Random seed [0].")
@click.option(
    "--seeds",
    type=int,
    help="Repeat with N training seeds (--seed .. --seed+N-1; the split stays --seed's) into OUT/seed-<s>; "
    "report mean ± sd.",
)
@click.option("--out", "-o", help="Run directory [runs/<time>-<plugin>].")
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
    """Train a transfer model: the twelve steps, one command."""
    seeds = options.pop("seeds")
    if resume_dir:
        given = [f"--{k.replace('_', '-')}" for k, v in options.items() if v is not None]
        given += ["--config"] * bool(config_file) + ["--set"] * bool(overrides)
        given += ["--no-pretrained"] * bool(no_pretrained) + ["--no-augment"] * bool(no_augment)
        given += ["--seeds"] * (seeds is not None)
        if given:
            raise TlzooError(f"--resume continues with the run's own config.toml; drop {given[0]}.")
        from tlzoo.facade import Engine

        _print_result(Engine(log=(lambda m: None) if quiet else _log).resume(resume_dir), as_json)
        return
    cfg = _run_config(config_file, overrides, quiet, no_pretrained, no_augment, options)
    from tlzoo.facade import Engine

    engine = Engine(log=(lambda m: None) if quiet else _log)
    if seeds is not None:
        from tlzoo.commands.seeds import check_seeds, format_summary, run_seeds

        check_seeds(seeds)
        factory, _ = engine.zoo.resolve_backbone(cfg.model.plugin, cfg.model.name)  # also checks --plugin first
        head_cls = engine.zoo.heads.get(cfg.head.name)
        result = run_seeds(cfg, seeds, engine.run, head_cls, factory.name, (lambda m: None) if quiet else _log)
        if as_json:
            click.echo(json.dumps({"out": str(result.out), **result.summary}, indent=2))
        else:
            click.echo(format_summary(result.summary))
            click.echo(f"  runs and seeds.json in {result.out}")
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
    for param, key in RUN_OPTIONS:
        if options.get(param) is not None:
            cfg.set(key, options[param])
    if no_pretrained:
        cfg.model.pretrained = False
    if no_augment:
        cfg.data.augment = False
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

        click.echo(
            f"test accuracy {t['accuracy']:.4f}{ci('accuracy')}  macro-F1 {t['macro_f1']:.4f}{ci('macro_f1')}"
            f"  (95% CI, n={t.get('n', '?')})  run {result.run_dir}"
        )


def _log(msg: str) -> None:
    click.echo(msg, err=True)


# ---------------------------------------------------------------------------- predict
@cli.command()
@click.argument("run_dir", type=click.Path())
@click.argument("inputs", nargs=-1)
@click.option(
    "--data",
    "-d",
    "data",
    help="Classify every record of a data source, as `tl run --data` reads it: a "
    "CSV/JSONL (labels optional), a folder of images or .txt files (flat, or one sub-folder per class), "
    "or a dataset name.",
)
@click.option("--text-column", help="With --data: the column holding the text [text].")
@click.option(
    "--label-column", help="With --data: the column of true labels, for a loss and accuracy [label, when present]."
)
@click.option("--limit", type=int, default=0, help="Only the first N records [all].")
@click.option(
    "--out",
    "-o",
    "out",
    help="Write one CSV row per record here (id, true, predicted, p_<class>, "
    "probability, loss, input); with --data the default is stdout.",
)
@click.option("--file", "input_file", type=click.Path(dir_okay=False), help="Read inputs from a file, one per line.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines with all class probabilities.")
@click.option(
    "--encoding", help="Encoding of the --file or --data file [utf-8; with --data, the one the run was trained with]."
)
@click.option("--batch-size", "-b", type=int, default=32, show_default=True, help="Examples per batch.")
@click.option("--device", default="cpu", show_default=True, help="auto, cpu or cuda.")
@offline_option
@friendly
def predict(
    run_dir: str,
    inputs: tuple[str, ...],
    data: str | None,
    text_column: str | None,
    label_column: str | None,
    limit: int,
    out: str | None,
    input_file: str | None,
    as_json: bool,
    encoding: str | None,
    batch_size: int,
    device: str,
) -> None:
    """Classify new texts or image files with a trained run (or a folder written by `tl export`).

    With --data, the text column, label column and encoding default to the ones the run was trained with.

    \b
      tl predict RUN "a new sentence"              a few inputs, one line each
      tl predict RUN --file texts.txt              one text (or image path) per line
      tl predict RUN --data new.csv --text-column review --out predictions.csv
      tl predict RUN --data photos/ --out predictions.csv
    """
    items = list(inputs)
    if data is not None and (items or input_file):
        raise TlzooError("Pass either --data SOURCE or inputs (arguments / --file), not both.")
    if data is None and (text_column or label_column):
        option = "--text-column" if text_column else "--label-column"
        raise TlzooError(f"{option} applies to --data; pass --data FILE with it.")
    if batch_size < 1:
        raise TlzooError(f"--batch-size must be at least 1, got {batch_size}.")
    if limit < 0:
        raise TlzooError(f"--limit must be 0 (every record) or a positive number, got {limit}.")
    for item in items:  # a path given where a text is expected is almost always a mistake
        if os.path.isdir(item):
            raise TlzooError(
                f"'{item}' is a folder; to classify what it holds, pass it with --data: "
                f"`tl predict {run_dir} --data {item} --out predictions.csv`."
            )
    if input_file:
        from tlzoo.commands.predict import is_table_path

        if is_table_path(input_file):
            raise TlzooError(
                f"--file reads one input per line, and '{input_file}' is a table; classify its "
                f"records with --data {input_file} (and --text-column if its text column is not "
                "'text')."
            )
        items += _read_lines(input_file, encoding or "utf-8")
    if data is None and not items:
        raise TlzooError("Nothing to predict; pass texts or image paths after RUN_DIR, --file FILE, or --data SOURCE.")
    from tlzoo.commands.predict import Predictor, is_table_path
    from tlzoo.engine.zoo import Zoo

    zoo = Zoo()
    predictor = Predictor.load(run_dir, zoo)
    modality = predictor.backbone.modality
    from tlzoo.engine.data import is_image_path

    if modality == "vision":
        missing = [i for i in items if not os.path.isfile(i)]
        if missing and not is_image_path(missing[0]):
            hint = "; to classify the records of a table use --data" if is_table_path(missing[0]) else ""
            raise TlzooError(
                f"This run classifies images, and '{missing[0][:60]}' is not an image file; "
                f"pass paths of image files (or use a run trained on text){hint}."
            )
        if missing:
            raise TlzooError(f"Image '{missing[0]}' does not exist; pass paths of image files.")
    else:
        images = [i for i in items if is_image_path(i) and os.path.isfile(i)]
        if images:
            raise TlzooError(
                f"This run classifies {modality}, and '{images[0]}' is an image "
                "file; pass the texts themselves (or --file with one text per line), or use a run "
                "trained with a vision plugin."
            )
        tables = [i for i in inputs if is_table_path(i) and os.path.isfile(i)]
        if tables:
            raise TlzooError(
                f"'{tables[0]}' is a file, and this would classify its name as a text; classify its "
                f"records with `tl predict {run_dir} --data {tables[0]} --out predictions.csv` "
                "(add --text-column if its text column is not 'text')."
            )
    from_run = False
    if data is not None:  # the run's own column names and encoding, unless the user names them
        from tlzoo.commands.predict import run_data_defaults

        trained = run_data_defaults(run_dir)
        from_run = text_column is None and label_column is None
        text_column = text_column or trained.get("text_column")
        label_column = label_column or (trained.get("label_column") if from_run else None)
        encoding = encoding or trained.get("encoding")
    if data is None and out is None:
        for row in predictor.predict(items[:limit] if limit else items):
            if as_json:
                click.echo(json.dumps(row))
            else:
                click.echo(f"{row['label']}\t{row['probability']:.3f}\t{row['input']}")
        return
    _predict_to_file(
        predictor,
        zoo,
        data,
        items,
        modality,
        text_column,
        label_column,
        limit,
        out,
        as_json,
        encoding or "utf-8",
        batch_size,
        device,
        from_run,
    )


def _predict_to_file(
    predictor: Any,
    zoo: Any,
    data: str | None,
    items: list[str],
    modality: str,
    text_column: str | None,
    label_column: str | None,
    limit: int,
    out: str | None,
    as_json: bool,
    encoding: str,
    batch_size: int,
    device: str,
    from_run: bool = False,
) -> None:
    """`tl predict --data` / `--out`: stream the records through the model, one CSV row (or JSON line) each."""
    from tlzoo.commands.predict import read_records, records_from_inputs, write_predictions
    from tlzoo.engine.runner import pick_device

    dev = pick_device(device)
    if data is not None:
        records = read_records(
            data,
            modality,
            zoo,
            text_column=text_column or "text",
            label_column=label_column,
            encoding=encoding,
            limit=limit,
            from_run=from_run,
        )
    else:
        records = records_from_inputs(items[:limit] if limit else items)
    for note in records.notes:
        _log(f"warning: {note}")
    if not len(records):
        raise TlzooError(f"'{data}' holds no records to classify.")
    if data is not None:
        labels = "with labels" if records.labels is not None else "without labels"
        _log(f"{len(records)} records {labels} from {records.source}: {data}")
    target = Path(out) if out and out != "-" else None
    if target is not None:
        if target.is_dir():
            raise TlzooError(f"--out '{target}' is a folder; pass a file name such as {target / 'predictions.csv'}.")
        if not target.parent.is_dir():
            raise TlzooError(f"--out '{target}': the folder '{target.parent}' does not exist.")
        tmp = target.with_name(target.name + ".tmp")
        try:
            with tmp.open("w", newline="", encoding="utf-8") as f:
                summary = write_predictions(predictor, records, f, as_json=as_json, batch_size=batch_size, device=dev)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    else:
        summary = write_predictions(predictor, records, sys.stdout, as_json=as_json, batch_size=batch_size, device=dev)
    where = f" to {target}" if target is not None else ""
    score = (
        f"; accuracy {summary.accuracy:.4f} on {summary.labelled} labelled records"
        if summary.accuracy is not None
        else ""
    )
    _log(f"wrote {summary.n} predictions{where}{score}")
    if summary.unknown:
        names = ", ".join(f"'{k}'" for k in list(summary.unknown)[:5])
        _log(
            f"warning: {sum(summary.unknown.values())} records have labels this run does not know ({names}); "
            f"they have no loss and are not scored (classes: {', '.join(map(str, predictor.classes[:12]))})."
        )


def _read_lines(path: str, encoding: str) -> list[str]:
    """The non-blank lines of ``tl predict --file``; a wrong encoding is one line saying what to pass."""
    if not os.path.isfile(path):
        raise TlzooError(f"--file '{path}' does not exist.")
    try:
        with open(path, encoding=encoding, newline=None) as f:
            return [line.rstrip("\n") for line in f if line.strip()]
    except LookupError:
        raise TlzooError(
            f"Unknown encoding '{encoding}'; pass --encoding with a name such as utf-8 or latin-1."
        ) from None
    except UnicodeDecodeError as exc:
        raise TlzooError(
            f"--file '{path}' is not valid {encoding} (byte 0x{exc.object[exc.start]:02x} at offset "
            f"{exc.start}); pass its encoding, e.g. --encoding latin-1."
        ) from None


# ---------------------------------------------------------------------------- export
@cli.command(name="export")
@click.argument("run_dir", type=click.Path())
@click.option("--to", "to", required=True, help="The new folder to write (it must not exist, or be empty).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["folder", "onnx", "torchscript"]),
    default="folder",
    show_default=True,
    help="folder: what `tl predict` and a plain-Python loader read on another machine; "
    "onnx / torchscript: backbone + head as one graph from tensors to probabilities.",
)
@offline_option
@friendly
def export_cmd(run_dir: str, to: str, fmt: str) -> None:
    """Export a finished run to ship: a self-contained folder, ONNX or TorchScript.

    Every export is checked against the run's own model before it is kept: the folder
    must predict the same probabilities (1e-5), a graph must agree with PyTorch (1e-4).
    """
    from tlzoo.commands.export import export_run

    result = export_run(run_dir, to, fmt, log=_log)
    needs = f"; loading also needs {result.needs}" if result.needs else ""
    against = "the run's model" if fmt == "folder" else "PyTorch"
    _log(
        f"exported {fmt} ({len(result.files)} files{', self-contained' if result.self_contained else ''}{needs}); "
        f"checked against {against} on {result.checked_examples} examples: max abs diff {result.max_abs_diff:.2g}"
    )
    click.echo(str(result.folder))


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


# ---------------------------------------------------------------------------- catalogue
@cli.command(name="list")
@click.argument("pattern", default="*")
@click.option("--modality", type=click.Choice(["vision", "text"]), help="Only this modality.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def list_(pattern: str, modality: str | None, as_json: bool) -> None:
    """List known models: tlzoo's registry.toml and the installed plugins' entries (imports no torch)."""
    from tlzoo.engine.plugins import PluginManager
    from tlzoo.engine.registry import filter_catalogue, full_catalogue

    pm = PluginManager(builtins=False)  # the installed plugins' entry-point modules only, for their entries
    entries = filter_catalogue(full_catalogue(pm), modality, pattern)
    for info in pm.plugins():
        if info.error and not info.missing:
            click.echo(
                f"Warning: plugin '{info.name}' failed ({_flat(info.error, 160)}); its models are not "
                "listed. See `tl plugins`.",
                err=True,
            )
        for warning in info.warnings:
            click.echo(f"Warning: plugin '{info.name}': {_flat(warning, 200)}.", err=True)
    if as_json:
        click.echo(json.dumps([e.as_dict() for e in entries], indent=2))
        return
    if not entries:
        click.echo(f"No model matches '{pattern}'.", err=True)
        return
    width = max(len(e.name) for e in entries)
    pw = max(len(e.plugin) for e in entries)
    rw = max(len(e.registered_by) for e in entries)
    for e in entries:
        mark = "*" if e.default else " "
        click.echo(
            f"{e.name:<{width}}  {e.plugin:<{pw}} {mark} {e.modality:<6}  {e.registered_by:<{rw}}  {e.description}"
        )
    click.echo(
        "\n* = the plugin's default model; the 4th column names the plugin that catalogues it "
        "(`tl plugins`).  Use: tl run --plugin PLUGIN [--model NAME]",
        err=True,
    )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def plugins(as_json: bool) -> None:
    """List loaded plugins with their version, hooks and load error."""
    from tlzoo.engine.zoo import Zoo

    # building the Zoo calls every registration hook, so errors raised inside hooks show too
    zoo = Zoo()
    zoo.check_data_sources()  # a data source whose can_load raises is recorded against its plugin
    root = click.get_current_context().find_root().command
    if isinstance(root, PluginGroup):  # failures while adding plugin commands
        for info in root.command_problems():
            if info.error:
                zoo.plugins.record(info.name, info.error)
            for message in info.warnings:
                zoo.plugins.record(info.name, message, warning=True)
    infos = zoo.plugins.plugins()
    if as_json:
        click.echo(json.dumps([i.as_dict() for i in infos], indent=2))
        return
    width = max((len(i.name) for i in infos), default=8)
    for i in infos:
        state = f"ERROR {i.error}" if i.error else ", ".join(h.replace("tlzoo_", "") for h in i.hooks)
        origin = "missing" if i.missing else "built-in" if i.builtin else "external"
        click.echo(f"{i.name:<{width}}  {i.version or '-':<10} {origin:<9} {state}")
        for warning in i.warnings:
            click.echo(f"{'':<{width}}  warning: {warning}")


@cli.command()
@friendly
def heads() -> None:
    """List registered heads."""
    from tlzoo.api.interfaces import TorchHead
    from tlzoo.engine.zoo import Zoo

    zoo = Zoo()
    for name, cls in zoo.heads.items():
        kind = "trained with the network" if issubclass(cls, TorchHead) else "fitted on extracted features"
        opts = ", ".join(f"{k}={v!r}" for k, v in cls.defaults().items())
        click.echo(f"{name:<8} {kind:<30} {opts}")


@cli.command()
@friendly
def strategies() -> None:
    """List registered strategies."""
    from tlzoo.engine.zoo import Zoo

    for name, s in Zoo().strategies.items():
        click.echo(f"{name:<20} {s.description}")


@cli.command(name="config")
@click.option("--plugin", "-p", help="Only this backbone plugin's model.options (and the engine keys).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def config_cmd(plugin: str | None, as_json: bool) -> None:
    """Every --set key with its default and meaning: the engine's, then the plugins' and heads' own."""
    from tlzoo.engine.config_keys import engine_keys, format_keys, plugin_keys
    from tlzoo.engine.zoo import Zoo

    zoo = Zoo()
    if plugin:
        zoo.resolve_backbone(plugin, "")  # an unknown name: one line with did-you-mean
    engine, own = engine_keys(), plugin_keys(zoo, plugin or "")
    if as_json:
        click.echo(json.dumps([k.as_dict() for k in engine + own], indent=2, default=str))
        return
    click.echo("Run keys: tl run --set KEY=VALUE, a [section] of a --config TOML file, or the option shown")
    click.echo("\n".join(format_keys(engine)))
    click.echo("\nBackbone options (model.options.KEY) and head options (head.KEY), as the plugins declare them:")
    click.echo("\n".join(format_keys(own)) or "(none)")


class PluginSubgroup(click.Group):
    """A group of ``tl`` that plugins add to (``tl data export`` comes from the ``data_export``
    plugin): loads the plugin commands before a look-up misses, and before listing."""

    def _load_plugin_commands(self, ctx: click.Context) -> None:
        root = ctx.find_root().command
        if isinstance(root, PluginGroup):
            root._load_plugin_commands()

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands(ctx)
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is None:
            self._load_plugin_commands(ctx)
            cmd = super().get_command(ctx, name)
        return cmd


@cli.group(cls=PluginSubgroup)
def data() -> None:
    """Built-in datasets: list them, or export one to disk."""


@data.command(name="list")
@friendly
def data_list() -> None:
    """List the datasets usable as --data NAME."""
    from tlzoo.engine.zoo import Zoo

    for s in Zoo().data_sources:
        if s.can_load(s.name):
            click.echo(f"{s.name:<18} {s.modality:<6}  {s.description}")


# ---------------------------------------------------------------------------- compare
@cli.command()
@click.option(
    "--plugins",
    "-p",
    required=True,
    help="Comma-separated plugins or catalogued models, e.g. bert,glove; NAME=PATH uses local weights.",
)
@click.option("--data", "-d", required=True, help="The dataset, as for `tl run --data`.")
@click.option("--heads", default="logreg,knn", show_default=True, help="Comma-separated fitted heads to probe with.")
@click.option("--text-column", help="Column holding the text [text].")
@click.option("--label-column", help="Column holding the label [label].")
@click.option("--encoding", help="Text file encoding [utf-8].")
@click.option("--out", "-o", help="Folder for leaderboard.csv and leaderboard.png [runs/compare-<time>].")
@click.option("--limit", type=int, help="Use a stratified subset of N examples.")
@click.option("--image-size", type=int, help="Vision: input size (default from the weights).")
@click.option("--max-length", type=int, help="Text: tokens per example [128].")
@click.option("--batch-size", "-b", type=int, help="Batch size for feature extraction [32].")
@click.option("--device", help="auto, cpu or cuda [auto].")
@click.option("--seed", type=int, help="Random seed (the split) [0].")
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
    **options: Any,
) -> None:
    """Probe several backbones with cheap heads on cached features; print a leaderboard."""
    from tlzoo.engine.config import RunConfig

    cfg = RunConfig()
    for param, key in (
        ("text_column", "data.text_column"),
        ("label_column", "data.label_column"),
        ("encoding", "data.encoding"),
        ("limit", "data.limit"),
        ("image_size", "model.image_size"),
        ("max_length", "model.max_length"),
        ("batch_size", "train.batch_size"),
        ("device", "train.device"),
        ("seed", "seed"),
    ):
        if options.get(param) is not None:
            cfg.set(key, options[param])
    cfg.apply_overrides(list(overrides))
    cfg.progress = not quiet
    from tlzoo.commands.compare import compare as run_compare, format_leaderboard, leaderboard_notes, next_command

    result = run_compare(
        plugins.split(","),
        data,
        heads.split(","),
        out,
        config=cfg,
        use_logme=not no_logme,
        log=(lambda m: None) if quiet else _log,
        seeds=seeds,
    )
    if as_json:
        click.echo(json.dumps({"out": str(result.out), "rows": result.rows}, indent=2, default=str))
        return
    click.echo(format_leaderboard(result.rows))
    for note in leaderboard_notes(result.rows):
        click.echo(f"  {note}")
    w = result.winner
    click.echo(f"\nsaved {result.csv_path} and {result.png_path}", err=True)
    if w:
        click.echo(
            f"winner: {w['backbone']} with {w['head']}; fine-tune it with\n  {next_command(cfg, w)}",
            err=True,
        )


# ---------------------------------------------------------------------------- feature cache
@cli.group()
def cache() -> None:
    """The feature cache under $TLZOO_HOME/features: list or clear it."""


@cache.command(name="ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def cache_ls(as_json: bool) -> None:
    """List cached features: model, weights (random init or their source), dataset, split, shape, size, last use."""
    import time

    from tlzoo.engine.cache import cache_entries, cache_root, cache_table, human_bytes, remove_orphans

    orphans = remove_orphans()
    if orphans:
        click.echo(
            f"removed {len(orphans)} partial entr{'y' if len(orphans) == 1 else 'ies'} left by "
            "extractions that were killed",
            err=True,
        )
    entries = cache_entries()
    if as_json:
        click.echo(json.dumps([e.as_dict() for e in entries], indent=2))
        return
    if not entries:
        click.echo(f"The feature cache is empty ({cache_root()}).", err=True)
        return
    for line in cache_table(entries, time.time()):
        click.echo(line)
    total = sum(e.bytes for e in entries)
    click.echo(f"{len(entries)} entries, {human_bytes(total)} in {cache_root()}", err=True)


@cache.command(name="clear")
@click.option(
    "--older-than", "older_than", metavar="AGE", help="Only entries unused for longer than AGE (30m, 12h, 7d, 2w)."
)
@friendly
def cache_clear(older_than: str | None) -> None:
    """Remove cached features (all, or those unused for longer than AGE)."""
    from tlzoo.engine.cache import clear_cache, human_bytes

    removed = clear_cache(older_than)
    click.echo(f"removed {len(removed)} entries ({human_bytes(sum(e.bytes for e in removed))})")


# ---------------------------------------------------------------------------- report, errors
@cli.command()
@click.argument("run_dir", type=click.Path())
@friendly
def report(run_dir: str) -> None:
    """(Re)write report.html and the README.md model card of a finished run."""
    from tlzoo.commands.report import write_report

    page, card = write_report(run_dir)
    click.echo(f"{page}\n{card}")


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.option("--top", type=int, default=20, show_default=True, help="How many of the worst examples to list.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
@friendly
def errors(run_dir: str, top: int, as_json: bool) -> None:
    """The most-confused class pairs and the test examples with the highest loss."""
    import shutil

    from tlzoo.commands.errors_analysis import analyse, format_analysis, to_json

    result = analyse(run_dir, top=top)
    width = max(60, min(160, shutil.get_terminal_size((100, 24)).columns))
    click.echo(to_json(result) if as_json else format_analysis(result, width))


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
