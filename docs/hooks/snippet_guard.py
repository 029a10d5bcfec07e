"""mkdocs hook: fail the build when a page shows a snippet marker as text.

``pymdownx.snippets`` replaces ``--8<-- "file:section"`` with the file's
lines. A marker it does not recognise (one a code formatter pulled apart
with spaces around the ``<``, say) is left on the page as literal text, and
``mkdocs build --strict`` does not notice; this hook does.
"""

from __future__ import annotations

import html
import re
from typing import Any

from mkdocs.exceptions import PluginError

# "--8<--" as written, or pulled apart by a code formatter (spaces around the "<").
SNIPPET_MARKER = re.compile(r"-\s*-\s*8\s*<\s*-\s*-")
TAG = re.compile(r"<[^>]+>")


def find_snippet_markers(page_html: str) -> list[str]:
    """The lines of a built page whose visible text still shows a snippet marker.

    Tags are stripped first: a highlighter wraps every token of a code block in
    its own ``<span>``, so the marker is only whole in the text a reader sees.
    """
    visible = (html.unescape(TAG.sub("", line)) for line in page_html.splitlines())
    return [line.strip() for line in visible if SNIPPET_MARKER.search(line)]


def on_post_page(output: str, *, page: Any, config: Any) -> str:
    leftovers = find_snippet_markers(output)
    if leftovers:
        raise PluginError(
            f"{page.file.src_path}: a snippet marker was not replaced and shows as text: {leftovers[0]!r}; "
            'write it as --8<-- "path:section" on a line of its own (ruff format must not touch docs/)'
        )
    return output
