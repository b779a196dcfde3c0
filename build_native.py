#!/usr/bin/env python
"""Builds keras_cnn_ext's compiled TensorFlow custom ops (`custom_ops/` -> `_kce_ops.so`).

Usage::

    python build_native.py --inplace          # into the source tree (development)
    python build_native.py --build-lib DIR    # into DIR/keras_cnn_ext/ops/ (what `pip install .` runs)
    python build_native.py --check            # print what would be built, build nothing

What is built
    * the CPU library, always: `g++ -std=c++17 -shared -fPIC -O3 -march=<level>` plus
      `tf.sysconfig.get_compile_flags()` / `get_link_flags()` of the TensorFlow that runs this
      script. The heavy lifting is Eigen's GEMM, whose vector kernels are chosen at compile time
      (4x faster with AVX-512 than with SSE), so `<level>` is the best x86-64 micro-architecture
      level the BUILD machine supports (`x86-64-v4` = AVX-512, `x86-64-v3` = AVX2+FMA, else
      `x86-64-v2`), never `-march=native`. The CPU flags that level needs are recorded in
      `_kce_ops.json`, and the loader checks them against `/proc/cpuinfo` before loading: a library
      copied to (or a wheel installed on) an older CPU is refused with one warning and the package
      uses the composite path instead of crashing with SIGILL. `KCE_NATIVE_MARCH=x86-64-v2` (or
      any -march value) forces a level, e.g. for a portable wheel.
    * the GPU kernels, only when `nvcc` is found AND `tf.test.is_built_with_cuda()`: the `.cu.cc`
      files are plain CUDA (they include only `custom_ops/cc/kce_functors.h`, no TensorFlow
      header), compiled by nvcc for sm_80 and sm_90 (`KCE_CUDA_ARCHS` overrides) and linked into the
      same library together with the thin TensorFlow wrapper `kce_kernels_gpu.cc`.

How the library stays matched to the TensorFlow it is loaded into
    A custom-op library uses TensorFlow's C++ ABI, which is only stable within one TensorFlow
    release. So:
    1. it is compiled against the TensorFlow of the environment it is installed into:
       `pip install .` runs this script with that environment's Python and, under pip's build
       isolation, with the isolation overlay removed from PYTHONPATH (setup.py,
       `_target_environment`), so the build imports the user's TensorFlow, not a temporary one.
       Install TensorFlow first; without it (or without a compiler) the build is skipped with a
       message and the package uses the composite path;
    2. next to the library, `_kce_ops.json` records the TensorFlow version (and compile flags) it
       was built against; the loader (`keras_cnn_ext/ops/native.py`) compares it with
       `tf.__version__` BEFORE loading: on a mismatch (e.g. after `pip install -U tensorflow`) it
       warns once, does not load, and the package falls back to the composite implementation.
       Re-run `pip install .` (or `python build_native.py --inplace`) to rebuild;
    3. `KERAS_CNN_EXT_NATIVE_LIB=/path/to/_kce_ops.so` points the loader at another build
       (its own `.json` is checked the same way).
    A failed compile never fails the install: this script exits non-zero and setup.py only prints
    the reason.
"""

import argparse
import concurrent.futures
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(ROOT, "custom_ops", "cc")
LIB_NAME = "_kce_ops.so"
INFO_NAME = "_kce_ops.json"
PKG_SUBDIR = os.path.join("keras_cnn_ext", "ops")
CPU_SOURCES = ["kce_ops.cc", "kce_kernels_cpu.cc"]
GPU_WRAPPER = "kce_kernels_gpu.cc"
CUDA_SOURCES = ["kce_kernels_gpu.cu.cc"]
DEFAULT_ARCHS = ("80", "90")


def tf_flags():
    import tensorflow as tf

    return (
        tf.__version__,
        list(tf.sysconfig.get_compile_flags()),
        list(tf.sysconfig.get_link_flags()),
        bool(tf.test.is_built_with_cuda()),
    )


# x86-64 micro-architecture levels and the /proc/cpuinfo flags each needs (besides SSE4.2 & co).
ISA_LEVELS = (
    ("x86-64-v4", ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl", "avx2", "fma",
                   "bmi1", "bmi2", "f16c", "movbe", "abm")),
    ("x86-64-v3", ("avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "abm")),
    ("x86-64-v2", ("sse4_2", "ssse3", "popcnt")),
)


def cpu_flags():
    """The CPU flags of this machine (Linux /proc/cpuinfo), or None when unknown."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


def choose_march(request):
    """Returns (-march value or None, the CPU flags it requires)."""
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
    nvcc = shutil.which("nvcc")
    if nvcc:
        return nvcc
    for cand in ("/usr/local/cuda/bin/nvcc", "/usr/local/bin/nvcc"):
        if os.path.exists(cand):
            return cand
    return None


def cuda_home(nvcc):
    """The CUDA toolkit holding cuda_runtime.h (nvcc may be a wrapper script elsewhere)."""
    import glob

    candidates = [os.environ.get("CUDA_HOME", ""),
                  os.path.dirname(os.path.dirname(os.path.realpath(nvcc))), "/usr/local/cuda",
                  *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)]
    for cand in candidates:
        if cand and os.path.exists(os.path.join(cand, "include", "cuda_runtime.h")):
            return cand
    raise RuntimeError(f"no CUDA toolkit with include/cuda_runtime.h found for {nvcc}")


def run(cmd, verbose):
    if verbose:
        print(" ".join(cmd), flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-6000:]}")
    return proc.stdout


def build(out_dir, verbose=False, jobs=2, gpu="auto"):
    """Compiles the library into `out_dir`; returns the path of the .so."""
    t0 = time.time()
    version, cflags, lflags, tf_cuda = tf_flags()
    cxx = os.environ.get("CXX", "g++")
    march, cpu_flags = choose_march(os.environ.get("KCE_NATIVE_MARCH", "auto"))
    march_flags = [f"-march={march}", "-mtune=generic"] if march else []
    base = [cxx, "-std=c++17", "-fPIC", "-O3", *march_flags, "-DNDEBUG",
            "-Wno-deprecated-declarations", "-Wno-ignored-attributes", "-I", SRC]
    # TF's flags carry --std=c++17 too; keep ours.
    cflags = [f for f in cflags if not f.startswith("--std") and not f.startswith("-std")]
    nvcc = find_nvcc()
    want_gpu = {"auto": bool(nvcc) and tf_cuda, "on": True, "off": False}[gpu]
    if want_gpu and not nvcc:
        raise RuntimeError("--gpu=on but nvcc was not found")
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kce_build_") as tmp:
        jobs_list = []
        for src in CPU_SOURCES:
            obj = os.path.join(tmp, src + ".o")
            jobs_list.append(([*base, *cflags, "-c", os.path.join(SRC, src), "-o", obj], obj))
        extra_link = []
        if want_gpu:
            home = cuda_home(nvcc)
            inc = make_tf_cuda_include(tmp, home)
            gpu_flags = ["-DGOOGLE_CUDA=1", "-I", os.path.join(home, "include"),
                         "-I", inc]
            obj = os.path.join(tmp, GPU_WRAPPER + ".o")
            jobs_list.append(([*base, *cflags, *gpu_flags, "-c", os.path.join(SRC, GPU_WRAPPER),
                               "-o", obj], obj))
            for src in CUDA_SOURCES:
                obj = os.path.join(tmp, src + ".o")
                jobs_list.append((nvcc_command(nvcc, os.path.join(SRC, src), obj), obj))
            extra_link = [f"-L{os.path.join(home, 'lib64')}", "-lcudart"]
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(run, cmd, verbose) for cmd, _ in jobs_list]
            for fut in futures:
                fut.result()
        lib = os.path.join(out_dir, LIB_NAME)
        tmp_lib = os.path.join(tmp, LIB_NAME)
        run([cxx, "-shared", "-o", tmp_lib, *[o for _, o in jobs_list], *lflags, *extra_link],
            verbose)
        shutil.copy2(tmp_lib, lib)
    info = {
        "tensorflow_version": version,
        "compile_flags": cflags,
        "link_flags": lflags,
        "march": march,
        "cpu_flags": sorted(cpu_flags),
        "gpu": want_gpu,
        "python": sys.version.split()[0],
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "build_seconds": round(time.time() - t0, 1),
    }
    with open(os.path.join(out_dir, INFO_NAME), "w") as f:
        json.dump(info, f, indent=1)
    return lib, info


def nvcc_command(nvcc, src, obj, archs=None):
    archs = archs or os.environ.get("KCE_CUDA_ARCHS", ",".join(DEFAULT_ARCHS)).split(",")
    cmd = [nvcc, "-std=c++17", "-O3", "-x", "cu", "-c", src, "-o", obj, "-Xcompiler", "-fPIC",
           "-I", SRC, "--expt-relaxed-constexpr"]
    for a in archs:
        cmd += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
    return cmd


def make_tf_cuda_include(tmp, home):
    """An include dir in which third_party/gpus/cuda/include -> the toolkit's include/ (DESIGN §6),
    needed by TensorFlow's GPU headers included from the wrapper."""
    inc = os.path.join(tmp, "cuda_inc")
    target = os.path.join(inc, "third_party", "gpus", "cuda")
    os.makedirs(target, exist_ok=True)
    link = os.path.join(target, "include")
    if not os.path.exists(link):
        os.symlink(os.path.join(home, "include"), link)
    return inc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--inplace", action="store_true", help="build into the source tree")
    where.add_argument("--build-lib", help="build into BUILD_LIB/keras_cnn_ext/ops/")
    parser.add_argument("--gpu", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--check", action="store_true", help="only print the plan")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    base = args.build_lib if args.build_lib else ROOT
    out_dir = os.path.join(base, PKG_SUBDIR)
    if args.check:
        version, _, _, tf_cuda = tf_flags()
        print(f"TensorFlow {version} (CUDA build: {tf_cuda}); nvcc: {find_nvcc()}; "
              f"output: {os.path.join(out_dir, LIB_NAME)}")
        return 0
    t0 = time.time()
    try:
        lib, info = build(out_dir, verbose=args.verbose, jobs=args.jobs, gpu=args.gpu)
    except Exception as exc:  # noqa: BLE001 - report every failure the same way
        print(f"keras_cnn_ext: native build failed: {exc}", file=sys.stderr)
        return 1
    print(f"keras_cnn_ext: built {lib} for TensorFlow {info['tensorflow_version']} "
          f"(gpu={info['gpu']}) in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
