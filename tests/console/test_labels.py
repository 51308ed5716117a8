"""The console's labels: both languages hold every key, every key a template asks for
exists, and the browser's language is chosen by quality."""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

import pytest

from exchange.console import DUTIES
from exchange.console.i18n import LANGUAGES, all_labels, negotiate

CONSOLE = Path(__file__).resolve().parents[2] / "exchange" / "console"
LABEL_FILES = sorted((CONSOLE / "labels").glob("*.toml"))
TEMPLATES = sorted((CONSOLE / "templates").rglob("*.html"))
LITERAL_KEY = re.compile(r"""\bt\(\s*(["'])([^"'\s]+)\1\s*[,)]""")
"""``t("key")`` or ``t("key", name=...)``; not ``t("role_" ~ role)`` (a computed key)."""


@pytest.mark.parametrize("path", LABEL_FILES, ids=[p.name for p in LABEL_FILES])
def test_each_labels_file_holds_the_same_keys_in_english_and_chinese(path: Path) -> None:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    assert set(data) == set(LANGUAGES), f"{path.name}: tables {sorted(data)}"
    en, zh = set(data["en"]), set(data["zh"])
    assert en - zh == set(), f"{path.name}: only in [en]"
    assert zh - en == set(), f"{path.name}: only in [zh]"
    for lang in LANGUAGES:
        assert all(str(text).strip() for text in data[lang].values()), f"{path.name} [{lang}]"


def test_no_key_is_defined_twice_across_files() -> None:
    owner: dict[str, str] = {}
    for path in LABEL_FILES:
        for key in tomllib.loads(path.read_text(encoding="utf-8"))["en"]:
            assert key not in owner, f"{key} in both {owner.get(key)} and {path.name}"
            owner[key] = path.name


def test_every_key_the_templates_and_menus_use_exists_in_both_languages() -> None:
    used: dict[str, str] = {}
    for template in TEMPLATES:
        for found in LITERAL_KEY.finditer(template.read_text(encoding="utf-8")):
            used.setdefault(found.group(2), str(template.relative_to(CONSOLE)))
    for duty in DUTIES:
        for key, _path in importlib.import_module(f"exchange.console.{duty}").NAV:
            used.setdefault(key, f"exchange/console/{duty}.py NAV")
    assert "sign_in" in used  # the scan finds keys at all
    labels = all_labels()
    for lang in LANGUAGES:
        missing = {key: where for key, where in used.items() if key not in labels[lang]}
        assert missing == {}, f"[{lang}] lacks"


def test_every_role_the_header_names_has_a_label() -> None:
    for lang in LANGUAGES:
        for role in ("security_officer", "auditor", "enterprise", "subbrain"):
            assert f"role_{role}" in all_labels()[lang]


@pytest.mark.parametrize(
    ("header", "lang"),
    [
        (None, "zh"),
        ("", "zh"),
        ("en", "en"),
        ("en-US,en;q=0.9", "en"),
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh"),
        ("en;q=0.5,zh;q=0.8", "zh"),
        ("zh;q=0.2,en-GB;q=0.9", "en"),
        ("fr-FR,fr;q=0.9", "zh"),
        ("fr-FR,en;q=0.3", "en"),
        ("en;q=0,zh;q=0.1", "zh"),
        ("en;q=0", "zh"),
        ("en;q=abc,zh;q=0.5", "zh"),
        ("ZH-tw", "zh"),
        ("en;q=0.8,zh;q=0.8", "en"),
    ],
    ids=repr,
)
def test_negotiate_picks_by_quality_then_order_and_defaults_to_chinese(
    header: str | None, lang: str
) -> None:
    assert negotiate(header) == lang
