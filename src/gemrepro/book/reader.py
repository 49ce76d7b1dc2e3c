"""What a reader sees first: results, not plumbing.

Every chapter is a notebook a researcher can re-execute, so it starts with its parameters and
imports. The rendered book folds them away with Jupyter Book's cell tags, applied to the executed
notebooks just before the HTML is built (the committed notebooks stay as they are):

* the parameter cells and code cells that show nothing (imports, set-up) fold completely
  (``hide-cell``: one "show" toggle);
* every other code cell folds its code and shows its output (``hide-input``): figures, tables
  and printed results stay on the page.

A cell that already carries a ``hide-*`` or ``remove-*`` tag keeps its author's choice.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["reader_tags", "tag_notebook"]

PARAMETER_TAGS = {"parameters", "injected-parameters"}


def reader_tags(cell: dict) -> list[str]:
    """The tags ``cell`` gets in the rendered book (its own, plus the fold it needs)."""
    tags = list(cell.get("metadata", {}).get("tags", []))
    if cell.get("cell_type") != "code" or any(t.startswith(("hide-", "remove-")) for t in tags):
        return tags
    plumbing = PARAMETER_TAGS & set(tags) or not cell.get("outputs")
    return [*tags, "hide-cell" if plumbing else "hide-input"]


def tag_notebook(path: str | Path) -> None:
    """Rewrite the notebook at ``path`` with :func:`reader_tags` on every cell (a staged copy, never the
    committed chapter)."""
    path = Path(path)
    notebook = json.loads(path.read_text(encoding="utf-8"))
    for cell in notebook["cells"]:
        tags = reader_tags(cell)
        if tags:
            cell.setdefault("metadata", {})["tags"] = tags
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
