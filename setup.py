"""Package metadata for keras_cnn_ext.

The compiled custom-op library (see `custom_ops/`) is built by `build_native.py` during
`pip install .`; a missing compiler or a failed compile never fails the install.
"""

import os
import subprocess
import sys

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py


def _target_environment():
    """`os.environ` without pip's build-isolation overlay.

    Under build isolation pip runs this file with the interpreter of the environment being
    installed into, but hides that environment's site-packages behind a PYTHONPATH overlay. A
    child interpreter started with the overlay removed sees the environment the package lands
    in, so the custom ops are compiled against *that* TensorFlow (the only one they can load
    into) and the TensorFlow requirement below is decided against it.
    """
    env = dict(os.environ)
    overlay = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if "pip-build-env" in p]
    if overlay:
        rest = [p for p in env["PYTHONPATH"].split(os.pathsep) if p and p not in overlay]
        env["PYTHONPATH"] = os.pathsep.join(rest)
        env.pop("PYTHONNOUSERSITE", None)
    return env


class BuildPyWithNative(build_py):
    """Also compiles the custom-op library into the build tree; a failure never fails the
    install (the package then runs on the composite path)."""

    def run(self):
        super().run()
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "build_native.py")
        if os.environ.get("KERAS_CNN_EXT_SKIP_NATIVE") == "1" or not os.path.exists(script):
            return
        try:
            subprocess.run([sys.executable, script, "--build-lib", self.build_lib], check=False,
                           env=_target_environment())
        except Exception as exc:  # noqa: BLE001
            print(f"keras_cnn_ext: native build skipped: {exc}")


# TensorFlow ships under several distribution names (tensorflow, tensorflow-cpu, ...). Requiring
# "tensorflow" next to an installed tensorflow-cpu would install a second copy over it, so the
# requirement is only added when the target environment has no TensorFlow distribution.
_TF_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tensorflow-intel",
                     "tf-nightly", "tf-nightly-cpu")


def _tensorflow_requirement():
    probe = (
        "import importlib.metadata as m, sys\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        m.version(name); sys.exit(0)\n"
        "    except m.PackageNotFoundError:\n"
        "        pass\n"
        "sys.exit(1)\n"
    )
    try:
        found = subprocess.run([sys.executable, "-c", probe, *_TF_DISTRIBUTIONS],
                               env=_target_environment(), check=False).returncode == 0
    except OSError:
        found = False
    return [] if found else ["tensorflow>=2.16"]


setup(
    name="keras_cnn_ext",
    version="0.1.0",
    description=(
        "Textbook-exact convolution and pooling layers for Keras 3 / TensorFlow, with "
        "hand-written gradients, optional compiled custom ops and classic CNN builders."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["keras_cnn_ext", "keras_cnn_ext.*"]),
    cmdclass={"build_py": BuildPyWithNative},  # compiles custom_ops/ (build_native.py)
    install_requires=["keras>=3.0", "numpy"] + _tensorflow_requirement(),
    extras_require={
        # grpcio: KerasTuner's distributed (chief/worker) search talks gRPC
        "tuning": ["keras-tuner>=1.4", "grpcio"],
        "data": ["tensorflow-datasets>=4.9", "scikit-learn"],
        "viz": ["matplotlib"],
        "tensorboard": ["tensorboard"],
        "test": ["pytest"],
    },
    entry_points={"console_scripts": ["keras-cnn-ext = keras_cnn_ext.cli:main"]},
)
