"""Package metadata for keras_cnn_ext.

The compiled custom-op library (see `custom_ops/`) is built by `build_native.py` during
`pip install .`; a missing compiler or a failed compile never fails the install.
"""

from setuptools import find_packages, setup

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
    install_requires=[
        "keras>=3.0",
        "tensorflow>=2.16",
        "numpy",
    ],
    extras_require={
        "tuning": ["keras-tuner>=1.4"],
        "data": ["tensorflow-datasets>=4.9"],
        "test": ["pytest"],
    },
    entry_points={"console_scripts": ["keras-cnn-ext=keras_cnn_ext.cli:main"]},
)
