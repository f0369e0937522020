"""Writes generated sections into ``benchmarks/RESULTS.md`` between markers.

Each benchmark owns one section, delimited by ``<!-- BEGIN name -->`` and
``<!-- END name -->``. Regenerating a section replaces only the text between
its markers, so hand-written prose elsewhere in the document is kept.
"""

import os
import pathlib
import tempfile

RESULTS_PATH = pathlib.Path(__file__).with_name("RESULTS.md")
_TITLE = "# sal-optax results\n"


def write_section(name: str, markdown: str, path: pathlib.Path = RESULTS_PATH) -> None:
    """Replaces (or appends) the generated section ``name`` of the results document.

    Args:
      name: the section's marker name, e.g. ``"overhead"``.
      markdown: the section's new content, without the markers.
      path: the document; ``benchmarks/RESULTS.md`` by default.
    """
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    text = path.read_text() if path.exists() else _TITLE

    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"

    # Written under a temporary name, then renamed: a reader never sees half.
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(handle, "w") as file:
        file.write(text)
    os.replace(temporary, path)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """Renders a Markdown table from a header and rows of cell strings."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
