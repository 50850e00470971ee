"""How long `tl list --json` (and `tl --help`) take with third-party plugins installed.

Installs, in a temporary folder on PYTHONPATH, two light plugins as ``pip install`` lays them
out (a ``*.dist-info`` folder with ``entry_points.txt`` beside the module), each cataloguing 25
models and registering a backbone whose heavy imports sit inside the hook; with the example
plugin installed in the venv (``examples/tlzoo-example``) that makes three.  For contrast, a
fourth plugin that imports torch at the top of its module.  Each configuration runs the
command ``--repeat`` times in a fresh process (after a warm-up run, bytecode cached as for an
installed package) and reports the median and the fastest wall time, the number of catalogue
entries, and whether torch was imported.

    python bench/bench_list.py [--repeat 9]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIGHT = '''"""A light benchmark plugin: catalogue entries at import, heavy work inside the hooks."""
from tlzoo import hookimpl


@hookimpl
def tlzoo_register_catalogue(register):
    for i in range(25):
        register({{"name": "{name}-model-%d" % i, "plugin": "{name}", "modality": "text",
                  "default": i == 0, "description": "benchmark model %d" % i}})


@hookimpl
def tlzoo_register_backbones(register):
    import torch  # only when a backbone is needed
    from tlzoo import BackboneFactory
'''

HEAVY = '''"""A heavy benchmark plugin: imports torch at the top of its module (what not to do)."""
import torch  # noqa: F401
from tlzoo import hookimpl


@hookimpl
def tlzoo_register_catalogue(register):
    register({"name": "heavy-model", "plugin": "heavy", "modality": "vision", "description": "benchmark"})
'''

PROBE = (
    "import json, sys, time\nt = time.perf_counter()\nfrom tlzoo.cli import cli\ntry:\n"
    "    cli.main(sys.argv[1:], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
    "print(json.dumps({'torch': 'torch' in sys.modules}), file=sys.stderr)\n"
)


def install(site: Path, dist: str, module: str, source: str) -> None:
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[tlzoo]\n{module} = {module}\n")
    (site / f"{module}.py").write_text(source)


def measure(args: list[str], env: dict[str, str], repeat: int) -> dict[str, object]:
    times, entries, torch = [], None, None
    subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True)  # warm-up
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(done.stderr)
        torch = json.loads(done.stderr.strip().splitlines()[-1])["torch"]
        if "--json" in args:
            entries = len(json.loads(done.stdout))
    return {
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "entries": entries,
        "torch_imported": torch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    opts = parser.parse_args()
    import importlib.util

    if importlib.util.find_spec("tlzoo_example") is None:
        raise SystemExit("install the example plugin first: pip install -e examples/tlzoo-example (make venv)")
    with tempfile.TemporaryDirectory() as tmp:
        light, heavy = Path(tmp) / "light", Path(tmp) / "heavy"
        for site in (light, heavy):
            install(site, "tlzoo-bench-a", "bench_a", LIGHT.format(name="bench_a"))
            install(site, "tlzoo-bench-b", "bench_b", LIGHT.format(name="bench_b"))
        install(heavy, "tlzoo-bench-heavy", "bench_heavy", HEAVY)
        # as installed packages run: bytecode cached (pip compiles it; PYTHONDONTWRITEBYTECODE would
        # recompile every module in every process), after one warm-up run per configuration
        base = {
            k: v for k, v in os.environ.items() if k not in ("TLZOO_PLUGINS", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE")
        }
        base["HF_HUB_OFFLINE"] = "1"
        configs = {
            "no plugins (TLZOO_PLUGINS= : registry.toml only)": ({**base, "TLZOO_PLUGINS": ""}, ["list", "--json"]),
            "3 plugins (example + 2 light)": ({**base, "PYTHONPATH": str(light)}, ["list", "--json"]),
            "3 plugins, `tl --help`": ({**base, "PYTHONPATH": str(light)}, ["--help"]),
            "3 plugins + 1 importing torch at its top": ({**base, "PYTHONPATH": str(heavy)}, ["list", "--json"]),
        }
        rows = {name: measure(args, env, opts.repeat) for name, (env, args) in configs.items()}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(json.dumps({"repeat": opts.repeat, "load_average_1min": round(load, 1), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
