"""A griffe extension for the documentation site (``extensions:`` in mkdocs.yml).

The library's docstrings head their doctest examples ``Example:``; griffe's
Google-style parser knows the plural, ``Examples:``, and would render the
singular as a note whose ``>>>`` lines run together as prose. This renames
the heading so the examples render as code, and leaves the source alone.
"""

from __future__ import annotations

import re

from griffe import Extension

HEADING = re.compile(r"^(\s*)Example:\s*$", re.M)


class ExampleSections(Extension):
    """``Example:`` -> ``Examples:`` in every docstring griffe reads."""

    def on_instance(self, *, node, obj, agent, **kwargs) -> None:
        if obj.docstring is not None and "Example:" in obj.docstring.value:
            obj.docstring.value = HEADING.sub(r"\1Examples:", obj.docstring.value)
