"""The map from each op to its tests ("Tests of each op") stays true: every file it
names exists and every `-k` expression selects tests of that file."""

import ast
import pathlib
import re

import pytest
from _pytest.mark.expression import Expression

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _rows():
    text = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    section = text.split("\n## Tests of each op", 1)[1].split("\n#", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[1] in ("file", "---"):
            continue
        files = re.findall(r"`(test_\w+\.py)`", cells[1])
        expression = re.match(r"`([^`]+)`", cells[2])
        rows.append((files, expression.group(1) if expression else None))
    return rows


ROWS = _rows()


def _test_names(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node.name for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test")]


def test_the_map_is_there():
    assert len(ROWS) >= 15 and all(files for files, _ in ROWS)


@pytest.mark.parametrize("files, expression", ROWS, ids=[" ".join(f) for f, _ in ROWS])
def test_every_row_selects_tests(files, expression):
    for name in files:
        path = ROOT / "tests" / name
        assert path.exists(), f"docs/testing.md names tests/{name}, which does not exist"
        names = _test_names(path)
        assert names, f"tests/{name} has no tests"
        if expression is None:
            continue
        compiled = Expression.compile(expression)
        selected = [n for n in names if compiled.evaluate(lambda k, n=n: k.lower() in n.lower())]
        assert selected, f"-k {expression!r} selects no test of tests/{name}"
