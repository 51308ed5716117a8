"""Chinese and English labels, chosen by the browser's ``Accept-Language``.

Labels live in ``labels/*.toml`` (one file a duty, plus ``common.toml``), each
with an ``[en]`` and a ``[zh]`` table holding the same keys (a test checks).
Templates call ``t("key")``; a key missing from both languages shows as
itself, so a gap is visible, never blank.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Final

__all__ = ["LANGUAGES", "Labels", "all_labels", "negotiate"]

LANGUAGES: Final = ("zh", "en")
"""What the console speaks; Chinese first (the users are in Jiangxi)."""

_DIR = Path(__file__).resolve().parent / "labels"


@cache
def all_labels() -> Mapping[str, Mapping[str, str]]:
    """``{language: {key: text}}`` from every labels file."""
    merged: dict[str, dict[str, str]] = {lang: {} for lang in LANGUAGES}
    for path in sorted(_DIR.glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        for lang in LANGUAGES:
            for key, text in data.get(lang, {}).items():
                merged[lang][str(key)] = str(text)
    return merged


def negotiate(accept_language: str | None) -> str:
    """The language to answer in: the first of the browser's preferences the console
    speaks (by quality), else Chinese."""
    if not accept_language:
        return "zh"
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else "zh"


class Labels:
    """``t(key, **values)`` for one language."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self._texts = all_labels()[lang]
        self._fallback = all_labels()["en"]

    def __call__(self, key: str, **values: object) -> str:
        text = self._texts.get(key) or self._fallback.get(key) or key
        return text.format(**values) if values else text
