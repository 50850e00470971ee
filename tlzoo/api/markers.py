"""The pluggy markers of the ``tlzoo`` project: ``hookimpl`` for plugins, ``hookspec`` for the specifications.

Alone in a module so the step names (``tlzoo.api.steps``) and the hook specifications
(``tlzoo.api.hookspecs``) can both use them without importing each other.
"""

from __future__ import annotations

import pluggy

PROJECT = "tlzoo"  # the entry-point group and pluggy project name
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
