"""`keras-cnn-ext convert MODEL WEIGHTS -o OUT.keras`: trained weights into a checked .keras
model (a thin shell over `keras_cnn_ext.models.pretrained.convert`)."""

import argparse
import json
import os
import sys

from keras_cnn_ext.cli import UsageError
from keras_cnn_ext.cli._args import check_model, input_shape, positive_int

EPILOG = """\
examples:
  # a torchvision state dict (torch.save(model.state_dict(), "resnet50.pth")); .safetensors too
  keras-cnn-ext convert resnet50 resnet50.pth -o resnet50.keras
  keras-cnn-ext convert resnext50_32x4d resnext.safetensors -o resnext.keras --input-shape 160,160,3
  # a keras.applications weight file (legacy .h5 or Keras 3 .weights.h5)
  keras-cnn-ext convert resnet50 resnet50_weights.h5 -o resnet50.keras --variant keras

When the source's library is importable (torch and torchvision for --variant torchvision,
keras.applications for --variant keras), the source model runs beside the converted one on a
probe batch: max |diff| and the top-1 agreement are printed, and a mismatch writes nothing
(exit code 1). The written model starts with the input normalisation its weights expect
(`kce.models.preprocess_input` mode "torch" or "caffe"), so it takes RGB images with pixel
values 0..255, and ends with a softmax (--logits: the classifier's logits; --no-preprocessing:
the bare network). The file is written under a temporary name and renamed: a killed convert
leaves nothing behind. Fine-tune it with `keras-cnn-ext train MODEL --weights OUT.keras`.
"""


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "convert", help="convert torchvision / timm / keras.applications weights into a "
                        "checked .keras model",
        description="Build a registered model with trained weights (a PyTorch state dict "
                    ".pth/.safetensors or a keras.applications .h5), check it against the "
                    "source model, write a .keras file.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", metavar="MODEL", help="a registered model name, e.g. resnet50")
    parser.add_argument("weights", metavar="WEIGHTS",
                        help="the weight file (.pth, .pt, .safetensors, .h5, .weights.h5)")
    parser.add_argument("--output", "-o", metavar="OUT.keras", required=True,
                        help="the .keras file to write")
    parser.add_argument("--variant", choices=("torchvision", "keras"), default="torchvision",
                        help="the layout of the weights: torchvision (torchvision / timm "
                             "state dicts; default) or keras (keras.applications files)")
    parser.add_argument("--input-shape", type=input_shape, metavar="H,W,C",
                        help="the model's input (default the builder's, e.g. 224,224,3)")
    parser.add_argument("--num-classes", type=positive_int, metavar="N",
                        help="default: the number of classes of the weights' classifier")
    parser.add_argument("--no-preprocessing", dest="preprocess", action="store_false",
                        help="write the bare network (inputs normalised by the caller)")
    parser.add_argument("--logits", action="store_true",
                        help="end with the classifier's logits instead of the softmax")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="do not run the source model beside the converted one")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT.keras")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)
    return parser


def _check_args(args):
    model = check_model(args.model)
    if not os.path.isfile(args.weights):
        raise UsageError(f"invalid value for WEIGHTS: {args.weights!r} (no such file)")
    if not args.output.endswith(".keras"):
        raise UsageError(f"invalid value for --output: {args.output!r} (expected a file ending "
                         "in .keras)")
    if os.path.isdir(args.output):
        raise UsageError(f"invalid value for --output: {args.output!r} (a folder; give a file "
                         "name ending in .keras)")
    if os.path.exists(args.output) and not args.overwrite:
        raise UsageError(f"invalid value for --output: {args.output!r} (it exists; pass "
                         "--overwrite to replace it)")
    return model


def _summary(report):
    lines = [f"Converted {report['tensors']} tensors into {report['model']} (variant "
             f"{report['variant']}, {report['num_classes']} classes, input "
             f"{'x'.join(map(str, report['input_shape']))}, {report['params']:,} parameters)"]
    if report["checked_against"] is None:
        lines.append("  checked:       no (the source's library is not importable here, or "
                     "--no-check)")
    else:
        relative = report["max_abs_diff"] / report["logits_scale"]
        lines.append(f"  checked:       against {report['checked_against']} on "
                     f"{report['probe_batch']} probe images: max |diff| "
                     f"{report['max_abs_diff']:.3g} ({relative:.2g} of the logits' scale), "
                     f"top-1 agreement {report['top1_agreement']}/{report['probe_batch']}")
    pre = (f"preprocess_input mode {report['preprocessing']!r} included (inputs: RGB 0..255)"
           if report["includes_preprocessing"] else
           f"not included: feed preprocess_input(x, mode={report['preprocessing']!r})")
    lines.append(f"  preprocessing: {pre}")
    lines.append(f"Wrote {report['output']}")
    return "\n".join(lines)


def run(args):
    model = _check_args(args)
    from keras_cnn_ext.models import pretrained
    from keras_cnn_ext.training.lock import folder_lock

    # one writer per target: a second convert to the same file is refused (exit 2)
    with folder_lock(args.output):
        try:
            _, report = pretrained.convert(
                model, args.weights, args.output, variant=args.variant,
                input_shape=args.input_shape, num_classes=args.num_classes,
                preprocess=args.preprocess, logits=args.logits,
                check="auto" if args.check else False, overwrite=args.overwrite)
        except pretrained.ConversionMismatchError as exc:
            print(f"keras-cnn-ext convert: {exc}", file=sys.stderr)
            return 1
        except (ValueError, TypeError, FileExistsError, ImportError) as exc:
            raise UsageError(str(exc)) from None
    print(json.dumps(report, indent=2) if args.json else _summary(report))
    return 0
