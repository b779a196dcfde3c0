"""The README's first command runs examples/demo.py: it must reproduce the book and exit 0."""

import os
import runpy

DEMO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples",
                    "demo.py")


def test_demo_reproduces_the_book(capsys):
    demo = runpy.run_path(DEMO)
    assert demo["main"]() == 0
    out = capsys.readouterr().out
    assert "differs" not in out and "did not converge" not in out
    assert "Example 24.4: stride 2\n[[11  4 11]\n [ 9  6 15]\n [ 8 10 13]]" in out
    assert "61,706" in out
