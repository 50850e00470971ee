"""``python -m tlzoo``: the ``tl`` command, e.g. ``torchrun --nproc-per-node 4 -m tlzoo run ...``."""

from __future__ import annotations

from tlzoo.cli import cli


def main() -> None:
    cli(prog_name="tl")


if __name__ == "__main__":
    main()
