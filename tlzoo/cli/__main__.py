"""``python -m tlzoo.cli``: the ``tl`` command (as ``python -m tlzoo``)."""

from tlzoo.cli import main

main()
