"""README.md's Python is code: its ```python blocks are extracted and run, in order, in one process.

They run as a reader would run them after ``make demo``: in an empty folder, offline, with a
private ``TLZOO_HOME``, on the packaged all-MiniLM-L6-v2 weights and the packaged Rotten Tomatoes
snippets (the README's own choices, so nothing is substituted).  The run they train is then
checked: it exists, and the predictions printed name its classes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```python\n(.*?)^```[ \t]*$", re.M | re.S)


def readme_python() -> list[str]:
    return FENCE.findall((ROOT / "README.md").read_text(encoding="utf-8"))


def test_the_readme_has_python_that_predicts() -> None:
    code = "\n".join(readme_python())
    assert "Engine().run(" in code and "Engine().predict(" in code  # the one documented way to predict
    assert "Predictor" not in code


def test_the_readme_python_blocks_run(tmp_path: Path) -> None:
    blocks = readme_python()
    assert blocks, "README.md has no python block"
    script = tmp_path / "readme_blocks.py"
    script.write_text("\n\n".join(blocks), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TLZOO_", "PYTEST_"))}
    env.update(
        {
            "TLZOO_HOME": str(tmp_path / ".tlzoo-home"),
            "TLZOO_OFFLINE": "1",
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_HOME": str(tmp_path / ".tlzoo-home" / "hf"),
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200
    )
    assert proc.returncode == 0, f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    lines = proc.stdout.splitlines()
    accuracy, run_dir = lines[0].split(maxsplit=1)
    assert 0.0 <= float(accuracy) <= 1.0
    run = tmp_path / run_dir if not os.path.isabs(run_dir) else Path(run_dir)
    classes = json.loads((run / "model.json").read_text(encoding="utf-8"))["classes"]
    predicted = [line.split() for line in lines[1:3]]
    assert len(predicted) == 2 and all(p[0] in classes and 0.0 < float(p[1]) <= 1.0 for p in predicted)
