"""mkdocs hook: the docstrings' doctest examples (`>>>` lines and their output) render as code.

The docstrings are Google style with doctests that `tests/test_doctests.py` runs; outside an
"Examples:" section Markdown would read them as prose (and `['Conv2D']` as a reference link,
which `--strict` rightly refuses). This wraps each run of doctest lines in a ```pycon fence
before any other block processing; fenced code is left as it is.
"""

import re

from markdown import Extension
from markdown.preprocessors import Preprocessor
from mkdocs.plugins import event_priority

_FENCE = re.compile(r"^\s*(```|~~~)")


class _DoctestFences(Preprocessor):
    def run(self, lines):
        out, fence, i = [], None, 0
        while i < len(lines):
            line = lines[i]
            match = _FENCE.match(line)
            if match:
                fence = None if fence == match.group(1) else (fence or match.group(1))
            if fence is None and line.lstrip().startswith(">>>"):
                indent = line[: len(line) - len(line.lstrip())]
                out.append(f"{indent}```pycon")
                while i < len(lines) and lines[i].strip():
                    out.append(lines[i])
                    i += 1
                out.append(f"{indent}```")
                continue
            out.append(line)
            i += 1
        return out


class DoctestFences(Extension):
    def extendMarkdown(self, md):  # noqa: N802 - Markdown's API
        # after whitespace normalisation (30), before the fenced-code preprocessors (25)
        md.preprocessors.register(_DoctestFences(md), "kce_doctest_fences", 28)


@event_priority(100)  # before mkdocstrings hands the extension list to its renderer
def on_config(config):
    config.markdown_extensions.append(DoctestFences())
    return config
