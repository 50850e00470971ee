"""The jinja2 templates in ``tlzoo/templates``: report.html, the model card and the scripts ``tl export`` writes.

Templates are files, so the page and the generated code read as what they are, not as string
literals inside Python.  ``*.html.j2`` is autoescaped (every value from a run is plain text);
Markdown and Python templates are not, and escape through the filters below where a value needs
it.  A variable a template names but the caller did not pass is an error (``StrictUndefined``),
never an empty string in a shipped file.
"""

from __future__ import annotations

import functools
import html
import json
import re
from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"

# Markdown's inline syntax: backslash-escaped in values so that a label such as `[x](http://y)`, `![i](y)`,
# `# head`, `*a*` or `a|b` stays text (every ASCII punctuation character may be escaped in CommonMark).
# Parentheses stay as they are: without an unescaped `]` before them they start no link, and weights
# sources such as "random init (--no-pretrained)" read as before.
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_|[]!#~@"})
_AUTOLINK = re.compile(r"(?i)(:)(?=//)|(?<=www)(\.)")  # GFM links bare URLs: break "scheme://" and "www."


def md(text: Any) -> str:
    """A value as Markdown text that renders as itself: one line, HTML escaped, Markdown syntax escaped.

    Newlines (and the other line breaks) become spaces, so no value starts a heading, list or quote;
    ``< > &`` become entities (cards on the Hub render HTML); link, image, emphasis, code and table
    characters get a backslash; ``http://`` and ``www.`` are broken so that GFM does not link them.
    """
    one_line = " ".join(str(text).splitlines())
    escaped = html.escape(one_line, quote=False).translate(_MD_SPECIAL)
    return _AUTOLINK.sub(r"\\\g<0>", escaped)


def yaml(text: Any) -> str:
    """A YAML double-quoted scalar (a JSON string is one), for the card's front matter."""
    return json.dumps(str(text), ensure_ascii=False)


def fence(code: str) -> str:
    """A Markdown code fence longer than any run of backticks in ``code``."""
    mark = "```"
    while mark in code:
        mark += "`"
    return mark


def pyrepr(value: Any) -> str:
    """A Python literal of ``value`` (for generated scripts)."""
    return repr(value)


@functools.cache
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(md=md, yaml=yaml, fence=fence, pyrepr=pyrepr, tojson_str=json.dumps)
    return env


def render(template: str, /, **context: Any) -> str:
    """The template ``template`` (a file in tlzoo/templates) filled in with ``context``."""
    return str(_environment().get_template(template).render(**context))
