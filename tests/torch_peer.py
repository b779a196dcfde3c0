"""PyTorch and torchvision as the tests' peer: imported on request, never by the package.

torchvision's wheel registers its C++ operators (`torchvision::nms`, `torchvision::qnms`)
against a CUDA build of torch; beside the CPU build that `requirements-test.txt` pins, its
import fails at "operator torchvision::nms does not exist". Its models use none of those
operators, so defining the two schemas first (with `torch.library`, as torchvision's own
`_meta_registrations` expects to find them) makes `torchvision.models` importable and exact.
"""

import functools


@functools.lru_cache(maxsize=None)
def torch():
    """The `torch` module, single-threaded so it shares the CPU fairly with TensorFlow."""
    import torch as _torch

    _torch.set_num_threads(1)
    return _torch


@functools.lru_cache(maxsize=None)
def torchvision():
    """The `torchvision` module, importable beside a CPU-only torch."""
    t = torch()
    try:
        import torchvision as _tv
        return _tv
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
    # The failed import left half-initialised modules behind: drop them, define the schemas,
    # import again.
    import sys

    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    _define_schemas(t)
    import torchvision as _tv
    return _tv


def _define_schemas(t):
    library = t.library.Library("torchvision", "DEF")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    # Kept alive for the process: the schemas vanish with the Library object.
    _define_schemas.library = library
