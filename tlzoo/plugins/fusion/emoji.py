"""The built-in ``emoji`` dataset: pictures of emoji with their names, labelled by Unicode group.

Made from two Debian packages (``make data`` installs them): ``unicode-data`` gives
``emoji-test.txt`` (each emoji's code points, name, group and subgroup) and
``fonts-noto-color-emoji`` the glyphs, which Pillow renders (a CBDT bitmap font, loaded at
size 109).  Fully-qualified emoji only, without skin-tone variants and the ``Component``
group: about 1,900 records in 9 groups.  Three views of the same records:

* ``emoji``: records ``{"image": PNG path, "name": text}`` for a fused run
  (``--plugin image=... --plugin name=...``);
* ``emoji-images``: the pictures alone (a vision run); ``emoji-names``: the names alone (text).

The pictures are rendered once into ``$TLZOO_HOME/data/emoji/`` (64 x 64 PNG, written under a
temporary name and renamed).
"""

from __future__ import annotations

import os
from pathlib import Path

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import DataOptions, Dataset, DataSource
from tlzoo.infra.lifecycle import tlzoo_home

EMOJI_TEST = Path(os.environ.get("TLZOO_EMOJI_TEST", "/usr/share/unicode/emoji/emoji-test.txt"))
EMOJI_FONT = Path(os.environ.get("TLZOO_EMOJI_FONT", "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"))
SIZE = 64
FIELDS = ("image", "name")


def emoji_table() -> list[tuple[str, str, str]]:
    """(code points as hex joined by '-', name, group) of every kept emoji, in the file's order."""
    if not EMOJI_TEST.is_file() or not EMOJI_FONT.is_file():
        raise TlzooError(
            "The emoji dataset needs Debian's unicode-data and fonts-noto-color-emoji "
            "(`apt-get install unicode-data fonts-noto-color-emoji`, or `make data`); or set TLZOO_EMOJI_TEST "
            "and TLZOO_EMOJI_FONT to emoji-test.txt and NotoColorEmoji.ttf."
        )
    rows, group = [], ""
    for line in EMOJI_TEST.read_text(encoding="utf-8").splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
            continue
        if not line or line.startswith("#") or "; fully-qualified" not in line:
            continue
        points = line.split(";", 1)[0].split()
        name = line.split("#", 1)[1].split(None, 2)[-1].strip() if "#" in line else ""
        name = name.split(" ", 1)[1] if name[:1].upper() == "E" and name[1:2].isdigit() else name
        if group == "Component" or "skin tone" in name:
            continue
        rows.append(("-".join(p.lower() for p in points), name, group))
    return rows


def render(points: str, folder: Path) -> str:
    """The emoji's PNG (rendered once), as a path."""
    path = folder / f"{points}.png"
    if path.is_file():
        return str(path)
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(EMOJI_FONT), 109)
    text = "".join(chr(int(p, 16)) for p in points.split("-"))
    canvas = Image.new("RGBA", (160, 160), (255, 255, 255, 0))
    ImageDraw.Draw(canvas).text((8, 8), text, font=font, embedded_color=True)
    box = canvas.getbbox() or (0, 0, 160, 160)
    glyph = canvas.crop(box)
    side = max(glyph.size)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(glyph, ((side - glyph.width) // 2, (side - glyph.height) // 2), glyph)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{points}.{os.getpid()}.png"
    square.resize((SIZE, SIZE), Image.Resampling.LANCZOS).save(tmp)
    os.replace(tmp, path)
    return str(path)


class PictureNameSource(DataSource):
    """A built-in set of pictures and names with one label each, in three views (``view``): ``records``
    (both, for fused runs: fields image and name), ``images`` or ``names`` alone; the same ids in each."""

    description = ""
    view = "records"
    set_name = ""  # "emoji", "flags": the set as its errors name it

    def can_load(self, location: str) -> bool:
        return location == self.name

    def names(self) -> set[str]:
        return {self.name}

    def records(self) -> tuple[list[str], list[str], list[str], list[str]]:
        """(image paths, names, labels, ids)."""
        raise NotImplementedError

    def load(self, location: str, options: DataOptions) -> Dataset:
        if self.view == "records":
            unknown = [f for f in options.fields if f not in FIELDS]
            if unknown:
                raise TlzooError(
                    f"The {self.set_name} dataset has no field '{unknown[0]}'; its fields are image and name."
                )
        images, names, labels, ids = self.records()
        if self.view == "images":
            return Dataset(images, labels, modality="vision", ids=ids, name=self.name)
        if self.view == "names":
            return Dataset(names, labels, modality="text", ids=ids, name=self.name)
        examples = [{"image": i, "name": n} for i, n in zip(images, names)]
        return Dataset(examples, labels, modality="multimodal", ids=ids, name=self.name)


class _EmojiSource(PictureNameSource):
    set_name = "emoji"

    def records(self) -> tuple[list[str], list[str], list[str], list[str]]:
        """(image paths, names, groups, ids)."""
        folder = tlzoo_home() / "data" / "emoji"
        table = emoji_table()
        return (
            [render(p, folder) for p, _, _ in table],
            [n for _, n, _ in table],
            [g for _, _, g in table],
            [f"emoji-{p}" for p, _, _ in table],
        )


class EmojiRecords(_EmojiSource):
    name = "emoji"
    modality = "multimodal"
    description = "about 1,900 emoji: picture and name, labelled by Unicode group (fused runs: image=..., name=...)"


class EmojiImages(_EmojiSource):
    name, view = "emoji-images", "images"
    modality = "vision"
    description = "the emoji pictures alone (64 x 64), labelled by Unicode group"


class EmojiNames(_EmojiSource):
    name, view = "emoji-names", "names"
    modality = "text"
    description = "the emoji names alone ('grinning face'), labelled by Unicode group"


SOURCES = (EmojiRecords(), EmojiImages(), EmojiNames())
