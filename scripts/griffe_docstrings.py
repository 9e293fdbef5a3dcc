"""A griffe extension for the documentation site (``extensions:`` in mkdocs.yml).

The library's docstrings are written for Sphinx-like readers; griffe's
Google-style parser and Markdown need two adjustments, made on the text
griffe reads (the source is left alone):

- ``Example:`` becomes ``Examples:``, the heading griffe knows, so the
  ``>>>`` lines render as code instead of running together as prose;
- Sphinx roles (``:func:`keras_lincon.h_to_v```, ``:class:`~keras_lincon.VRepresentation```)
  become Markdown: a cross-reference to the API entry for a public name of
  ``keras_lincon.__all__``, plain code otherwise. Left as they are, Markdown
  shows the role's name, and a role after a word (``A :class:`X` ...``)
  reads to the parser as ``type: description``.
"""

from __future__ import annotations

import re

from griffe import Extension

HEADING = re.compile(r"^(\s*)Example:\s*$", re.M)
ROLE = re.compile(r":(?:func|class|meth|mod|attr|exc|data|obj):`(~?)([\w.]+)`")


def _public_names() -> set[str]:
    import keras_lincon

    return set(keras_lincon.__all__)


def markdown_roles(text: str, public: set[str]) -> str:
    """Sphinx roles -> Markdown code, linked (mkdocs-autorefs) for public names."""

    def replace(match: re.Match) -> str:
        tilde, target = match.groups()
        name = target.rsplit(".", 1)[-1]
        shown = name if tilde else target
        if name in public and target in (name, f"keras_lincon.{name}"):
            return f"[`{shown}`][keras_lincon.{name}]"
        return f"`{shown}`"

    return ROLE.sub(replace, text)


class ExampleSections(Extension):
    """``Example:`` -> ``Examples:``, and Sphinx roles -> Markdown, in every docstring griffe reads."""

    def __init__(self) -> None:
        super().__init__()
        self.public = _public_names()

    def on_instance(self, *, node, obj, agent, **kwargs) -> None:
        if obj.docstring is None:
            return
        text = HEADING.sub(r"\1Examples:", obj.docstring.value)
        obj.docstring.value = markdown_roles(text, self.public)
