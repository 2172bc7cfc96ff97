"""MkDocs hook: links from a docs page to a repository file outside ``docs/``.

Pages link to ``../README.md`` or ``../examples/…`` so they read well on a code host, where
those files exist; the built site does not hold them, and ``mkdocs build --strict`` would fail
on each. This hook rewrites such a link to the file on ``repo_url`` when mkdocs.yml sets one,
else to the path as code text, so a reader still knows which file is meant.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

_LINK = re.compile(r"(?<!!)\[([^\]\n]+)\]\(([^)\s]+)\)")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def outside_docs(page_path: str, target: str) -> str | None:
    """The repository path ``target`` names when it leaves the docs folder, else ``None``."""
    if _SCHEME.match(target) or target.startswith(("#", "/")):
        return None
    path = target.split("#", 1)[0]
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(page_path), path))
    if not joined.startswith("../"):
        return None
    return joined.removeprefix("../")


def rewrite(markdown: str, page_path: str, repo_url: str | None) -> str:
    """``markdown`` with every link to a file outside ``docs/`` made a repo link or code text."""

    def replace(match: re.Match[str]) -> str:
        text, target = match.group(1), match.group(2)
        path = outside_docs(page_path, target)
        if path is None:
            return match.group(0)
        if repo_url:
            return f"[{text}]({repo_url.rstrip('/')}/blob/main/{path})"
        if text.strip("`") == path:
            return f"`{path}`"
        return f"{text} (`{path}` in the repository)"

    return _LINK.sub(replace, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs event: rewrite the page's links to files outside ``docs/``."""
    return rewrite(markdown, page.file.src_uri, config.get("repo_url"))
