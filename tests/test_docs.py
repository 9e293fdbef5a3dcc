"""The documentation site's sources (docs/, mkdocs.yml): its examples run, its API reference is complete.

Every ```python block of every page under docs/ runs as the README's do
(tests/test_readme.py): in a fresh process, in a temporary folder, with
``# continued`` chaining a block to the ones before it. A chain runs once,
as its last block (which holds all of it). Building the site and looking
at it in a browser is the slow test in tests/test_docs_site.py.
"""

import re
from pathlib import Path

import pytest

from tests.test_readme import README, ROOT, markdown_blocks, run_block

DOCS = ROOT / "docs"
# Pages kept as they are written elsewhere (the architecture notes follow the code's modules).
NOT_USER_PAGES = {"ARCHITECTURE.md"}
FENCE = re.compile(r"^```(\S*)", re.M)
KNOWN_LANGUAGES = {"python", "bash", "text", "json"}  # only python blocks are code to run; the others are shown


def pages() -> list[Path]:
    """The site's pages (docs/assets/ holds generated files, not pages)."""
    return sorted(p for p in DOCS.rglob("*.md") if "assets" not in p.relative_to(DOCS).parts)


def doc_chains() -> list[tuple[str, str]]:
    """(page:line, code) of the last block of every chain of every page."""
    chains = []
    for page in pages():
        blocks = markdown_blocks(page)
        text = page.read_text(encoding="utf-8")
        starts = [text.count("\n", 0, m.start()) + 1 for m in re.finditer(r"^```python\n", text, flags=re.M)]
        for i, (line, code) in enumerate(blocks):
            continued_next = i + 1 < len(blocks) and blocks[i + 1][1].startswith(code + "\n")
            if not continued_next:
                first = next(s for s in starts if s <= line and blocks[starts.index(s)][1] in code)
                where = f"{page.relative_to(ROOT)}:{first}" + (f"-{line}" if first != line else "")
                chains.append((where, code))
    return chains


CHAINS = doc_chains()


def test_docs_have_examples():
    assert len(CHAINS) >= 20, "the site's guides should show runnable examples"
    assert any("LinearInequalityConstraint" in code and "fit(" in code for _, code in CHAINS)


@pytest.mark.parametrize("where,code", CHAINS, ids=[where for where, _ in CHAINS])
def test_docs_block_runs(where, code, tmp_path):
    run_block(code, where, tmp_path)


@pytest.mark.parametrize("page", [*pages(), README], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_code_block_is_known(page):
    """Each fenced block is python (run above) or says what else it is (bash, text, json): none is untested Python
    under another name, and none is left without a language."""
    text = page.read_text(encoding="utf-8")
    languages = FENCE.findall(text)[::2]  # opening fences only
    unknown = sorted({lang or "(none)" for lang in languages} - KNOWN_LANGUAGES)
    assert not unknown, f"{page.name}: code blocks with unknown language {unknown}"
    assert languages.count("python") == len(markdown_blocks(page))


def test_api_reference_covers_every_public_name():
    import keras_lincon

    directive = re.compile(r"^::: (\S+)\s*$", re.M)
    found = [name for page in sorted((DOCS / "api").glob("*.md")) for name in directive.findall(page.read_text())]
    # Top-level identifiers only: they keep working whichever submodule defines a name.
    assert all(re.fullmatch(r"keras_lincon\.\w+", name) for name in found), found
    names = [name.split(".", 1)[1] for name in found]
    assert sorted(names) == sorted(set(names)), "a name is documented twice"
    public = set(keras_lincon.__all__)
    assert set(names) == public, f"missing: {sorted(public - set(names))}, extra: {sorted(set(names) - public)}"


@pytest.mark.parametrize(
    "page", [p for p in pages() if p.name not in NOT_USER_PAGES] + [README], ids=lambda p: str(p.relative_to(ROOT))
)
def test_pages_use_public_names_only(page):
    """Examples and prose import ``keras_lincon`` (public names of ``__all__``) and ``keras_lincon.experiments``
    only: the library's internal modules may move."""
    import keras_lincon

    public = set(keras_lincon.__all__) | {"experiments", "__version__", "__all__"}
    text = page.read_text(encoding="utf-8")
    dotted = {m for m in re.findall(r"keras_lincon\.(\w+)", text) if m not in public}
    imports = re.findall(r"from keras_lincon import ([\w, ]+)", text)
    imported = {name.strip() for names in imports for name in names.split(",")}
    assert not dotted | (imported - public), f"{page.name} names internal modules: {sorted(dotted | imported)}"


def test_nav_lists_every_page():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def flatten(items):
        for item in items:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            yield from flatten(value) if isinstance(value, list) else [value]

    nav = set(flatten(config["nav"]))
    assert nav == {str(p.relative_to(DOCS)) for p in pages()}
    assert config["theme"]["font"] is False, "no web fonts: the site loads nothing from the network"
    assert config["strict"] is True
    assert not config.get("extra_javascript") and not config.get("extra_css")


def test_make_docs_is_strict():
    makefile = (ROOT / "Makefile").read_text()
    target = re.search(r"^docs:.*?(?=^\S|\Z)", makefile, flags=re.S | re.M)
    assert target and "--strict" in target.group(0) and "docs_benchmark_plots.py" in target.group(0)
    assert re.search(r"^\.PHONY:.*\bdocs\b", makefile, flags=re.M)
    setup_cfg = (ROOT / "setup.cfg").read_text()
    assert re.search(r"^docs =\n(\s+\S.*\n)+", setup_cfg, flags=re.M), "setup.cfg: a `docs` extra"


def test_benchmark_figures_are_drawn_from_the_results(tmp_path):
    pytest.importorskip("matplotlib")
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_benchmark_plots", ROOT / "scripts" / "docs_benchmark_plots.py")
    plots = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plots)
    written = plots.main(["--out", str(tmp_path)])
    names = {p.name for p in written}
    figures = {"quality.png", "vae_quality.png", "speed_vs_dense.png", "speed_vs_osqp.png", "proxy.png"}
    assert figures | {"proxy_table.md"} <= names
    for path in written:
        assert path.stat().st_size > 1000, path
    for image in re.findall(r"\]\((assets/benchmarks/[\w.]+)\)", (DOCS / "benchmarks.md").read_text()):
        assert image.split("/")[-1] in names, f"docs/benchmarks.md shows {image}, which the script does not draw"
    # the numbers come from the files: spot-check one of each
    assert plots.read_box_scaling("box_scaling.txt")[("mlp", "dense+osqp")][1] == 1.082
    assert {r["batch"] for r in plots.read_inference()} == {1, 32, 256, 4096}
    assert len(plots.read_layer_vs_dense()) == 32
    header, rows = plots.proxy_table()
    assert header[:2] == ["options", "RS mean"] and len(rows) >= 10
