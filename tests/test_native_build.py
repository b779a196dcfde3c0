"""Tests of the native build's shared definitions (`keras_cnn_ext/ops/native_config.py`), the
build's failure record and the loader's report of it. The real builds (`pip install .`,
`pip install -e .`) take minutes and are verified outside the suite (docs/native-ops.md)."""

import json
import os
import subprocess
import sys

from keras_cnn_ext.ops import native_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_source_file_is_built_and_every_listed_one_exists():
    src = os.path.join(ROOT, native_config.SOURCE_ROOT)
    on_disk = {os.path.relpath(os.path.join(d, f), src).replace(os.sep, "/")
               for d, _, files in os.walk(src) for f in files if f.endswith(".cc")}
    listed = (native_config.OP_SOURCES + native_config.CPU_KERNEL_SOURCES
              + native_config.GPU_WRAPPER_SOURCES + native_config.CUDA_SOURCES)
    assert len(set(listed)) == len(listed)
    assert on_disk == set(listed)
    assert os.path.exists(os.path.join(ROOT, native_config.CUDA_SELFTEST))


def test_cpu_flag_parsing(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse4_2 avx2 fma\nbugs\t: none\n")
    assert native_config.cpu_flags(str(info)) == {"fpu", "sse4_2", "avx2", "fma"}
    assert native_config.missing_cpu_flags(["avx2", "avx512f", "bmi2"], str(info)) == [
        "avx512f", "bmi2"]
    assert native_config.missing_cpu_flags([], str(info)) == []
    # unknown CPU flags (no /proc/cpuinfo): nothing is reported missing, the load is attempted
    assert native_config.missing_cpu_flags(["avx2"], str(tmp_path / "absent")) == []


def test_shell_assignments_for_the_cuda_check():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "keras_cnn_ext", "ops",
                                                       "native_config.py"), "--shell"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    values = dict(line.split("=", 1) for line in out.splitlines())
    assert set(values) == {"NVCC", "CUDA_HOME", "CUDA_ARCHS", "SOURCE_ROOT", "CUDA_SOURCES",
                           "GPU_WRAPPER_SOURCES", "CUDA_SELFTEST"}
    for src in native_config.CUDA_SOURCES:
        assert src in values["CUDA_SOURCES"]
    env = dict(os.environ, KCE_CUDA_ARCHS="86, 90")
    out = subprocess.run([sys.executable, os.path.join(ROOT, "keras_cnn_ext", "ops",
                                                       "native_config.py"), "--shell"],
                         capture_output=True, text=True, timeout=60, check=True, env=env).stdout
    assert "CUDA_ARCHS='86 90'" in out.splitlines()


def test_failed_build_is_recorded_and_reported_by_the_loader(tmp_path):
    # A compiler that does not exist: the build fails, exits 1, and leaves its reason behind.
    env = dict(os.environ, CXX=str(tmp_path / "no-such-compiler"))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "build_native.py"), "--build-lib",
                           str(tmp_path)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "native build failed" in proc.stderr and "build_native.py --inplace" in proc.stderr
    out_dir = tmp_path / "keras_cnn_ext" / "ops"
    record = json.loads((out_dir / native_config.BUILD_ERROR_NAME).read_text())
    assert "no-such-compiler" in record["error"]
    assert not (out_dir / native_config.LIB_NAME).exists()
    # The loader, pointed at that place, warns once with the reason and how to build.
    code = (
        "import warnings\n"
        "from keras_cnn_ext.ops import native\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    a = native.available(); b = native.available()\n"
        "print(a, b, len(w))\n"
        "print(native.status())\n"
    )
    env = dict(os.environ, KERAS_CNN_EXT_NATIVE_LIB=str(out_dir / native_config.LIB_NAME),
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    first, status = out.stdout.splitlines()[:2]
    assert first.split() == ["False", "False", "1"]
    assert "failed when the package was installed" in status and "no-such-compiler" in status
    assert "build_native.py --inplace" in status
