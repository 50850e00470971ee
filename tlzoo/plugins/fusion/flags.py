"""The built-in ``flags`` dataset: country flags and country names, labelled by continent.

A second image + text set (issue 16 goal 8), made from three Debian packages (``make data``
installs them): ``unicode-data``'s ``emoji-test.txt`` lists the flag emoji (two regional
indicator letters, the ISO 3166 code, and the name, "flag: France");
``fonts-noto-color-emoji`` draws them (rendered by Pillow as for the ``emoji`` set, into the
same folder); ``tzdata``'s ``zone.tab`` gives the label: the area of the country's first time
zone ("Europe/Paris" -> Europe; America -> Americas; Pacific and Australia -> Oceania).
Territories whose zone names no continent (Atlantic, Indian, Antarctica, Arctic) or that have
no zone (Ascension, the EU, the UN ...) are left out: about 225 records in 5 classes.

Neither input gives the label alone: a flag's colours and pattern only hint at a region (the
pan-African and pan-Arab colours, the Southern Cross), and a name ("Guyana", "Georgia",
"Réunion") says little to a model that has not learnt geography.  Three views:

* ``flags``: records ``{"image": PNG path, "name": text}`` (``--plugin image=... --plugin name=...``);
* ``flags-images``: the flags alone; ``flags-names``: the names alone.
"""

from __future__ import annotations

import os
from pathlib import Path

from tlzoo.api.errors import TlzooError
from tlzoo.infra.lifecycle import tlzoo_home

from . import emoji

ZONE_TAB = Path(os.environ.get("TLZOO_ZONE_TAB", "/usr/share/zoneinfo/zone.tab"))
REGIONS = {"Africa": "Africa", "America": "Americas", "Asia": "Asia", "Europe": "Europe"}
REGIONS |= {"Pacific": "Oceania", "Australia": "Oceania"}
FIELDS = ("image", "name")
_A = 0x1F1E6  # REGIONAL INDICATOR SYMBOL LETTER A


def zone_areas() -> dict[str, str]:
    """ISO 3166 code -> the area of its first time zone in zone.tab ("FR" -> "Europe")."""
    if not ZONE_TAB.is_file():
        raise TlzooError(
            "The flags dataset needs Debian's tzdata (`apt-get install tzdata`, or `make data`); "
            "or set TLZOO_ZONE_TAB to a zone.tab file."
        )
    areas: dict[str, str] = {}
    for line in ZONE_TAB.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if line.startswith("#") or len(parts) < 3:
            continue
        areas.setdefault(parts[0], parts[2].split("/", 1)[0])
    return areas


def flag_table() -> list[tuple[str, str, str]]:
    """(code points as hex joined by '-', country name, continent) of every kept flag."""
    areas, rows = zone_areas(), []
    for points, name, group in emoji.emoji_table():
        letters = points.split("-")
        if group != "Flags" or len(letters) != 2 or not all(_A <= int(p, 16) < _A + 26 for p in letters):
            continue
        code = "".join(chr(int(p, 16) - _A + ord("A")) for p in letters)
        region = REGIONS.get(areas.get(code, ""))
        if region:
            rows.append((points, name.removeprefix("flag:").strip(), region))
    return rows


class _FlagSource(emoji.PictureNameSource):
    set_name = "flags"

    def records(self) -> tuple[list[str], list[str], list[str], list[str]]:
        """(image paths, country names, continents, ids)."""
        folder = tlzoo_home() / "data" / "emoji"  # the emoji set renders the same glyphs: share them
        table = flag_table()
        return (
            [emoji.render(p, folder) for p, _, _ in table],
            [n for _, n, _ in table],
            [r for _, _, r in table],
            [f"flag-{p}" for p, _, _ in table],
        )


class FlagRecords(_FlagSource):
    name = "flags"
    modality = "multimodal"
    description = "about 225 country flags and names, labelled by continent (fused runs: image=..., name=...)"


class FlagImages(_FlagSource):
    name, view = "flags-images", "images"
    modality = "vision"
    description = "the country flags alone (64 x 64), labelled by continent"


class FlagNames(_FlagSource):
    name, view = "flags-names", "names"
    modality = "text"
    description = "the country names alone ('France'), labelled by continent"


SOURCES = (FlagRecords(), FlagImages(), FlagNames())
