"""tlzoo against the tools a user would pick instead: every goal of issue 10 in one run.

    python bench/bench_peers.py [--quick] [--only extract,cache,...] [--json bench/results/peers.json]

Each ``bench/peers_<area>.py`` module measures one area (text and image extraction against
sentence-transformers ``encode`` and a plain timm loop, the feature cache, start-up, a
fine-tune epoch against a plain PyTorch loop, peak memory as the data grows) with
interleaved rounds inside the module, and returns rows of
``{goal, what, tlzoo, peer, unit, ratio, bar, met, note}``.  This script runs the modules
one after another, each in its own interpreter, never side by side (the machine has two
cores), prints one markdown
table (the one BENCHMARKS.md holds) and writes the rows, the machine and the time to JSON.

``--quick`` is the same method on fewer rounds and examples (a few minutes per module);
``make bench`` runs the full one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ORDER = ["startup", "cache", "extract", "train", "memory"]  # cheap and quiet first; memory last (largest data)


def modules() -> dict[str, Path]:
    found = {p.stem.removeprefix("peers_"): p for p in sorted(HERE.glob("peers_*.py"))}
    return {name: found[name] for name in sorted(found, key=lambda n: (ORDER.index(n) if n in ORDER else 99, n))}


def run_area(path: Path, quick: bool) -> list[dict[str, Any]]:
    """One area's ``measure`` in a fresh interpreter: no area inherits another's loaded models, thread
    pools or memory (a child forked from a large process starts with that process's peak RSS)."""
    with tempfile.TemporaryDirectory() as tmp:
        rows = Path(tmp) / "rows.json"
        code = (
            "import json, sys\n"
            f"sys.argv = [{str(path)!r}]\n"
            f"sys.path.insert(0, {str(HERE)!r})\n"
            "import importlib.util\n"
            f"spec = importlib.util.spec_from_file_location('tlzoo_bench_area', {str(path)!r})\n"
            "module = importlib.util.module_from_spec(spec)\n"
            "spec.loader.exec_module(module)\n"
            f"rows = module.measure(quick={quick!r})\n"
            f"open({str(rows)!r}, 'w').write(json.dumps(rows, default=str))\n"
        )
        proc = subprocess.run([sys.executable, "-c", code], cwd=HERE.parent)
        if proc.returncode != 0 or not rows.is_file():
            raise RuntimeError(f"{path.name} exited with {proc.returncode}")
        return list(json.loads(rows.read_text()))


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    info["platform"] = platform.platform()
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return info


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)


def table(rows: list[dict[str, Any]]) -> str:
    cols = ["goal", "what", "tlzoo", "peer", "unit", "ratio", "bar", "met", "note"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = [fmt(r.get(c)) for c in cols]
        cells[cols.index("met")] = {True: "yes", False: "**no**"}.get(r.get("met"), "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and examples, same method")
    ap.add_argument("--only", default="", help="comma-separated areas: " + ", ".join(modules()))
    ap.add_argument("--json", type=Path, default=HERE / "results" / "peers.json")
    args = ap.parse_args(argv)
    wanted = [a.strip() for a in args.only.split(",") if a.strip()]
    found = modules()
    unknown = [a for a in wanted if a not in found]
    if unknown:
        print(f"error: unknown area(s) {', '.join(unknown)}; known: {', '.join(found)}", file=sys.stderr)
        return 2
    rows: list[dict[str, Any]] = []
    started = time.time()
    for name, path in found.items():
        if wanted and name not in wanted:
            continue
        t0 = time.perf_counter()
        print(f"== {name} ({path.name}) ...", file=sys.stderr, flush=True)
        try:
            got = run_area(path, args.quick)
        except Exception as exc:  # one area failing must not hide the others' figures
            traceback.print_exc()
            got = [{"goal": "?", "what": f"{name}: failed", "met": False, "note": f"{type(exc).__name__}: {exc}"}]
        for r in got:
            r.setdefault("area", name)
        rows.extend(got)
        print(table(got), file=sys.stderr)
        print(f"   {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print(table(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"quick": args.quick, "started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
             "seconds": round(time.time() - started), "machine": machine(), "rows": rows},
            indent=1, default=str,
        ) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    print(f"rows written to {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
