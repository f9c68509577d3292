"""Generated blocks inside hand-written Markdown (benchmarks/RESULTS.md, docs/reproductions.md).

Each generated block sits between ``<!-- BEGIN GENERATED: name -->`` and
``<!-- END GENERATED: name -->``; everything outside the markers is hand-written and left
untouched. A block whose markers are missing is appended at the end under a heading.
"""

from __future__ import annotations

import re
from collections.abc import Mapping


def begin_marker(name: str) -> str:
    return f"<!-- BEGIN GENERATED: {name} -->"


def end_marker(name: str) -> str:
    return f"<!-- END GENERATED: {name} -->"


def splice(text: str, blocks: Mapping[str, str], titles: Mapping[str, str] | None = None) -> str:
    """Replaces each block between its markers; appends blocks whose markers are missing."""
    for name, block in blocks.items():
        pattern = re.compile(re.escape(begin_marker(name)) + r".*?" + re.escape(end_marker(name)), re.DOTALL)
        replacement = f"{begin_marker(name)}\n{block}\n{end_marker(name)}"
        if pattern.search(text):
            text = pattern.sub(lambda _m, r=replacement: r, text, count=1)
        else:
            title = (titles or {}).get(name, name)
            text = text.rstrip("\n") + f"\n\n## {title} (generated)\n\n{replacement}\n"
    return text


def update_file(path: str, blocks: Mapping[str, str], titles: Mapping[str, str] | None = None) -> None:
    """Splices ``blocks`` into the Markdown file at ``path`` (created if missing)."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = ""
    with open(path, "w") as f:
        f.write(splice(text, blocks, titles))
