"""Step-by-step computations of a correlation or a pooling, the way the book's worked
examples (24.2-24.4, 24.7) show them: the matrices, the padded input, each window's products
and sum (or max / mean), the output-size formula and the output.

The numbers come from `keras_cnn_ext.ops.reference` (the NumPy definitions); every window's
printed sum is checked against the reference output cell.

>>> print(explain_example("24.2").text.splitlines()[-3:])
['Y =', '  11  18', '   6  22']
"""

import dataclasses

import numpy as np

from keras_cnn_ext.ops import geometry, reference

X_24_2 = [[3, 2, 0, 1], [0, 2, 1, 2], [2, 0, 0, 3], [2, 3, 1, 2]]
W_24_2 = [[2, 1, 2], [0, 0, 3], [0, 0, 2]]
X_24_4 = [[3, 2, 0, 1, 0, 2, 1], [0, 2, 1, 2, 1, 2, 1], [2, 0, 0, 3, 0, 0, 2],
          [2, 3, 1, 0, 1, 1, 3], [2, 2, 1, 1, 0, 3, 1], [1, 1, 0, 0, 1, 2, 2],
          [2, 1, 0, 3, 2, 1, 1]]

# name -> (title, keyword arguments of `explain_corr2d` / `explain_pool2d`, the book's answer)
EXAMPLES = {
    "24.2": ("Example 24.2: Y = W * X", dict(x=X_24_2, kernel=W_24_2),
             [[11, 18], [6, 22]]),
    "24.3": ("Example 24.3: zero padding 1", dict(x=X_24_2, kernel=W_24_2, padding=1),
             [[10, 2, 7, 0], [13, 11, 18, 1], [10, 6, 22, 4], [11, 7, 12, 3]]),
    "24.4": ("Example 24.4: stride 2", dict(x=X_24_4, kernel=W_24_2, strides=2),
             [[11, 4, 11], [9, 6, 15], [8, 10, 13]]),
    "24.7": ("Example 24.7: 2x2 max pooling, stride 2",
             dict(x=X_24_2, pool_size=2, kind="max"), [[3, 2], [3, 3]]),
}


@dataclasses.dataclass
class Explanation:
    """The printable steps (`text`) and the output matrix (`output`, float64)."""

    text: str
    output: np.ndarray

    def __str__(self):
        return self.text


def _num(v):
    v = float(v)
    return str(int(v)) if v.is_integer() else f"{v:.4g}"


def format_matrix(m, indent="  "):
    """A matrix as right-aligned rows of numbers."""
    cells = [[_num(v) for v in row] for row in np.asarray(m, dtype=np.float64)]
    width = max(len(c) for row in cells for c in row)
    return "\n".join(indent + "  ".join(c.rjust(width) for c in row) for row in cells)


def _matrix(value, name):
    m = np.asarray(value, dtype=np.float64)
    if m.ndim != 2 or 0 in m.shape or not np.all(np.isfinite(m)):
        raise ValueError(f"Invalid value for argument `{name}`. Expected a non-empty 2-D "
                         f"matrix of finite numbers. Received: {name} with shape {m.shape}")
    return m


def _where(r, c, window):
    """'rows 1-3, columns 2-4' (1-based, as in the book); a single row or column unranged."""
    def span(word, start, size):
        return f"{word} {start + 1}" if size == 1 else f"{word}s {start + 1}-{start + size}"

    return f"{span('row', r, window[0])}, {span('column', c, window[1])}"


def _size_lines(spatial, window, strides, pads, out, letters=("I", "M"), dilated=False,
                ceil_mode=False):
    lines = []
    for axis, (size, m, s, (a, b), o) in enumerate(zip(spatial, window, strides, pads, out)):
        rows = axis == 0
        pad = f"{a} + {b}" if a != b else f"2*{a}"
        if ceil_mode:
            lines += _ceil_size_lines(rows, size, m, s, a, b, pad, o)
            continue
        kernel = "M" if rows else "N"
        kernel = f"(D({kernel}-1)+1)" if dilated else kernel
        lines.append(f"{'K' if rows else 'L'} = floor(({'I' if rows else 'J'} + {pad} - "
                     f"{kernel}) / S) + 1 = floor(({size} + {a + b} - {m}) / "
                     f"{s}) + 1 = {o}")
    return lines


def _ceil_size_lines(rows, size, m, s, before, after, pad, out):
    """PyTorch's ceil_mode rule step by step: round up, then drop a last window that would
    start in the bottom / right padding, then say how far the last window reaches past the
    padded input (those cells take no part)."""
    k, i, big_m = ("K", "I", "M") if rows else ("L", "J", "N")
    side, cells = ("bottom", "rows") if rows else ("right", "columns")
    up = -(-(size + before + after - m) // s) + 1
    lines = [f"{k} = ceil(({i} + {pad} - {big_m}) / S) + 1 = ceil(({size} + {before + after}"
             f" - {m}) / {s}) + 1 = {up}    (ceil_mode)"]
    if up != out:
        first = "top" if rows else "left"
        lines.append(f"    the last window would start at ({k} - 1)*S = {(up - 1) * s} >= {i} + "
                     f"{first} padding = {size + before}, in the {side} padding: dropped, "
                     f"{k} = {out}")
    over = geometry.ceil_overhang(size, m, s, (before, after), True)
    if over:
        lines.append(f"    the last window reaches {over} {cells[:-1] if over == 1 else cells} "
                     "past the padded input: "
                     "those cells take no part (never the max, not counted by the mean)")
    return lines


def _header(title, x, pads, padding_mode, padded):
    lines = [title, "", f"X ({x.shape[0]}x{x.shape[1]}) =", format_matrix(x)]
    if any(p for pair in pads for p in pair):
        lines += ["", f"padded input X^ ({padding_mode} padding, rows {pads[0][0]} above / "
                  f"{pads[0][1]} below, columns {pads[1][0]} left / {pads[1][1]} right, "
                  f"{padded.shape[0]}x{padded.shape[1]}) =", format_matrix(padded)]
    return lines


def explain_corr2d(x, kernel, strides=1, padding=0, padding_mode="zeros",
                   mode="cross_correlation", title=None, dilation=1):
    """Explains ``Y = W * X`` (definition 24.1) cell by cell; indices are 1-based as in the book.

    Args:
        x: the input matrix (I x J).
        kernel: the kernel matrix (M x N).
        strides, padding, padding_mode, mode: as in `keras_cnn_ext.ops.corr2d`.
        title: the first line (default describes the settings).
        dilation: D (`dilation_rate` of `keras_cnn_ext.ops.corr2d`): the kernel's taps read
            every D-th cell, the window spans D(M-1)+1.
    """
    x, w = _matrix(x, "x"), _matrix(kernel, "kernel")
    mode = geometry.normalize_choice(mode, "mode", ("cross_correlation", "convolution"))
    padding_mode = geometry.normalize_choice(padding_mode, "padding_mode",
                                             ("zeros", "replicate", "reflect"))
    s = geometry.normalize_tuple(strides, "strides")
    d = geometry.normalize_tuple(dilation, "dilation_rate")
    window = w.shape
    span = geometry.effective_window(window, d)
    pads = geometry.resolve_padding(padding, span)
    out_shape = geometry.check_dilated_fits(x.shape, window, d, s, pads)
    y = reference.corr2d(x, w, s, pads, padding_mode=padding_mode, mode=mode, dilations=d)
    padded = reference.pad(x[None, :, :, None], pads, padding_mode)[0, :, :, 0]
    used = w[::-1, ::-1] if mode == "convolution" else w
    title = title or (f"{'Convolution' if mode == 'convolution' else 'Cross-correlation'} "
                      f"Y = W * X, stride {s[0] if s[0] == s[1] else s}, padding "
                      f"{pads if pads[0] != pads[1] or pads[0][0] != pads[0][1] else pads[0][0]}"
                      + ("" if d == (1, 1) else f", dilation {d[0] if d[0] == d[1] else d}"))
    lines = _header(title, x, pads, padding_mode, padded)
    lines += ["", f"W ({w.shape[0]}x{w.shape[1]}) =", format_matrix(w)]
    if mode == "convolution":
        lines += ["", "mode=convolution: the kernel is flipped in both axes (W rotated 180 "
                  "degrees) =", format_matrix(used)]
    if d == (1, 1):
        lines += ["", "y_kl = sum_m sum_n w_mn * x^_(S(k-1)+m, S(l-1)+n)"]
        lines += _size_lines(x.shape, window, s, pads, out_shape)
    else:
        lines += ["", f"dilation {d[0] if d[0] == d[1] else d}: the kernel's taps are D cells "
                  "apart, the window spans D(M-1)+1 = "
                  f"{span[0]} rows and D(N-1)+1 = {span[1]} columns",
                  "y_kl = sum_m sum_n w_mn * x^_(S(k-1)+D(m-1)+1, S(l-1)+D(n-1)+1)"]
        lines += _size_lines(x.shape, span, s, pads, out_shape, dilated=True)
    lines.append("")
    for k in range(out_shape[0]):
        for l in range(out_shape[1]):
            r, c = k * s[0], l * s[1]
            patch = padded[r:r + span[0]:d[0], c:c + span[1]:d[1]]
            terms = " + ".join(f"{_num(a)}*{_num(b)}" for a, b in zip(used.ravel(),
                                                                      patch.ravel()))
            total = float((used * patch).sum())
            if not np.isclose(total, y[k, l]):  # the printed steps must be the definition
                raise AssertionError(f"explain: window ({k}, {l}) sums to {total}, the "
                                     f"reference gives {y[k, l]}")
            taps = "" if d == (1, 1) else f", taps every {d[0]} rows / {d[1]} columns"
            lines.append(f"y{k + 1}{l + 1} = {terms} = {_num(y[k, l])}    "
                         f"({_where(r, c, span)}{taps} of "
                         f"X{'^' if padded.shape != x.shape else ''})")
    lines += ["", "Y =", format_matrix(y)]
    return Explanation("\n".join(lines), y)


def explain_pool2d(x, pool_size=2, strides=None, padding=0, kind="max", padding_mode="zeros",
                   title=None, ceil_mode=False):
    """Explains a max or mean pooling (definition 24.2) window by window.

    Args:
        x: the input matrix.
        pool_size, strides, padding, padding_mode: as in `keras_cnn_ext.ops.max_pool2d`
            (`strides` defaults to the window; padded cells hold 0 with "zeros", the book's
            rule, and are left out with "ignore").
        kind: "max" or "mean".
        ceil_mode: PyTorch's rounding (`keras_cnn_ext.ops.max_pool2d`); the steps show the
            rounding, the dropped window and the cells past the padded input.
    """
    x = _matrix(x, "x")
    kind = geometry.normalize_choice(kind, "kind", ("max", "mean"))
    padding_mode = geometry.normalize_choice(padding_mode, "padding_mode", ("zeros", "ignore"))
    window = geometry.normalize_tuple(pool_size, "pool_size")
    s = window if strides is None else geometry.normalize_tuple(strides, "strides")
    pads = geometry.resolve_padding(padding, window)
    geometry.check_pool_padding(pads, window, received=padding)
    ceil_mode = geometry.normalize_bool(ceil_mode, "ceil_mode")
    out_shape = geometry.spatial_output_shape(x.shape, window, s, pads, ceil_mode)
    fn = reference.max_pool2d if kind == "max" else reference.mean_pool2d
    y = fn(x, window, s, pads, padding_mode=padding_mode, ceil_mode=ceil_mode)
    padded = reference.pad(x[None, :, :, None], pads)[0, :, :, 0]
    real = reference.pad(np.ones_like(x)[None, :, :, None], pads)[0, :, :, 0] > 0
    title = title or (f"{kind.capitalize()} pooling, window {window[0]}x{window[1]}, stride "
                      f"{s[0] if s[0] == s[1] else s}{', ceil_mode' if ceil_mode else ''}")
    lines = _header(title, x, pads, padding_mode, padded)
    formula = "max over the window" if kind == "max" else "the mean of the window"
    lines += ["", f"y_kl = {formula} at rows S(k-1)+1.., columns S(l-1)+1.."]
    lines += _size_lines(x.shape, window, s, pads, out_shape, ceil_mode=ceil_mode)
    lines.append("")
    for k in range(out_shape[0]):
        for l in range(out_shape[1]):
            r, c = k * s[0], l * s[1]
            # slicing stops at the padded input's edge: ceil_mode's overhang cells are left out
            keep = real[r:r + window[0], c:c + window[1]].ravel()
            cells = padded[r:r + window[0], c:c + window[1]].ravel()
            if padding_mode == "ignore":
                cells = cells[keep]
            values = ", ".join(_num(v) for v in cells)
            if kind == "max":
                step, value = f"max({values})", cells.max()
            else:
                divisor = cells.size
                step = f"({' + '.join(_num(v) for v in cells)}) / {divisor}"
                value = cells.sum() / divisor
            if not np.isclose(value, y[k, l]):
                raise AssertionError(f"explain: window ({k}, {l}) gives {value}, the "
                                     f"reference gives {y[k, l]}")
            lines.append(f"y{k + 1}{l + 1} = {step} = {_num(y[k, l])}    "
                         f"({_where(r, c, window)})")
    lines += ["", "Y =", format_matrix(y)]
    return Explanation("\n".join(lines), y)


def explain_example(name):
    """One of the book's worked examples ("24.2", "24.3", "24.4", "24.7"), checked against
    the book's printed answer."""
    if name not in EXAMPLES:
        raise ValueError(f"Invalid value for argument `name`. Expected one of "
                         f"{', '.join(EXAMPLES)}. Received: name={name!r}")
    title, kwargs, answer = EXAMPLES[name]
    kwargs = dict(kwargs)
    fn = explain_pool2d if "pool_size" in kwargs else explain_corr2d
    result = fn(title=title, **kwargs)
    if not np.array_equal(result.output, np.asarray(answer, dtype=np.float64)):
        raise AssertionError(f"explain: example {name} gives {result.output.tolist()}, the "
                             f"book prints {answer}")
    return result


def parse_matrix(text, name="matrix"):
    """'3 2 0 1; 0 2 1 2' (rows split by ';' or new lines, cells by spaces or commas)."""
    rows = [r for r in text.replace("\n", ";").split(";") if r.strip()]
    try:
        m = [[float(v) for v in r.replace(",", " ").split()] for r in rows]
    except ValueError:
        m = None
    if not m or len({len(r) for r in m}) != 1 or not m[0]:
        raise ValueError(f"Invalid value for argument `{name}`. Expected rows of numbers "
                         f"separated by ';', all of the same length, e.g. '1 2; 3 4'. "
                         f"Received: {name}={text!r}")
    return np.array(m)
