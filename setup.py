"""The build step of keras_cnn_ext that pyproject.toml cannot declare: compiling the custom ops.

All metadata is in pyproject.toml. This file adds `build_native`, a sub-command of setuptools'
`build` (setuptools' documented `SubCommand` protocol), which runs `build_native.py`:

* `pip install .` (and wheels): the library is compiled into the build tree and lands in the
  wheel, which is then tagged for this platform (`BinaryDistribution`);
* `pip install -e .`: setuptools sets `editable_mode`, and the library is compiled in place,
  next to the sources the editable install points at.

The library must be compiled against the TensorFlow it will be loaded into — that of the target
environment, which is not a build requirement (listing it there would install a second, isolated
copy of a 600 MB package, possibly another version). `_python_with_tensorflow` finds it: first the
interpreter exactly as the build frontend started it (this sees the target environment under
`pip install --no-build-isolation`), else the same interpreter with `-E` (Python ignores PYTHON*
variables), which drops the temporary build-requirement directory that pip's default build
isolation adds in front of `sys.path` and leaves the interpreter's own environment: the one pip
installs into. A frontend that builds with another interpreter (e.g. `python -m build`) finds no
TensorFlow there; the build then reports how to build the ops instead.

A failed or skipped native build never fails the install: the package then runs on the composite
path, and `build_native.py` leaves the reason where the library would be, for the loader to show
(pip does not print the output of a build step that succeeded).
"""

import os
import subprocess
import sys

from setuptools import Command, Distribution, setup
from setuptools.command.build import build

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, ROOT)
import build_native  # noqa: E402 - the build script beside this file (standard library only)

config = build_native.config  # keras_cnn_ext/ops/native_config.py: the names, defined once
OUTPUTS = (config.LIB_NAME, config.INFO_NAME, config.BUILD_ERROR_NAME)


def _python_with_tensorflow():
    """The command line of an interpreter that can import the target environment's TensorFlow."""
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('tensorflow') is None)"
    for cmd in ([sys.executable], [sys.executable, "-E"]):
        try:
            if subprocess.run([*cmd, "-c", probe], check=False).returncode == 0:
                return cmd
        except OSError:
            break
    return [sys.executable]  # build_native.py then says that TensorFlow is missing


class BuildNative(Command):
    """Compiles the custom-op library (custom_ops/) with build_native.py."""

    description = "compile the TensorFlow custom ops against the target environment's TensorFlow"
    user_options = []

    def initialize_options(self):
        self.build_lib = None
        self.editable_mode = False

    def finalize_options(self):
        self.set_undefined_options("build_py", ("build_lib", "build_lib"))

    def run(self):
        if os.environ.get(config.ENV_SKIP_BUILD) == "1":
            print(f"keras_cnn_ext: {config.ENV_SKIP_BUILD}=1, the custom ops are not built")
            return
        where = ["--inplace"] if self.editable_mode else ["--build-lib", self.build_lib]
        python = _python_with_tensorflow()
        print(f"keras_cnn_ext: building the custom ops with `{' '.join(python)}`")
        try:
            subprocess.run([*python, build_native.__file__, *where], check=False)
        except OSError as exc:
            print(f"keras_cnn_ext: native build skipped: {exc}")

    def _existing(self, base):
        return [os.path.join(base, config.PKG_SUBDIR, n) for n in OUTPUTS
                if os.path.exists(os.path.join(base, config.PKG_SUBDIR, n))]

    def get_outputs(self):
        return list(self.get_output_mapping()) if self.editable_mode else self._existing(
            self.build_lib)

    def get_output_mapping(self):
        # Editable: the files were written in place; map where a regular build would put them.
        if not self.editable_mode:
            return {}
        return {os.path.join(self.build_lib, os.path.relpath(path, ROOT)): path
                for path in self._existing(ROOT)}

    def get_source_files(self):
        return []


class Build(build):
    sub_commands = build.sub_commands + [("build_native", None)]


class BinaryDistribution(Distribution):
    """The wheel holds a compiled library: tag it for this platform and Python, not as pure."""

    def has_ext_modules(self):
        return True


setup(cmdclass={"build": Build, "build_native": BuildNative}, distclass=BinaryDistribution)
