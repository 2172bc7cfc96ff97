"""The documentation site: ``mkdocs build --strict`` succeeds with every page, and the
configuration reference is generated from the settings classes and names every field."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import servekit.cli  # noqa: F401  (imports every module that could define settings)
from servekit.settings import _Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

KEY_PAGES = [
    "index.html",
    "quickstart/index.html",
    "model/index.html",
    "batching/index.html",
    "configuration/index.html",
    "doors-and-clients/index.html",
    "migrate/pyraisdk/index.html",
    "migrate/dubhe-sdk/index.html",
    "migrate/pai-eas/index.html",
    "migrate/virtex/index.html",
    "migrate/mlrun-kserve/index.html",
]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _all_settings_classes() -> list[type[_Settings]]:
    found: list[type[_Settings]] = []
    pending = list(_Settings.__subclasses__())
    while pending:
        cls = pending.pop(0)
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr}\n{done.stdout}"
    return out


def test_site_builds_strict_with_the_key_pages(site: Path) -> None:
    missing = [page for page in KEY_PAGES if not (site / page).is_file()]
    assert not missing, f"pages missing from the built site: {missing}"


def test_every_markdown_page_is_built(site: Path) -> None:
    for page in DOCS.rglob("*.md"):
        rel = page.relative_to(DOCS).with_suffix("")
        built = site / "index.html" if rel.name == "index" else site / rel / "index.html"
        assert built.is_file(), f"{page.relative_to(ROOT)} was not built into {built}"


def test_built_configuration_page_names_every_variable(site: Path) -> None:
    html = (site / "configuration/index.html").read_text(encoding="utf-8")
    for cls in _all_settings_classes():
        for field in cls.model_fields:
            assert cls.env_name(field) in html, f"{cls.__name__}.{field} not on the built page"


def test_configuration_page_is_up_to_date() -> None:
    generated = _load("gen_settings").render()
    assert (DOCS / "configuration.md").read_text(encoding="utf-8") == generated, (
        "docs/configuration.md is out of date: run python docs/gen_settings.py"
    )


def test_configuration_page_lists_every_class_field_and_default() -> None:
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    rows = {line.split(" | ")[1].strip("`"): line for line in page.splitlines() if "| `" in line}
    for cls in _all_settings_classes():
        assert f"## `{cls.__name__}`" in page, f"no section for {cls.__name__}"
        for field, info in cls.model_fields.items():
            env = cls.env_name(field)
            assert env in rows, f"{cls.__name__}.{field}: no row for {env}"
            assert (info.description or "").split()[0] in rows[env], f"{env}: no description"
            default = "none" if info.default is None else str(info.default).lower()
            assert f"`{default}" in rows[env], f"{env}: default {default!r} not shown"


def test_links_outside_docs_become_repository_paths() -> None:
    hooks = _load("hooks")
    text = "see [README](../README.md), [events](events.md) and [x](https://x.org/a.md)"
    assert hooks.rewrite(text, "architecture.md", None) == (
        "see README (`README.md` in the repository), [events](events.md)"
        " and [x](https://x.org/a.md)"
    )
    assert hooks.rewrite("[app](../../examples/a.py#L3)", "migrate/x.md", "https://h/r") == (
        "[app](https://h/r/blob/main/examples/a.py)"
    )
    assert hooks.rewrite("[`bench.py`](../bench.py)", "a.md", None) == "`bench.py`"
