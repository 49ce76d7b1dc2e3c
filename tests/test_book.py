"""The book builds, and a reader's browser shows the data chapter with its figures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gemrepro.workflow.book import chapters

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "book" / "chapters"


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_every_toc_chapter_has_a_source_and_an_executed_notebook_with_outputs():
    names = chapters(ROOT)
    assert "data" in names
    for name in names:
        assert (ROOT / "notebooks" / f"{name}.md").is_file()
        notebook = json.loads((CHAPTERS / f"{name}.ipynb").read_text())
        outputs = [o for cell in notebook["cells"] if cell["cell_type"] == "code" for o in cell.get("outputs", [])]
        assert outputs, f"{name}.ipynb carries no outputs"
        assert not [o for o in outputs if o.get("output_type") == "error"], f"{name}.ipynb has an error cell"
        tags = [t for cell in notebook["cells"] for t in cell.get("metadata", {}).get("tags", [])]
        assert "parameters" in tags and "nbval-check-output" in tags


def test_bad_papermill_parameter_is_one_line(tmp_path):
    code = (
        "from gemrepro.workflow.chapter import setup\n"
        "setup(scale='huge')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "ValueError: unknown scale 'huge': expected one of tiny, small, paper" in out.stderr


@pytest.fixture(scope="module")
def built_book(tmp_path_factory) -> Path:
    """Build the committed book (no execution) into a temporary folder."""
    out = tmp_path_factory.mktemp("book")
    jb = Path(sys.executable).with_name("jupyter-book")
    subprocess.run([str(jb), "build", str(ROOT), "--path-output", str(out)], check=True, capture_output=True)
    return out / "_build" / "html"


def test_book_builds_with_every_chapter(built_book):
    assert (built_book / "index.html").is_file()
    page = (built_book / "book" / "chapters" / "data.html").read_text()
    assert "QM7-X" in page
    assert page.count("<img") >= 3, "the data chapter should show its figures"
    assert "Traceback" not in page


def test_data_chapter_images_load_in_headless_chromium(built_book, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("GEMREPRO_REQUIRE_BROWSER"):
            pytest.fail("GEMREPRO_REQUIRE_BROWSER is set but no chromium is installed")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    page = built_book / "book" / "chapters" / "data.html"
    probe = tmp_path / "probe.html"
    # Load the chapter in an iframe and report how many of its images decoded (naturalWidth > 0).
    probe.write_text(
        "<html><body><iframe id=f src='" + page.as_uri() + "' width=1200 height=900></iframe><script>"
        "document.getElementById('f').onload=()=>{const d=document.getElementById('f').contentDocument;"
        "const imgs=[...d.images];const ok=imgs.filter(i=>i.complete&&i.naturalWidth>0).length;"
        "document.title='IMAGES '+ok+'/'+imgs.length;};</script></body></html>"
    )
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files",
             "--virtual-time-budget=5000"]
    dom = subprocess.run([browser, *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    title = dom.stdout.split("<title>")[1].split("</title>")[0] if "<title>" in dom.stdout else ""
    assert title.startswith("IMAGES "), f"chromium did not report images: {dom.stderr[-500:]}"
    loaded, total = map(int, title.removeprefix("IMAGES ").split("/"))
    assert total >= 3 and loaded == total, f"{loaded} of {total} images loaded"
    screenshot = tmp_path / "data.png"
    subprocess.run([browser, *flags, "--window-size=1200,2400", f"--screenshot={screenshot}", page.as_uri()],
                   capture_output=True, timeout=120)
    assert screenshot.is_file() and screenshot.stat().st_size > 20_000
