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
      files are plain CUDA (they include only the `kernels/*_functors.h` headers and
      `kernels/gpu_launch*.h`, no TensorFlow header), compiled by nvcc for sm_80 and sm_90
      (`KCE_CUDA_ARCHS` overrides) and linked into the same library together with the thin
      TensorFlow wrapper `kernels/window_kernels_gpu.cc`.
    The file lists, library names, CPU levels and nvcc discovery come from
    `keras_cnn_ext/ops/native_config.py` (shared with the loader and `.ci/build_cuda.sh`).

How the library stays matched to the TensorFlow it is loaded into
    A custom-op library uses TensorFlow's C++ ABI, which is only stable within one TensorFlow
    release. So:
    1. it is compiled against the TensorFlow of the environment it is installed into:
       `pip install .` / `pip install -e .` run this script with the installing interpreter,
       as the build frontend started it or, when that does not see TensorFlow (pip's build
       isolation puts a temporary directory in front of `sys.path`), with `python -E`, which sees
       the interpreter's own environment (setup.py, `_python_with_tensorflow`). TensorFlow is
       not a build requirement, so no temporary copy of it is ever compiled against. Install
       TensorFlow first; without it (or without a compiler) the build fails with a message, the
       reason is recorded in `_kce_ops.error.json` for the loader to report, and the package uses
       the composite path;
    2. next to the library, `_kce_ops.json` records the TensorFlow version (and compile flags) it
       was built against; the loader (`keras_cnn_ext/ops/native.py`) compares it with
       `tf.__version__` BEFORE loading: on a mismatch (e.g. after `pip install -U tensorflow`) it
       warns once, does not load, and the package falls back to the composite implementation.
       Re-run `pip install .` (or `python build_native.py --inplace`) to rebuild;
    3. `KERAS_CNN_EXT_NATIVE_LIB=/path/to/_kce_ops.so` points the loader at another build
       (its own `.json` is checked the same way).
    A failed compile never fails the install: this script exits non-zero, and setup.py goes on.
"""

import argparse
import concurrent.futures
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.abspath(__file__))


def _load_config():
    """keras_cnn_ext/ops/native_config.py, loaded by path: importing the package would need
    TensorFlow and Keras, and the build must run (and report) without them."""
    path = os.path.join(ROOT, "keras_cnn_ext", "ops", "native_config.py")
    spec = importlib.util.spec_from_file_location("_kce_native_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


config = _load_config()
SRC = os.path.join(ROOT, config.SOURCE_ROOT)


def tf_flags():
    import tensorflow as tf

    return (
        tf.__version__,
        list(tf.sysconfig.get_compile_flags()),
        list(tf.sysconfig.get_link_flags()),
        bool(tf.test.is_built_with_cuda()),
    )


def run(cmd, verbose):
    if verbose:
        print(" ".join(cmd), flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-6000:]}")
    return proc.stdout


def _objects(tmp, sources):
    return [(src, os.path.join(tmp, src.replace("/", "_") + ".o")) for src in sources]


def build(out_dir, verbose=False, jobs=2, gpu="auto"):
    """Compiles the library into `out_dir`; returns (path of the .so, the build record)."""
    t0 = time.time()
    version, cflags, lflags, tf_cuda = tf_flags()
    cxx = os.environ.get("CXX", "g++")
    march, cpu_flags = config.choose_march(os.environ.get(config.ENV_MARCH, "auto"))
    march_flags = [f"-march={march}", "-mtune=generic"] if march else []
    base = [cxx, "-std=c++17", "-fPIC", "-O3", *march_flags, "-DNDEBUG",
            "-Wno-deprecated-declarations", "-Wno-ignored-attributes", "-I", SRC]
    # TF's flags carry --std=c++17 too; keep ours.
    cflags = [f for f in cflags if not f.startswith("--std") and not f.startswith("-std")]
    nvcc = config.find_nvcc()
    want_gpu = {"auto": bool(nvcc) and tf_cuda, "on": True, "off": False}[gpu]
    if want_gpu and not nvcc:
        raise RuntimeError("--gpu=on but nvcc was not found")
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kce_build_") as tmp:
        commands = []
        for src, obj in _objects(tmp, config.OP_SOURCES + config.CPU_KERNEL_SOURCES):
            commands.append(([*base, *cflags, "-c", os.path.join(SRC, src), "-o", obj], obj))
        extra_link = []
        if want_gpu:
            home = config.cuda_home(nvcc)
            gpu_flags = ["-DGOOGLE_CUDA=1", "-I", os.path.join(home, "include"),
                         "-I", make_tf_cuda_include(tmp, home)]
            for src, obj in _objects(tmp, config.GPU_WRAPPER_SOURCES):
                commands.append(([*base, *cflags, *gpu_flags, "-c", os.path.join(SRC, src),
                                  "-o", obj], obj))
            for src, obj in _objects(tmp, config.CUDA_SOURCES):
                commands.append((nvcc_command(nvcc, os.path.join(SRC, src), obj), obj))
            extra_link = [f"-L{os.path.join(home, 'lib64')}", "-lcudart"]
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(run, cmd, verbose) for cmd, _ in commands]
            for fut in futures:
                fut.result()
        lib = os.path.join(out_dir, config.LIB_NAME)
        tmp_lib = os.path.join(tmp, config.LIB_NAME)
        run([cxx, "-shared", "-o", tmp_lib, *[o for _, o in commands], *lflags, *extra_link],
            verbose)
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
        # Library and record replace the old pair by renames, so a loader never sees a
        # half-written library or a record that describes another build.
        _write_json(os.path.join(out_dir, config.INFO_NAME), info)
        shutil.copy2(tmp_lib, lib + ".tmp")
        os.replace(lib + ".tmp", lib)
    _remove(os.path.join(out_dir, config.BUILD_ERROR_NAME))
    return lib, info


def _write_json(path, data):
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    os.replace(path + ".tmp", path)


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def record_failure(out_dir, reason):
    """Leaves `_kce_ops.error.json` where the library would be, so the loader can say why the ops
    are missing and how to build them (pip hides a successful install's build output)."""
    os.makedirs(out_dir, exist_ok=True)
    _write_json(os.path.join(out_dir, config.BUILD_ERROR_NAME), {
        "error": reason[-4000:],
        "python": sys.executable,
        "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })


def nvcc_command(nvcc, src, obj):
    cmd = [nvcc, "-std=c++17", "-O3", "-x", "cu", "-c", src, "-o", obj, "-Xcompiler", "-fPIC",
           "-I", SRC, "--expt-relaxed-constexpr"]
    for a in config.cuda_archs():
        cmd += ["-gencode", f"arch=compute_{a},code=sm_{a}"]
    return cmd


def make_tf_cuda_include(tmp, home):
    """An include dir in which third_party/gpus/cuda/include -> the toolkit's include/: the path
    TensorFlow's GPU headers (included by the wrapper) use, which the wheel does not ship."""
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
    out_dir = os.path.join(base, config.PKG_SUBDIR)
    if args.check:
        version, _, _, tf_cuda = tf_flags()
        print(f"TensorFlow {version} (CUDA build: {tf_cuda}); nvcc: {config.find_nvcc()}; "
              f"output: {os.path.join(out_dir, config.LIB_NAME)}")
        return 0
    t0 = time.time()
    try:
        lib, info = build(out_dir, verbose=args.verbose, jobs=args.jobs, gpu=args.gpu)
    except Exception as exc:  # noqa: BLE001 - report every failure the same way
        reason = f"{type(exc).__name__}: {exc}"
        record_failure(out_dir, reason)
        print(f"keras_cnn_ext: native build failed ({sys.executable}): {reason}\n"
              "keras_cnn_ext: the package works without it (composite path); to build the "
              "compiled ops, install TensorFlow and a C++17 compiler, then run "
              "`python build_native.py --inplace` in a source checkout or reinstall with "
              "`pip install --no-build-isolation .`", file=sys.stderr)
        return 1
    print(f"keras_cnn_ext: built {lib} for TensorFlow {info['tensorflow_version']} "
          f"(gpu={info['gpu']}) in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
