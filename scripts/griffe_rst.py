"""A griffe extension for the documentation site: the docstrings' reST markup as Markdown.

The packages' docstrings use Sphinx roles (``:class:`Message```) and reST literals
(````x````), which Markdown would show as they are. This turns a role into inline code
naming its target (``~`` and leading dots dropped) and a double-backquoted literal into
single backquotes, and a paragraph ending in ``::`` (a reST literal block follows) into
one ending in ``:``. mkdocs.yml loads it: ``extensions: [scripts/griffe_rst.py]``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|data|mod|exc|obj|const):`~?\.?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+?)``")
_LITERAL_BLOCK = re.compile(r"(\S)::$", re.MULTILINE)


def markdown_of(text: str) -> str:
    """``text`` (a docstring) with its reST roles and literals written in Markdown."""
    text = _ROLE.sub(lambda m: f"`{m.group(1)}`", text)
    text = _LITERAL.sub(lambda m: f"`{m.group(1)}`", text)
    return _LITERAL_BLOCK.sub(r"\1:", text)


class RstToMarkdown(griffe.Extension):
    """Rewrites each object's docstring as it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_of(obj.docstring.value)
