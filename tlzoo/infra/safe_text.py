"""Data that leaves tlzoo for a terminal or a spreadsheet, made harmless there.

Labels, ids and texts come from the user's data, and a run folder may come from someone
else.  Two places act on what such strings hold:

* a terminal runs escape sequences: OSC 52 writes the clipboard, OSC 8 makes a live link,
  ``ESC [2J`` clears the screen.  :func:`printable` removes every escape sequence and
  replaces the other control characters (C0 but tab and newline, DEL, C1) by ``?``; every
  line tlzoo prints that carries data goes through it (the run log, ``tl predict``,
  ``tl errors``, the one-line errors).
* a spreadsheet runs a cell that starts with ``=``, ``+``, ``-``, ``@`` (and tab or
  carriage return) as a formula.  :func:`spreadsheet_cell` prefixes such a cell with
  ``'``, as OWASP advises for CSV injection; :func:`spreadsheet_value` undoes it when
  tlzoo reads its own CSV back.  A cell that starts with ``'`` followed by such a cell is
  prefixed too, so reading back is exact for every string.

Numbers tlzoo formats itself (probabilities, losses) are not data and are written as they are.
"""

from __future__ import annotations

import re

# ESC followed by: an OSC/DCS/SOS/PM/APC string (ended by BEL or ST), a CSI sequence, or one more character;
# and the 8-bit forms of CSI (0x9b) and of the string introducers (0x90, 0x9d, 0x98, 0x9e, 0x9f)
_ESCAPE = re.compile(
    r"(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|\x1b[ -/]*[0-~]?"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def printable(text: object) -> str:
    """``text`` without terminal escape sequences, other control characters shown as ``?``."""
    return _CONTROL.sub("?", _ESCAPE.sub("", str(text)))


def _needs_quote(cell: str) -> bool:
    return cell.lstrip("'").startswith(FORMULA_STARTS)


def spreadsheet_cell(value: object) -> str:
    """``value`` as a CSV cell no spreadsheet reads as a formula (a leading ``'`` where needed)."""
    cell = str(value)
    return "'" + cell if _needs_quote(cell) else cell


def spreadsheet_value(cell: str) -> str:
    """The value :func:`spreadsheet_cell` wrote as ``cell``."""
    return cell[1:] if cell.startswith("'") and _needs_quote(cell[1:]) else cell
