"""`keras-cnn-ext explain`: a correlation or pooling computed step by step, like the book."""

import argparse

from keras_cnn_ext.cli._args import positive_int

EPILOG = """\
examples:
  keras-cnn-ext explain                          # the book's example 24.2
  keras-cnn-ext explain 24.3                     # zero padding 1 (also 24.4: stride 2,
                                                 #   24.7: max pooling; = --example 24.3)
  keras-cnn-ext explain --padding 1 --stride 2
  keras-cnn-ext explain --dilation 2 --padding same  # taps 2 cells apart (PyTorch dilation)
  keras-cnn-ext explain --input "1 2 3; 4 5 6; 7 8 9" --kernel "1 0; 0 -1"
  keras-cnn-ext explain --pool max --pool-size 2 --input "3 2 0 1; 0 2 1 2; 2 0 0 3; 2 3 1 2"
  keras-cnn-ext explain --pool mean --pool-size 2 --stride 1 --padding 1 --padding-mode ignore
  keras-cnn-ext explain --pool max --pool-size 2 --ceil-mode --input "1 2 3; 4 5 6; 7 8 9"

Matrices: rows separated by ';', numbers by spaces or commas. Without --input the book's
4x4 input of example 24.2 is used, without --kernel its 3x3 kernel. Indices are 1-based as in
the book; the numbers come from keras_cnn_ext.ops.reference.
"""


EXAMPLES = ("24.2", "24.3", "24.4", "24.7")


def add_parser(subparsers):
    p = subparsers.add_parser(
        "explain", help="show a correlation or pooling step by step (book examples 24.2-24.7)",
        description="Print the step-by-step computation of a cross-correlation or pooling on a "
                    "small\nmatrix: the matrix, the padded input, each window's products and "
                    "sum, the output size\nformula and the output.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("example_number", metavar="EXAMPLE", nargs="?", choices=EXAMPLES,
                   help="one of the book's worked examples: " + ", ".join(EXAMPLES)
                        + " (the same as --example)")
    p.add_argument("--example", choices=EXAMPLES,
                   help="one of the book's worked examples (default 24.2 when no matrix or "
                        "setting is given)")
    p.add_argument("--input", "-x", metavar="MATRIX", help="the input matrix, e.g. '1 2; 3 4'")
    p.add_argument("--kernel", "-w", metavar="MATRIX", help="the kernel matrix")
    p.add_argument("--padding", "-p", default="0",
                   help="P (all sides), P,Q (rows, columns), valid, same or full; default 0")
    p.add_argument("--stride", "-s", type=positive_int, default=None,
                   help="stride S (default 1; pooling: the window)")
    p.add_argument("--padding-mode", default="zeros",
                   choices=("zeros", "replicate", "reflect", "ignore"),
                   help="zeros (book), replicate, reflect (correlation); ignore (pooling)")
    p.add_argument("--mode", choices=("cross_correlation", "convolution"),
                   default="cross_correlation", help="convolution flips the kernel")
    p.add_argument("--dilation", "-d", type=positive_int, default=1,
                   help="dilation D of the correlation (PyTorch's dilation): taps D cells "
                        "apart; default 1")
    p.add_argument("--pool", choices=("max", "mean"), help="explain a pooling instead")
    p.add_argument("--pool-size", type=positive_int, default=2, help="pooling window (2)")
    p.add_argument("--ceil-mode", action="store_true",
                   help="pooling: PyTorch's ceil_mode output rounding")
    p.set_defaults(func=run)


def _padding(text):
    from keras_cnn_ext.cli import UsageError

    text = text.strip().lower()
    if text in ("valid", "same", "full"):
        return text
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) not in (1, 2) or min(values) < 0:
        raise UsageError(f"invalid value for --padding: {text!r} (choose from an integer P >= 0, "
                         "P,Q, valid, same, full)")
    return values[0] if len(values) == 1 else values


def run(args):
    from keras_cnn_ext import explain
    from keras_cnn_ext.cli import UsageError

    if args.example_number and args.example and args.example_number != args.example:
        raise UsageError(f"EXAMPLE {args.example_number} and --example {args.example} differ: "
                         "give the example once")
    args.example = args.example or args.example_number
    custom = (args.input or args.kernel or args.pool or args.padding != "0"
              or args.stride is not None or args.mode != "cross_correlation"
              or args.padding_mode != "zeros" or args.dilation != 1
              or getattr(args, "ceil_mode", False))
    if args.example and custom:
        raise UsageError("--example shows the book's example as printed; leave out the "
                         "matrix and settings (or leave out --example)")
    try:
        if args.example or not custom:
            result = explain.explain_example(args.example or "24.2")
        else:
            x = explain.parse_matrix(args.input, "--input") if args.input else explain.X_24_2
            padding = _padding(args.padding)
            if args.pool:
                if args.kernel:
                    raise UsageError("--kernel is for correlations; pooling has no kernel "
                                     "(use --pool-size)")
                if args.dilation != 1:
                    raise UsageError("--dilation is for correlations; pooling has no "
                                     "dilation")
                result = explain.explain_pool2d(x, args.pool_size, args.stride, padding,
                                                kind=args.pool, padding_mode=args.padding_mode,
                                                ceil_mode=getattr(args, "ceil_mode", False))
            else:
                if getattr(args, "ceil_mode", False):
                    raise UsageError("--ceil-mode is for pooling (use --pool max or mean)")
                if args.padding_mode == "ignore":
                    raise UsageError("invalid value for --padding-mode: 'ignore' (choose from "
                                     "zeros, replicate, reflect for a correlation)")
                w = explain.parse_matrix(args.kernel, "--kernel") if args.kernel else \
                    explain.W_24_2
                result = explain.explain_corr2d(x, w, args.stride or 1, padding,
                                                padding_mode=args.padding_mode, mode=args.mode,
                                                dilation=args.dilation)
    except ValueError as exc:  # a window that does not fit, bad padding, ...: the user's values
        raise UsageError(str(exc)) from None
    print(result.text)
    return 0
