"""GET /docs renders in a real browser (headless Chromium, Debian package ``chromium``) from
the files servekit ships: no network beyond the server itself."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

import servekit

PNG = b"\x89PNG\r\n\x1a\n"


class Echo(servekit.Model):
    name = "echo"

    def predict(self, batch: list[Any]) -> list[Any]:
        return batch


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "headless Chromium is needed: apt-get install chromium"
    command = [
        exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-dev-shm-usage", f"--user-data-dir={profile}",
        # only the server on 127.0.0.1 is reachable: a CDN or other host would fail to load
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--virtual-time-budget=10000", "--window-size=1280,1600", *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_docs_page_renders_every_operation_offline(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    live = serve([Echo()], token="s3cret")  # the page and the document are public
    url = f"{live.url}/docs"
    dom = _chromium("--dump-dom", url, profile=tmp_path / "dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert "swagger-ui" in html
    for shown in ("/v2/models/{name}/infer", "/v2/health/ready", "/api/predict/{name}", "/metrics"):
        assert shown in html, f"{shown} not rendered"
    assert "Inference (Open Inference Protocol v2)" in html
    assert "Failed to load API definition" not in html

    shot = tmp_path / "docs.png"
    run = _chromium(f"--screenshot={shot}", url, profile=tmp_path / "shot")
    assert run.returncode == 0, run.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(PNG)
    assert len(data) > 50_000  # a rendered page, not a blank one


def test_docs_page_loads_only_shipped_files(serve: Callable[..., Any]) -> None:
    live = serve([Echo()])
    page = httpx.get(f"{live.url}/docs", timeout=10)
    assert page.headers["content-type"].startswith("text/html")
    assert "https://" not in page.text and "http://" not in page.text
    shipped = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}
    for name, media in shipped.items():
        asset = httpx.get(f"{live.url}/docs/{name}", timeout=10)
        assert asset.status_code == 200
        assert asset.headers["content-type"].startswith(media)
        assert len(asset.content) > 100_000
    assert httpx.get(f"{live.url}/docs/LICENSE", timeout=10).text.startswith("\n")
    missing = httpx.get(f"{live.url}/docs/../app.py", timeout=10)
    assert missing.status_code == 404
    unknown = httpx.get(f"{live.url}/docs/secret.txt", timeout=10)
    assert unknown.status_code == 404
    assert "no docs file 'secret.txt'" in unknown.json()["error"]
