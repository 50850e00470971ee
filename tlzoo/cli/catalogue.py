"""``tl list``, ``tl plugins``, ``tl heads``, ``tl strategies``, ``tl config``, ``tl data`` and ``tl cache``."""

from __future__ import annotations

import json
import time

import click

from tlzoo.cli.app import PluginGroup, cli
from tlzoo.cli.errors import _flat, friendly


# ---------------------------------------------------------------------------- catalogue
@cli.command(name="list")
@click.argument("pattern", default="*")
@click.option("--modality", type=click.Choice(["vision", "text", "multimodal"]), help="Only this modality.")
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
            f"{e.name:<{width}}  {e.plugin:<{pw}} {mark} {e.modality:<10}  {e.registered_by:<{rw}}  {e.description}"
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
@click.option(
    "--plugin", "-p", help="Only this backbone plugin's model.options (and the engine keys); a head's name: --head."
)
@click.option("--head", help="Only this head's options (head.KEY): default, what each takes, and its help.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def config_cmd(plugin: str | None, head: str | None, as_json: bool) -> None:
    """Every --set key with its default and meaning: the engine's, then the plugins' and heads' own."""
    from tlzoo.engine.config_keys import engine_keys, format_keys, head_keys, plugin_keys
    from tlzoo.engine.zoo import Zoo

    zoo = Zoo()
    if plugin and not head and plugin in zoo.heads and plugin not in zoo.backbones:
        plugin, head = None, plugin  # tl config --plugin centroid: a head's name
    if head:
        keys = head_keys(head, zoo.heads.get(head))  # an unknown head: one line with did-you-mean
        if as_json:
            click.echo(json.dumps([k.as_dict() for k in keys], indent=2, default=str))
            return
        click.echo(f"Options of the {head} head: tl run --head {head} --set head.KEY=VALUE")
        click.echo("\n".join(format_keys(keys)) or "(none)")
        return
    if plugin:
        from tlzoo.api.errors import TlzooError, suggest

        try:
            zoo.resolve_backbone(plugin, "")  # an unknown name: one line with did-you-mean
        except TlzooError:
            raise TlzooError(
                f"Unknown plugin, model or head '{plugin}'.{suggest(plugin, [*zoo.backbones, *zoo.heads])} "
                "See `tl list` and `tl heads`."
            ) from None
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
            click.echo(f"{s.name:<18} {s.modality:<10}  {s.description}")


# ---------------------------------------------------------------------------- feature cache
@cli.group()
def cache() -> None:
    """The feature cache under $TLZOO_HOME/features: list or clear it."""


@cache.command(name="ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@friendly
def cache_ls(as_json: bool) -> None:
    """List cached features: model, weights (random init or their source), dataset, split, shape, size, last use."""

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
