"""Builds the documentation site and looks at it in headless Chromium (slow: about a minute).

``make docs`` is ``scripts/docs_benchmark_plots.py`` then ``mkdocs build --strict``;
this test does the same into a temporary folder, then checks every page
of the built site: no broken internal link (files and #anchors), nothing
loaded from the network, and an entry with content for every public name
in the API reference. Finally it serves the site on 127.0.0.1 and has
Chromium screenshot the landing page, the layer's API page and the
benchmarks page; the PNGs go to ``$DOCS_SCREENSHOTS`` (default
``build/docs-screenshots``), and the test prints where.
"""

import functools
import html
import html.parser
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

import pytest

from tests.test_readme import ROOT

pytestmark = pytest.mark.slow

SCREENSHOTS = {
    "landing.png": "",
    "api_layer.png": "api/layer/",
    "benchmarks.png": "benchmarks/",
}


class _Page(html.parser.HTMLParser):
    """Collects ids, links and loaded resources of one HTML page."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []  # <a href>
        self.resources: list[str] = []  # what the browser loads: <script src>, <img src>, <link href>, ...

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        for key in ("src", "data-src"):
            if attrs.get(key):
                self.resources.append(attrs[key])
        if tag == "link" and attrs.get("href"):
            self.resources.append(attrs["href"])


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _target(site: Path, page: Path, url: str) -> tuple[Path, str] | None:
    """The file and fragment a relative URL of ``page`` points to; None for an external or special URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme or parts.netloc or url.startswith(("mailto:", "javascript:")):
        return None
    if not parts.path:
        path = page
    elif parts.path.startswith("/"):  # 404.html links from the site's root
        path = (site / urllib.parse.unquote(parts.path).lstrip("/")).resolve()
    else:
        path = (page.parent / urllib.parse.unquote(parts.path)).resolve()
    if path.is_dir():
        path = path / "index.html"
    return path, urllib.parse.unquote(parts.fragment)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs", reason="the docs extra is needed (pip install -e '.[docs]')")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("matplotlib")
    out = tmp_path_factory.mktemp("site") / "site"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "NO_MKDOCS_2_WARNING": "1",
    }
    subprocess.run([sys.executable, "scripts/docs_benchmark_plots.py"], cwd=ROOT, env=env, check=True, timeout=300)
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return out


def test_no_broken_internal_links_and_nothing_from_the_network(site):
    pages = {path.resolve(): _parse(path) for path in site.rglob("*.html")}
    assert len(pages) >= 15, sorted(pages)
    broken, external = [], []
    for path, page in pages.items():
        for url in page.links + page.resources:
            target = _target(site, path, url)
            if target is None:
                if url in page.resources:
                    external.append(f"{path.relative_to(site)}: {url}")
                continue
            file, fragment = target
            if not file.exists():
                broken.append(f"{path.relative_to(site)}: {url} (no file)")
            elif fragment and file.suffix == ".html" and fragment not in pages[file.resolve()].ids:
                broken.append(f"{path.relative_to(site)}: {url} (no #{fragment})")
    assert not broken, "broken internal links:\n" + "\n".join(broken)
    assert not external, "pages load from the network:\n" + "\n".join(external)


def _api_entries(html_text: str) -> dict[str, str]:
    """Text of each top-level API entry (heading id ``keras_lincon.Name``) up to the next one, tags removed."""
    heads = list(re.finditer(r'id="keras_lincon\.(\w+)"', html_text))
    entries = {}
    for i, head in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(html_text)
        body = re.sub(r"<[^>]+>", " ", html_text[html_text.index(">", head.end()) + 1 : end])
        entries[f"keras_lincon.{head.group(1)}"] = " ".join(html.unescape(body).split())
    return entries


def test_every_public_name_has_a_filled_api_entry(site):
    import keras_lincon

    entries = {}
    for page in (site / "api").rglob("index.html"):
        entries.update(_api_entries(page.read_text(encoding="utf-8")))
    missing = [name for name in keras_lincon.__all__ if f"keras_lincon.{name}" not in entries]
    assert not missing, f"no API entry for {missing}"
    empty = {
        name: entries[f"keras_lincon.{name}"].strip()[:80]
        for name in keras_lincon.__all__
        if len(entries[f"keras_lincon.{name}"]) < 2 * len(name) + 20
    }
    assert not empty, f"API entries without content: {empty}"
    text = entries["keras_lincon.LinearInequalityConstraint"]
    for part in ("Parameters", "scaled_rows", "Examples", "max_violation"):
        assert part in text, f"the layer's API entry lacks {part!r}"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_screenshots_in_headless_chromium(site, capsys):
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium (Debian: apt-get install chromium)")
    out = Path(os.environ.get("DOCS_SCREENSHOTS", ROOT / "build" / "docs-screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for name, path in SCREENSHOTS.items():
            png = out / name
            png.unlink(missing_ok=True)
            proc = subprocess.run(
                [
                    browser,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--hide-scrollbars",
                    "--window-size=1280,1600",
                    "--virtual-time-budget=3000",
                    f"--screenshot={png}",
                    f"http://127.0.0.1:{server.server_port}/{path}",
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert png.is_file() and png.stat().st_size > 20_000, f"{name}: no screenshot\n{proc.stderr[-2000:]}"
    finally:
        server.shutdown()
    with capsys.disabled():  # the reader looks at them: say where they are
        print(f"\ndocs screenshots: {out} ({', '.join(SCREENSHOTS)})")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
