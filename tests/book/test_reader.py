"""The rendered book folds parameters and plumbing, keeps results on the page, and respects an author's tag."""

from __future__ import annotations

import json

from gemrepro.book.reader import reader_tags, tag_notebook


def code(tags=(), outputs=()):
    return {"cell_type": "code", "metadata": {"tags": list(tags)}, "outputs": list(outputs), "source": "x = 1"}


def test_plumbing_folds_and_results_stay_visible():
    figure = {"output_type": "display_data", "data": {"image/png": "..."}}
    assert reader_tags(code(["parameters"], [figure])) == ["parameters", "hide-cell"]
    assert reader_tags(code(["injected-parameters"])) == ["injected-parameters", "hide-cell"]
    assert reader_tags(code()) == ["hide-cell"]  # imports and set-up: nothing to show
    assert reader_tags(code(["nbval-check-output"], [figure])) == ["nbval-check-output", "hide-input"]
    assert reader_tags(code(["remove-input"], [figure])) == ["remove-input"]  # the author's choice stands
    assert reader_tags({"cell_type": "markdown", "metadata": {}, "source": "# t"}) == []


def test_tag_notebook_rewrites_every_cell(tmp_path):
    notebook = {"cells": [code(["parameters"]), code(outputs=[{"output_type": "stream", "text": "1"}])], "metadata": {}}
    path = tmp_path / "chapter.ipynb"
    path.write_text(json.dumps(notebook))
    tag_notebook(path)
    cells = json.loads(path.read_text())["cells"]
    assert [c["metadata"]["tags"] for c in cells] == [["parameters", "hide-cell"], ["hide-input"]]
