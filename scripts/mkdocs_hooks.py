"""mkdocs hooks for the documentation site (``hooks:`` in mkdocs.yml).

The library's docstrings use Sphinx roles (``:func:`keras_lincon.h_to_v```,
``:class:`~keras_lincon.VRepresentation```), which Markdown renders as the
role's name followed by code. This hook drops the role and, for a public
name of ``keras_lincon`` (``keras_lincon.__all__``), links the code to its
entry in the API reference.
"""

from __future__ import annotations

import re

from mkdocs.utils import get_relative_url

ROLE = re.compile(r":(?:func|class|meth|mod|attr|exc|data|obj):<code>(~?)([\w.]+)</code>")
_PAGES: dict[str, str] = {}  # public name -> URL of its API page


def _public_names() -> set[str]:
    import keras_lincon

    return set(keras_lincon.__all__)


def on_files(files, config):
    """Finds the API page of every public name from its ``::: keras_lincon.Name`` directive."""
    _PAGES.clear()
    directive = re.compile(r"^::: keras_lincon\.(\w+)\s*$", re.M)
    for file in files:
        if file.src_uri.startswith("api/") and file.src_uri.endswith(".md"):
            text = file.content_string
            for name in directive.findall(text):
                _PAGES[name] = file.url
    return files


def on_page_content(html, page, config, files):
    public = _public_names()

    def replace(match: re.Match) -> str:
        tilde, target = match.groups()
        name = target.rsplit(".", 1)[-1]
        shown = name if tilde else target
        url = _PAGES.get(name)
        if name in public and url is not None and target in (name, f"keras_lincon.{name}"):
            href = get_relative_url(url, page.url) if url != page.url else ""
            return f'<a href="{href}#keras_lincon.{name}"><code>{shown}</code></a>'
        return f"<code>{shown}</code>"

    return ROLE.sub(replace, html)
