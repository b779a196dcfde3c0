"""The code examples of the documentation run as written (README.md and docs/*.md).

A fenced ```python block runs as a script, a ```pycon block (``>>>`` lines) as a doctest whose
outputs must match. Each block runs in a fresh namespace, in a temporary working folder (so
``runs/...`` paths land there), with the session's prepared digits as TFDS_DATA_DIR. A block
preceded by ``<!-- docs-test: skip (reason) -->`` is skipped with that reason (long trainings,
searches, fresh-process setups; each names the test that covers it instead). A block preceded by
``<!-- docs-test: continues -->`` goes on from the page's previous block, as a reader does: the
two run as one test, in one namespace and folder (a page that exports, then loads). The README's
usage block runs in tests/test_examples.py, with assertions on its results.
"""

import doctest
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# the fence, the language, the body; the optional skip comment right before it
_BLOCK = re.compile(
    r"(?:<!-- docs-test: (?:skip \((?P<skip>[^)]*)\)|(?P<continues>continues)) -->\n[ \t]*)?"
    r"^(?P<indent>[ \t]*)```(?P<lang>python|pycon)\n(?P<body>.*?)^(?P=indent)```",
    re.S | re.M)


def _pages():
    pages = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
    return [p for p in pages if p.exists()]


def _blocks():
    found = []
    for page in _pages():
        text = page.read_text(encoding="utf-8")
        for n, match in enumerate(_BLOCK.finditer(text)):
            indent = match.group("indent")
            body = "".join(line[len(indent):] if line.startswith(indent) else line
                           for line in match.group("body").splitlines(keepends=True))
            line = text.count("\n", 0, match.start("body")) + 1
            skip = match.group("skip")
            if page.name == "README.md" and "## Usage" in text[:match.start()] \
                    and "## Command line" not in text[:match.start()]:
                skip = "runs in tests/test_examples.py::test_readme_usage_block_runs"
            if match.group("continues"):
                if not found or found[-1][0] != page.name or found[-1][2] != match.group("lang"):
                    raise ValueError(f"{page.name}:{line}: `docs-test: continues` needs a "
                                     f"previous {match.group('lang')} block on the page")
                found[-1][3] += body
                continue
            found.append([page.name, line, match.group("lang"), body, skip])
    return [pytest.param(page, line, lang, body, id=f"{page}:{line}",
                         marks=[pytest.mark.skip(reason=skip)] if skip else [])
            for page, line, lang, body, skip in found]


BLOCKS = _blocks()


def test_the_pages_have_runnable_examples():
    runnable = [b for b in BLOCKS if not b.marks]
    assert len(runnable) >= 6, [b.id for b in runnable]
    # every skip names its reason
    assert all(m.kwargs["reason"].strip() for b in BLOCKS for m in b.marks)


@pytest.mark.parametrize("page, line, lang, body", BLOCKS)
def test_docs_example_runs(page, line, lang, body, tmp_path, monkeypatch, digits_data_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TFDS_DATA_DIR", digits_data_dir)
    name = f"{page}:{line}"
    if lang == "pycon":
        test = doctest.DocTestParser().get_doctest(body, {}, name, page, line)
        runner = doctest.DocTestRunner(
            optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
        runner.run(test)
        result = runner.summarize(verbose=False)
        assert result.attempted > 0 and result.failed == 0, f"{result.failed} failing in {name}"
    else:
        exec(compile(body, name, "exec"), {"__name__": "__docs__"})  # noqa: S102 - our own docs
