"""The book builds, and a reader's browser shows the data chapter with its figures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gemrepro.book.build import BUILD_FLAGS, chapters
from gemrepro.book.profile import recorded_profile
from gemrepro.plots.performance import book_profile

ROOT = Path(__file__).resolve().parents[2]
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
    """papermill on a real chapter with scale=huge: the cell's error is the one-line message, nothing else."""
    import jupytext
    import papermill
    from papermill.exceptions import PapermillExecutionError

    notebook = jupytext.read(ROOT / "notebooks" / "data.md")
    with pytest.raises(PapermillExecutionError) as failure:
        papermill.execute_notebook(
            notebook,
            str(tmp_path / "out.ipynb"),
            parameters={"scale": "huge"},
            kernel_name="python3",
            progress_bar=False,
            cwd=str(tmp_path),
        )
    assert failure.value.traceback == [
        "ChapterParameterError: chapter parameter: unknown scale 'huge': expected one of tiny, small, paper"
    ]


def test_make_book_leaves_the_committed_notebooks_alone_unless_asked(tmp_path, monkeypatch):
    """`make book` executes into _build/; only --update-committed (make update-book) replaces the committed outputs."""
    from gemrepro.book import build as book

    root = tmp_path / "checkout"
    (root / "book" / "chapters").mkdir(parents=True)
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/chapters/one\n")
    (root / "_config.yml").write_text("title: t\n")
    (root / "references.bib").write_text("")
    committed = root / "book" / "chapters" / "one.ipynb"
    committed.write_text("committed outputs")

    def execute(checkout, name, output, parameters):
        output.write_text(f"fresh outputs at {parameters['scale']}")
        return 0.0

    monkeypatch.setattr(book, "repo_root", lambda: root)
    monkeypatch.setattr(book, "execute_chapter", execute)
    monkeypatch.setattr(book, "build_html", lambda source, output: output)
    book.build_book("tiny", tmp_path / "build")
    assert committed.read_text() == "committed outputs"
    assert (tmp_path / "build" / "src" / "book" / "chapters" / "one.ipynb").read_text() == "fresh outputs at tiny"
    book.build_book("tiny", tmp_path / "build", update_committed=True, record_profile=True)
    assert committed.read_text() == "fresh outputs at tiny"
    chapters, about = recorded_profile(root, "tiny")  # kept for the performance appendix
    assert chapters["chapter"].tolist() == ["one"] and about["jobs"] == 1 and about["scale"] == "tiny"
    fig = book_profile(chapters, about)
    assert "1 chapters at once" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="--update-committed: the committed book is the tiny scale"):
        book.build_book("small", tmp_path / "build", update_committed=True)


_TOY_CHAPTER = """---
jupytext:
  text_representation:
    format_name: myst
kernelspec:
  name: python3
---

```{{code-cell}} ipython3
:tags: [parameters]

scale = "tiny"
```

```{{code-cell}} ipython3
import time
from pathlib import Path

{body}
```
"""

_MEETS = """Path("{me}.started").write_text(scale)
deadline = time.monotonic() + 120
while not Path("{other}.started").exists():  # only a chapter running at the same time makes it
    if time.monotonic() > deadline:
        raise RuntimeError("{other} never started while {me} ran")
    time.sleep(0.2)
Path("{me}.done").write_text(scale)"""


def test_book_executes_independent_chapters_at_once_and_the_summary_after_them(tmp_path, monkeypatch):
    """--jobs 2: two chapters that each wait for the other to start can only finish side by side;
    the results page, executed after them, sees both done."""
    from gemrepro.book import build as book

    root = tmp_path / "checkout"
    (root / "book" / "chapters").mkdir(parents=True)
    (root / "notebooks").mkdir()
    toc = "".join(f"  - file: book/chapters/{name}\n" for name in ("one", "two", "results"))
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n" + toc)
    (root / "_config.yml").write_text("title: t\n")
    (root / "references.bib").write_text("")
    for me, other in (("one", "two"), ("two", "one")):
        (root / "notebooks" / f"{me}.md").write_text(_TOY_CHAPTER.format(body=_MEETS.format(me=me, other=other)))
    summary = 'assert Path("one.done").exists() and Path("two.done").exists()'
    (root / "notebooks" / "results.md").write_text(_TOY_CHAPTER.format(body=summary))
    monkeypatch.setattr(book, "repo_root", lambda: root)
    monkeypatch.setattr(book, "build_html", lambda source, output: output)
    book.build_book("tiny", tmp_path / "build", jobs=2)
    executed = tmp_path / "build" / "src" / "book" / "chapters"
    assert sorted(p.name for p in executed.glob("*.ipynb")) == ["one.ipynb", "results.ipynb", "two.ipynb"]
    with pytest.raises(ValueError, match="--jobs: expected a positive number"):
        book.build_book("tiny", tmp_path / "build", jobs=0)


@pytest.fixture(scope="module")
def built_book(tmp_path_factory) -> Path:
    """Build the committed book (no execution) into a temporary folder; a warning fails the build."""
    out = tmp_path_factory.mktemp("book")
    jb = Path(sys.executable).with_name("jupyter-book")
    done = subprocess.run(
        [str(jb), "build", str(ROOT), "--path-output", str(out), *BUILD_FLAGS], capture_output=True, text=True
    )
    assert done.returncode == 0, "book build failed or warned:\n" + "\n".join(
        line for line in done.stdout.splitlines() + done.stderr.splitlines() if "WARNING" in line or "ERROR" in line
    )
    return out / "_build" / "html"


def test_book_builds_with_every_chapter(built_book):
    assert (built_book / "index.html").is_file()
    page = (built_book / "book" / "chapters" / "data.html").read_text()
    assert "QM7-X" in page
    assert page.count("<img") >= 3, "the data chapter should show its figures"
    assert "Traceback" not in page


def _browser_or_skip() -> str:
    browser = _chromium()
    if browser is None:
        if os.environ.get("GEMREPRO_REQUIRE_BROWSER"):
            pytest.fail("GEMREPRO_REQUIRE_BROWSER is set but no chromium is installed")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return browser


_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-file-access-from-files",
    "--virtual-time-budget=5000",
]


def _probe(browser: str, page: Path, tmp_path: Path) -> tuple[int, int, int, int]:
    """Load ``page`` in an iframe: (images loaded, images, traceback outputs, pages mentioning Traceback)."""
    probe = tmp_path / f"probe-{page.stem}.html"
    probe.write_text(
        "<html><body><iframe id=f src='" + page.as_uri() + "' width=1200 height=900></iframe><script>"
        "document.getElementById('f').onload=()=>{const d=document.getElementById('f').contentDocument;"
        "const imgs=[...d.images];const ok=imgs.filter(i=>i.complete&&i.naturalWidth>0).length;"
        "const errors=d.querySelectorAll('.output.traceback, .output.error, .traceback').length;"
        "const tb=d.body.innerText.includes('Traceback (most recent call last)')?1:0;"
        "document.title='PROBE '+ok+'/'+imgs.length+'/'+errors+'/'+tb;};</script></body></html>"
    )
    dom = subprocess.run(
        [browser, *_FLAGS, f"--user-data-dir={tmp_path / ('profile-' + page.stem)}", "--dump-dom", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    title = dom.stdout.split("<title>")[1].split("</title>")[0] if "<title>" in dom.stdout else ""
    assert title.startswith("PROBE "), f"chromium did not report on {page.name}: {dom.stderr[-500:]}"
    loaded, total, errors, traceback = map(int, title.removeprefix("PROBE ").split("/"))
    return loaded, total, errors, traceback


def test_every_chapter_page_loads_its_images_without_errors_in_headless_chromium(built_book, tmp_path):
    browser = _browser_or_skip()
    pages = [built_book / "book" / "intro.html"] + [
        built_book / "book" / "chapters" / f"{n}.html" for n in chapters(ROOT)
    ]
    for page in pages:
        assert page.is_file(), f"{page.name} was not built"
        loaded, total, errors, traceback = _probe(browser, page, tmp_path)
        assert loaded == total, f"{page.name}: {loaded} of {total} images loaded"
        assert errors == 0 and traceback == 0, f"{page.name} shows an error cell or a traceback"
        if page.parent.name == "chapters":
            assert total >= 1, f"{page.name} shows no figure"
    screenshot = tmp_path / "data.png"
    subprocess.run(
        [
            browser,
            *_FLAGS,
            f"--user-data-dir={tmp_path / 'profile-shot'}",
            "--window-size=1200,2400",
            f"--screenshot={screenshot}",
            pages[1].as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    assert screenshot.is_file() and screenshot.stat().st_size > 20_000


def test_browser_probe_sees_broken_images_and_error_cells(tmp_path):
    browser = _browser_or_skip()
    page = tmp_path / "broken.html"
    page.write_text(
        "<html><body><img src='missing.png'><div class='output traceback'>"
        "Traceback (most recent call last): boom</div></body></html>"
    )
    assert _probe(browser, page, tmp_path) == (0, 1, 1, 1)


def test_publish_pushes_the_built_site_to_a_gh_pages_branch(built_book, tmp_path):
    """What `make publish` does after building: ghp-import onto gh-pages of a remote (a local bare repo here)."""
    recipe = (ROOT / "Makefile").read_text().split("\npublish:")[1].split("\n\n")[0]
    assert "ghp-import" in recipe and "--branch gh-pages" in recipe and "--push" in recipe
    remote, work = tmp_path / "remote.git", tmp_path / "work"
    git = ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.org"]
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    subprocess.run([*git, "-C", str(work), "commit", "-q", "--allow-empty", "-m", "init"], check=True)
    subprocess.run(["git", "-C", str(work), "remote", "add", "pages", str(remote)], check=True)
    ghp = Path(sys.executable).with_name("ghp-import")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "ci",
        "GIT_AUTHOR_EMAIL": "ci@example.org",
        "GIT_COMMITTER_NAME": "ci",
        "GIT_COMMITTER_EMAIL": "ci@example.org",
    }
    subprocess.run(
        [
            str(ghp),
            "--no-jekyll",
            "--force",
            "--push",
            "--remote",
            "pages",
            "--branch",
            "gh-pages",
            "--message",
            "book",
            str(built_book),
        ],
        cwd=work,
        check=True,
        env=env,
        capture_output=True,
    )
    files = subprocess.run(
        ["git", "-C", str(remote), "ls-tree", "-r", "--name-only", "gh-pages"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "index.html" in files and ".nojekyll" in files
    assert "book/chapters/data.html" in files


def test_every_link_inside_the_book_resolves(built_book):
    """Relative links of every page (chapter links in tables and captions included) point at built files."""
    from html.parser import HTMLParser
    from urllib.parse import unquote, urlsplit

    class Links(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.hrefs: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.hrefs += [value for name, value in attrs if name in ("href", "src") and value]

    broken = []
    for page in built_book.rglob("*.html"):
        if "_static" in page.parts or "_sphinx_design_static" in page.parts:
            continue
        parser = Links()
        parser.feed(page.read_text(errors="replace"))
        for href in parser.hrefs:
            parts = urlsplit(href)
            if parts.scheme or href.startswith(("#", "//")) or not parts.path:
                continue
            target = (page.parent / unquote(parts.path)).resolve()
            if not target.exists():
                broken.append(f"{page.relative_to(built_book)} -> {href}")
    assert not broken, "broken links:\n" + "\n".join(broken[:20])
    results = (built_book / "book" / "chapters" / "results.html").read_text()
    assert 'href="learning_curves.html"' in results
