"""Names and machine probes of the compiled custom ops, defined once for the build and the loader.

Used by `build_native.py` (the build), `keras_cnn_ext/ops/native.py` (the loader) and
`.ci/build_cuda.sh` (the CUDA compile check, through `python native_config.py --shell`). Standard
library only, and importable by path: the build loads this file without importing the package,
whose `__init__` needs TensorFlow and Keras.

>>> from keras_cnn_ext.ops import native_config
>>> native_config.LIB_NAME, native_config.INFO_NAME
('_kce_ops.so', '_kce_ops.json')
>>> "kernels/max_pool2d_op.cc" in native_config.CPU_KERNEL_SOURCES
True
>>> native_config.missing_cpu_flags(["avx2"], cpuinfo="/no/such/file")  # unknown CPU: no refusal
[]
"""

import glob
import os
import platform
import shlex
import shutil
import sys

# ----------------------------------------------------------------------------- files

LIB_NAME = "_kce_ops.so"            # the library, next to native.py
INFO_NAME = "_kce_ops.json"         # what it was built against (TensorFlow version, CPU flags)
BUILD_ERROR_NAME = "_kce_ops.error.json"  # why the last build at this place failed
PKG_SUBDIR = os.path.join("keras_cnn_ext", "ops")

# Sources, relative to custom_ops/cc/ (the include root of every file): op registrations,
# CPU kernels, the TensorFlow side of the GPU kernels, the plain-CUDA kernels.
SOURCE_ROOT = os.path.join("custom_ops", "cc")
OP_SOURCES = ("ops/corr2d_ops.cc", "ops/pool2d_ops.cc")
CPU_KERNEL_SOURCES = ("kernels/corr2d_op.cc", "kernels/max_pool2d_op.cc",
                      "kernels/mean_pool2d_op.cc")
GPU_WRAPPER_SOURCES = ("kernels/window_kernels_gpu.cc",)
CUDA_SOURCES = ("kernels/corr2d_op_gpu.cu.cc", "kernels/pool2d_op_gpu.cu.cc")
CUDA_SELFTEST = os.path.join("custom_ops", "tests", "gpu_selftest.cu.cc")

# ----------------------------------------------------------------------------- environment

ENV_LIB = "KERAS_CNN_EXT_NATIVE_LIB"          # a library to load instead of the one here
ENV_CPU_ALGO = "KERAS_CNN_EXT_NATIVE_CPU_ALGO"  # "direct": CPU kernels run the GPU's functors
ENV_SKIP_BUILD = "KERAS_CNN_EXT_SKIP_NATIVE"  # "1": `pip install` builds no library
ENV_MARCH = "KCE_NATIVE_MARCH"                # -march of the CPU build ("auto": best level here)
ENV_CUDA_ARCHS = "KCE_CUDA_ARCHS"             # e.g. "80,90" (commas or spaces)
DEFAULT_CUDA_ARCHS = ("80", "90")

# x86-64 micro-architecture levels and the /proc/cpuinfo flags each needs (besides SSE4.2 & co).
ISA_LEVELS = (
    ("x86-64-v4", ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl", "avx2", "fma",
                   "bmi1", "bmi2", "f16c", "movbe", "abm")),
    ("x86-64-v3", ("avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "abm")),
    ("x86-64-v2", ("sse4_2", "ssse3", "popcnt")),
)


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU flags of this machine (Linux `/proc/cpuinfo`), or None when unknown."""
    try:
        with open(cpuinfo, encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def missing_cpu_flags(required, cpuinfo="/proc/cpuinfo"):
    """The flags of `required` this CPU lacks, sorted ([] when the CPU's flags are unknown)."""
    have = cpu_flags(cpuinfo) if required else None
    return [] if have is None else sorted(set(required) - have)


def choose_march(request="auto"):
    """(-march value or None off x86-64, the CPU flags it requires) for `request`.

    "auto" picks the best level of `ISA_LEVELS` this machine supports (never -march=native, so a
    library stays usable on any CPU of that level); any other value is used as given.
    """
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None, set()
    levels = dict(ISA_LEVELS)
    if request != "auto":
        return request, set(levels.get(request, ()))
    have = cpu_flags()
    if have is None:
        return "x86-64-v2", set(levels["x86-64-v2"])
    for name, needs in ISA_LEVELS:
        if set(needs) <= have:
            return name, set(needs)
    return "x86-64", set()


def find_nvcc():
    """Path of nvcc ($NVCC, PATH, /usr/local/cuda/bin), or None."""
    for cand in (os.environ.get("NVCC"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc",
                 "/usr/local/bin/nvcc"):
        if cand and os.path.exists(cand):
            return cand
    return None


def cuda_home(nvcc):
    """The CUDA toolkit holding include/cuda_runtime.h ($CUDA_HOME, nvcc's own, /usr/local/cuda*);
    nvcc may be a wrapper script elsewhere. Raises RuntimeError when there is none."""
    candidates = [os.environ.get("CUDA_HOME", ""),
                  os.path.dirname(os.path.dirname(os.path.realpath(nvcc))), "/usr/local/cuda",
                  *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)]
    for cand in candidates:
        if cand and os.path.exists(os.path.join(cand, "include", "cuda_runtime.h")):
            return cand
    raise RuntimeError(f"no CUDA toolkit with include/cuda_runtime.h found for {nvcc}")


def cuda_archs():
    """The SM versions to compile for: $KCE_CUDA_ARCHS (commas or spaces) or 80 and 90."""
    value = os.environ.get(ENV_CUDA_ARCHS, "")
    return tuple(value.replace(",", " ").split()) or DEFAULT_CUDA_ARCHS


def _shell():
    """Shell assignments for .ci/build_cuda.sh (empty NVCC when nvcc is not found)."""
    nvcc = find_nvcc() or ""
    home = ""
    if nvcc:
        try:
            home = cuda_home(nvcc)
        except RuntimeError:
            pass
    values = {
        "NVCC": nvcc,
        "CUDA_HOME": home,
        "CUDA_ARCHS": " ".join(cuda_archs()),
        "SOURCE_ROOT": SOURCE_ROOT,
        "CUDA_SOURCES": " ".join(os.path.join(SOURCE_ROOT, s) for s in CUDA_SOURCES),
        "GPU_WRAPPER_SOURCES": " ".join(os.path.join(SOURCE_ROOT, s) for s in GPU_WRAPPER_SOURCES),
        "CUDA_SELFTEST": CUDA_SELFTEST,
    }
    return "\n".join(f"{k}={shlex.quote(v)}" for k, v in values.items())


if __name__ == "__main__":
    if sys.argv[1:] != ["--shell"]:
        sys.exit("usage: python native_config.py --shell")
    print(_shell())
