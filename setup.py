"""Package metadata for keras_cnn_ext.

The compiled custom-op library (see `custom_ops/`) is built by `build_native.py` during
`pip install .`; a missing compiler or a failed compile never fails the install.
"""

from importlib import metadata

from setuptools import find_packages, setup

# TensorFlow ships under several distribution names (tensorflow, tensorflow-cpu, ...). Requiring
# "tensorflow" next to an installed tensorflow-cpu would install a second copy over it, so the
# requirement is only added when no TensorFlow distribution is present in the build environment
# (the README installs with --no-build-isolation, so the build sees the user's environment).
_TF_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tensorflow-intel",
                     "tf-nightly", "tf-nightly-cpu")


def _tensorflow_requirement():
    for name in _TF_DISTRIBUTIONS:
        try:
            metadata.version(name)
            return []
        except metadata.PackageNotFoundError:
            continue
    return ["tensorflow>=2.16"]


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
    install_requires=["keras>=3.0", "numpy"] + _tensorflow_requirement(),
    extras_require={
        "tuning": ["keras-tuner>=1.4"],
        "data": ["tensorflow-datasets>=4.9"],
        "test": ["pytest"],
    },
)
