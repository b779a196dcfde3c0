"""The README points a newcomer to examples/demo.py: it must reproduce the book and exit 0."""

import os
import runpy

DEMO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples",
                    "demo.py")


def test_demo_reproduces_the_book(capsys):
    demo = runpy.run_path(DEMO)
    assert demo["main"]() == 0
    out = capsys.readouterr().out
    assert "differs" not in out and "did not converge" not in out
    assert "Example 24.4: stride 2\n[[11  4 11]\n [ 9  6 15]\n [ 8 10 13]]" in out
    assert "61,706" in out


def test_readme_usage_block_runs(capsys):
    """The README's usage example is code a user copies: it must run as written."""
    import re

    readme = os.path.join(os.path.dirname(DEMO), os.pardir, "README.md")
    with open(readme, encoding="utf-8") as f:
        block = re.search(r"## Usage\n\n```python\n(.*?)```", f.read(), re.S).group(1)
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["model"].output_shape == (None, 6, 7, 16)
    assert sum(int(w.numpy().size) for w in namespace["resnet"].trainable_weights) == 11_689_512
    assert "61,706" in capsys.readouterr().out


def _example(name):
    return runpy.run_path(os.path.join(os.path.dirname(DEMO), name))


def test_train_lenet_digits_smoke(tmp_path, digits_data_dir):
    out = tmp_path / "run"
    assert _example("train_lenet_digits.py")["main"](
        ["--smoke", "--output", str(out), "--data-dir", digits_data_dir]) == 0
    for name in ("model.keras", "metrics.json", "kernels.png", "feature_maps.png"):
        assert (out / name).exists(), name


def test_train_resnet_cifar10_smoke(tmp_path):
    """Smoke mode fakes CIFAR-10 with tfds.testing.mock_data; without data the real run
    stops at once with the hint."""
    out = tmp_path / "run"
    main = _example("train_resnet_cifar10.py")["main"]
    assert main(["--smoke", "--output", str(out), "--data-dir", str(tmp_path)]) == 0
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "resnet20" and metrics["input_shape"] == [32, 32, 3]
    assert main(["--output", str(tmp_path / "real"), "--data-dir", str(tmp_path / "none")]) == 1


def test_classic_kernels(tmp_path, digits_data_dir, capsys):
    assert _example("classic_kernels.py")["main"](
        ["--output", str(tmp_path), "--data-dir", digits_data_dir]) == 0
    assert (tmp_path / "classic_kernels.png").read_bytes()[:4] == b"\x89PNG"
    assert "[[ 0  1  0  0  0 -1  0]" in capsys.readouterr().out
