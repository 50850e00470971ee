"""The built-in ``flags`` set (issue 16 goal 8): flag pictures and country names, labelled by continent."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tlzoo.api.errors import TlzooError
from tlzoo.api.interfaces import DataOptions


def test_the_flags_set_pairs_pictures_and_names_with_continents() -> None:
    from PIL import Image

    from tlzoo.plugins.fusion.flags import FlagImages, FlagNames, FlagRecords

    records = FlagRecords().load("flags", DataOptions(fields=("image", "name")))
    counts = Counter(records.labels)
    assert set(counts) == {"Africa", "Americas", "Asia", "Europe", "Oceania"}
    assert 200 < len(records) < 260 and min(counts.values()) >= 20
    by_name = dict(zip((r["name"] for r in records.examples), records.labels))
    assert by_name["France"] == "Europe" and by_name["Japan"] == "Asia" and by_name["Kenya"] == "Africa"
    assert by_name["Brazil"] == "Americas" and by_name["Fiji"] == "Oceania" and by_name["Australia"] == "Oceania"
    assert "European Union" not in by_name and "Iceland" not in by_name  # no zone, or an Atlantic one
    assert len(set(records.ids)) == len(records) and all(i.startswith("flag-1f1") for i in records.ids)
    first = records.examples[0]
    with Image.open(first["image"]) as img:
        pixels = np.asarray(img.convert("RGB")).reshape(-1, 3)
        assert img.size == (64, 64) and len(np.unique(pixels, axis=0)) > 5  # a drawn flag, not blank
    images, names = FlagImages().load("flags-images", DataOptions()), FlagNames().load("flags-names", DataOptions())
    assert images.ids == names.ids == records.ids and names.examples[0] == first["name"]
    assert images.modality == "vision" and names.modality == "text" and records.modality == "multimodal"
    with pytest.raises(TlzooError, match="no field 'title'; its fields are image and name"):
        FlagRecords().load("flags", DataOptions(fields=("image", "title")))


def test_the_flags_set_says_how_to_get_tzdata(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tlzoo.plugins.fusion import flags

    monkeypatch.setattr(flags, "ZONE_TAB", tmp_path / "nowhere" / "zone.tab")
    with pytest.raises(TlzooError, match="apt-get install tzdata"):
        flags.flag_table()


def test_tl_data_list_shows_the_flags_views(run_cli) -> None:  # type: ignore[no-untyped-def]
    res = run_cli("data", "list")
    assert res.exit_code == 0, res.output
    for name in ("flags", "flags-images", "flags-names"):
        assert any(line.split()[:1] == [name] for line in res.output.splitlines()), res.output
