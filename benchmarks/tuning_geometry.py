"""The fraction of random configurations of each hypermodel that fit 16x16, 28x28 and 32x32.

Draws `--samples` configurations the way KerasTuner's random search does (every active
hyperparameter uniformly, conditions first) and checks each one's feature-map sizes; prints
that fraction next to the exact one the hypermodel computes when it shapes its space, and the
fraction of the *unshaped* space (every option kept, ``min_valid_fraction=0``). With
``--build N`` it also builds N fitting and N failing samples of each case and checks that
the built model's maps are the computed ones and that the builder refuses the failing ones.

    python benchmarks/tuning_geometry.py --samples 2000 --build 5
"""

import argparse
import os
import sys

import keras
import keras_tuner

from keras_cnn_ext.tuning import HyperLeNet, HyperResNet, HyperVGG

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import add_docs_argument, markdown_table, write_docs_table  # noqa: E402


def _check_builds(hm, samples, n):
    built = refused = 0
    for values in samples:
        ok = hm.fits(values)
        if (ok and built >= n) or (not ok and refused >= n):
            continue
        hp = keras_tuner.HyperParameters()
        hp.values = dict(values)
        keras.backend.clear_session()
        try:
            model = hm.build(hp)
        except keras_tuner.errors.FailedTrialError:
            assert not ok
            # the builder itself refuses it too (no raw TensorFlow error)
            try:
                hm._build_model(hm.configuration(values))
            except ValueError:
                refused += 1
                continue
            raise AssertionError(f"the builder built a configuration that does not fit: {values}")
        shapes = {layer.name: tuple(layer.output.shape[1:3]) for layer in model.layers}
        assert all(shapes[name] == hw for name, hw in hm.geometry(values))
        built += 1
    return built, refused


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--build", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    add_docs_argument(parser)
    args = parser.parse_args()
    rows = []
    print("| hypermodel | input | sampled fit | exact fit | unshaped space (exact) |")
    print("|---|---|---|---|---|")
    for cls in (HyperLeNet, HyperVGG, HyperResNet):
        for size in (16, 28, 32):
            hm = cls((size, size, 3), 10)
            samples = hm.sample(args.samples, seed=args.seed + size)
            fraction = sum(hm.fits(v) for v in samples) / len(samples)
            raw = cls((size, size, 3), 10, min_valid_fraction=0.0).exact_valid_fraction
            line = (f"| {cls.__name__} | {size}x{size} | {fraction:.3f} | "
                    f"{hm.exact_valid_fraction:.3f} | {raw:.3f} |")
            if args.build:
                built, refused = _check_builds(hm, samples, args.build)
                line += f" built {built}, refused {refused}"
            print(line, flush=True)
            rows.append([f"`{cls.__name__}`", f"{size}x{size}", f"{fraction:.3f}",
                         f"{hm.exact_valid_fraction:.3f}", f"{raw:.3f}"])
    if args.docs:  # docs/tuning.md
        write_docs_table("tuning_geometry", markdown_table(
            ["hypermodel", "input", "sampled configurations that fit", "exact",
             "unshaped space"], rows), "tuning_geometry.py",
            f"{args.samples} samples, seed {args.seed}")


if __name__ == "__main__":
    main()
