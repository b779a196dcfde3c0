"""PyTorch and torchvision, imported only on request (reading a ``.pth``, `keras-cnn-ext
convert` checking a conversion against the source model); never a dependency.

torchvision's wheel registers its C++ operators (`torchvision::nms`, `torchvision::qnms`)
against a CUDA build of torch; beside a CPU build its import fails at "operator
torchvision::nms does not exist". Its models use none of those operators, so defining the two
schemas first (with `torch.library`, where torchvision's own `_meta_registrations` expects to
find them) makes `torchvision.models` importable and exact.
"""

import functools
import importlib
import importlib.util
import sys


def _require(module, purpose):
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"{purpose} needs the `{module}` package, which keras_cnn_ext does "
                          f"not install: `pip install {module}`.") from error


@functools.lru_cache(maxsize=None)
def torch(purpose="This"):
    """The `torch` module (a clear ImportError naming what to install if it is missing)."""
    return _require("torch", purpose)


@functools.lru_cache(maxsize=None)
def torchvision(purpose="This"):
    """The `torchvision` module, importable beside a CPU-only torch."""
    t = torch(purpose)
    try:
        return _require("torchvision", purpose)
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
    # The failed import left half-initialised modules behind: drop them, define the schemas,
    # import again.
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    _define_schemas(t)
    return _require("torchvision", purpose)


def available():
    """Whether torch and torchvision can be imported here (without importing them)."""
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "torchvision"))


def _define_schemas(t):
    library = t.library.Library("torchvision", "DEF")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    # Kept alive for the process: the schemas vanish with the Library object.
    _define_schemas.library = library
