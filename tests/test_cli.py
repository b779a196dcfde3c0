"""The `keras-cnn-ext` command line: exit codes, messages with the valid choices, no traceback
without --debug, and the commands' output."""

import json
import subprocess
import sys

import pytest

from keras_cnn_ext.cli import main
from proc_helper import child_env



def run(capsys, *argv):
    """(exit code, stdout, stderr) of the command line run in this process."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own errors and --help
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("argv, needle", [
    (["train", "lenet"], "invalid value for MODEL: 'lenet' (choose from alexnet, "),
    (["train", "lenet5", "--dataset", "mnistt"], "invalid value for --dataset: 'mnistt' "
                                                 "(choose from digits, mnist, "),
    (["train", "lenet5", "--epochs", "0"], "argument --epochs: expected a positive integer"),
    (["train", "lenet5", "--batch-size", "x"], "argument --batch-size/-b: expected a positive"),
    (["train", "lenet5", "--lr", "-1"], "expected a positive number, got '-1'"),
    (["train", "lenet5", "--optimizer", "adamax"], "invalid choice: 'adamax' (choose from "
                                                   "'adam', 'adamw', 'sgd'"),
    (["train", "lenet5", "--layers", "torch"], "invalid choice: 'torch'"),
    (["train", "lenet5", "--implementation", "cuda"], "invalid choice: 'cuda'"),
    (["train", "lenet5", "--input-shape", "28,28"], "expected HEIGHT,WIDTH,CHANNELS"),
    (["train", "lenet5", "--resume"], "--resume needs --output DIR"),
    (["summary", "resnet"], "invalid value for MODEL: 'resnet' (choose from "),
    (["evaluate", "missing.keras"], "invalid value for MODEL.keras: 'missing.keras'"),
    (["evaluate", "x.keras", "--dataset", "nope"], "invalid value for --dataset: 'nope'"),
    (["explain", "--padding", "-1"], "invalid value for --padding: '-1'"),
    (["explain", "--example", "24.9"], "invalid choice: '24.9'"),
    (["explain", "--input", "1 2; 3"], "Expected rows of numbers separated by ';'"),
    (["explain", "--input", "1 2; 3 4", "--kernel", "1 2 3; 4 5 6; 7 8 9"],
     "The window does not fit into the padded input: input size 2, kernel size 3"),
    (["explain", "--example", "24.3", "--stride", "2"], "--example shows the book's example"),
    (["explain", "--pool", "max", "--pool-size", "2", "--padding", "2"], "smaller than"),
    (["nope"], "invalid choice: 'nope'"),
    # the shared flags: the same check (and message) in every command that has them
    (["tune", "lenet5", "--batch-size", "0"], "argument --batch-size/-b: expected a positive"),
    (["evaluate", "x.keras", "-b", "-3"], "argument --batch-size/-b: expected a positive"),
    (["train", "lenet5", "--seed", "-1"], "argument --seed: expected an integer >= 0"),
    (["tune", "lenet5", "--seed", "x"], "argument --seed: expected an integer >= 0"),
    (["tune", "lenet", "--output", "o"], "invalid value for MODEL: 'lenet' (choose from lenet5, "
                                         "vgg, resnet)"),
    (["tune", "lenet5", "--tuner", "grid"], "invalid value for --tuner: 'grid' (choose from "
                                            "random, bayesian, hyperband)"),
    (["explain", "24.9"], "argument EXAMPLE: invalid choice: '24.9' (choose from '24.2', "
                          "'24.3', '24.4', '24.7')"),
    (["explain", "24.3", "--example", "24.4"], "EXAMPLE 24.3 and --example 24.4 differ"),
    (["export", "m.keras"], "the export target is missing: give PATH or --output PATH"),
])
def test_usage_errors_exit_2_with_the_choices(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2, (code, out, err)
    assert needle in err, err
    assert "Traceback" not in err + out


def test_every_command_has_help_with_examples(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for command in ("train", "evaluate", "summary", "explain", "info"):
        assert command in out
        code, text, _ = run(capsys, command, "--help")
        assert code == 0 and "examples:" in text and f"keras-cnn-ext {command}" in text


def test_explain_default_is_example_24_2(capsys):
    code, out, _ = run(capsys, "explain")
    assert code == 0
    assert out.startswith("Example 24.2: Y = W * X")
    assert "y12 = 2*2 + 1*0 + 2*1 + 0*2 + 0*1 + 3*2 + 0*0 + 0*0 + 2*3 = 18" in out
    assert out.rstrip().endswith("Y =\n  11  18\n   6  22")


def test_explain_padding_stride_pooling_and_a_given_matrix(capsys):
    code, out, _ = run(capsys, "explain", "--example", "24.3")
    assert code == 0 and "padded input X^" in out and "  0  3  2  0  1  0" in out
    assert out.rstrip().endswith("  11   7  12   3")
    code, out, _ = run(capsys, "explain", "--example", "24.4")
    assert "floor((7 + 0 - 3) / 2) + 1 = 3" in out and out.rstrip().endswith("   8  10  13")
    code, out, _ = run(capsys, "explain", "--pool", "max", "--input",
                       "3 2 0 1; 0 2 1 2; 2 0 0 3; 2 3 1 2")
    assert code == 0 and "y11 = max(3, 2, 0, 2) = 3" in out
    assert out.rstrip().endswith("Y =\n  3  2\n  3  3")
    code, out, _ = run(capsys, "explain", "--input", "1,2,3;4,5,6;7,8,9", "--kernel", "1 0; 0 -1",
                       "--padding", "1", "--stride", "2")
    assert code == 0 and "y11 = 1*0 + 0*0 + 0*0 + -1*1 = -1" in out
    code, out, _ = run(capsys, "explain", "--pool", "mean", "--stride", "1", "--padding", "1",
                       "--padding-mode", "ignore", "--input", "1 2; 3 4")
    assert code == 0 and "y11 = (1) / 1 = 1" in out and "y22 = (1 + 2 + 3 + 4) / 4 = 2.5" in out


def test_summary_splits_trainable_and_non_trainable(capsys):
    code, out, _ = run(capsys, "summary", "lenet5")
    assert code == 0
    assert "Total params: 61,706\nTrainable params: 61,706\nNon-trainable params: 0" in out
    assert "c1       CrossCorrelation2D  (None, 28, 28, 6)      156  117,600   5     1" in out
    code, out, _ = run(capsys, "summary", "resnet20")
    assert code == 0 and "Trainable params: 269,722" in out
    non_trainable = int(out.split("Non-trainable params: ")[1].split()[0].replace(",", ""))
    assert non_trainable == 2 * sum((16, 16, 16, 16, 16, 16, 16) + (32,) * 6 + (64,) * 6)
    code, out, _ = run(capsys, "summary", "vgg11", "--input-shape", "32,32,3",
                       "--num-classes", "10")
    assert code == 0 and "Model: vgg11, input (32, 32, 3)" in out


def test_info_reports_versions_native_status_and_devices(capsys):
    import tensorflow as tf

    code, out, _ = run(capsys, "info", "--json")
    facts = json.loads(out)
    assert code == 0 and facts["tensorflow"] == tf.__version__
    assert isinstance(facts["native_ops"], bool) and facts["native_status"]
    assert any(d.startswith("CPU") for d in facts["devices"])
    assert "lenet5" in facts["models"] and facts["datasets"][0] == "digits"


def test_train_evaluate_and_the_refusal_to_overwrite(capsys, digits_data_dir, tmp_path):
    out_dir = tmp_path / "run"
    argv = ["train", "lenet5", "--dataset", "digits", "--data-dir", digits_data_dir,
            "--epochs", "1", "--max-examples", "64", "--output", str(out_dir), "--verbose", "0",
            "--no-tensorboard"]
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert f"Output folder: {out_dir}" not in out  # verbose 0 prints nothing
    assert json.loads((out_dir / "metrics.json").read_text())["epochs"] == 1
    code, out, err = run(capsys, *argv)
    assert code == 2 and "is not empty" in err and "--resume" in err and "--overwrite" in err
    code, out, err = run(capsys, *argv[:-2], "2", "--no-tensorboard", "--overwrite")
    assert code == 0, err
    assert "Output folder:" in out and "test accuracy" in out
    code, out, err = run(capsys, "evaluate", str(out_dir / "model.keras"), "--dataset",
                         "digits", "--data-dir", digits_data_dir, "--json")
    result = json.loads(out)
    assert code == 0 and result["examples"] == 359 and 0.0 <= result["accuracy"] <= 1.0


def test_runtime_failures_exit_1_with_the_hint_and_traceback_only_with_debug(tmp_path):
    """A missing tfds set is not a usage error: exit 1, the hint, no traceback; --debug shows
    it. (A real subprocess, bounded in time: what a user's shell sees.)"""
    env = child_env()
    argv = [sys.executable, "-m", "keras_cnn_ext", "train", "lenet5", "--dataset", "mnist",
            "--data-dir", str(tmp_path / "empty"), "--output", str(tmp_path / "run")]
    done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 1
    assert "is not prepared in" in done.stderr and "--data-dir" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()  # nothing written before the data was found
    # --debug re-raises (here in-process: the exception itself, for the traceback)
    from keras_cnn_ext.data import DatasetNotAvailableError

    with pytest.raises(DatasetNotAvailableError):
        main(["--debug"] + argv[3:])


@pytest.mark.parametrize("command", [["train", "lenet5"], ["tune", "lenet5"],
                                     ["export", "m.keras"]])
@pytest.mark.parametrize("flag", ["--output", "-o"])
def test_every_command_that_writes_a_folder_takes_output(command, flag):
    from keras_cnn_ext.cli import build_parser

    args = build_parser().parse_args(command + [flag, "runs/x"])
    assert (args.directory if command[0] == "tune" else
            args.output_flag if command[0] == "export" else args.output) == "runs/x"


def test_shared_flags_are_spelled_alike_and_tune_keeps_directory():
    from keras_cnn_ext.cli import build_parser

    parser = build_parser()
    tune = parser.parse_args(["tune", "lenet5", "--directory", "d", "-d", "mnist", "-b", "8",
                              "--seed", "3", "--data-dir", "t"])
    assert (tune.directory, tune.dataset, tune.batch_size, tune.seed, tune.data_dir) == (
        "d", "mnist", 8, 3, "t")
    train = parser.parse_args(["train", "lenet5", "-o", "d", "-d", "mnist", "-b", "8",
                               "--seed", "3", "--data-dir", "t"])
    assert (train.output, train.dataset, train.batch_size, train.seed, train.data_dir) == (
        "d", "mnist", 8, 3, "t")
    evaluate = parser.parse_args(["evaluate", "m.keras", "-d", "mnist", "-b", "8",
                                  "--data-dir", "t"])
    assert (evaluate.dataset, evaluate.batch_size, evaluate.data_dir) == ("mnist", 8, "t")
    # --debug and -v before or after the command
    for argv in (["--debug", "info"], ["info", "--debug"]):
        assert parser.parse_args(argv).debug is True
    for argv in (["-v", "info"], ["info", "-v"], ["info", "--show-logs"]):
        assert parser.parse_args(argv).show_logs is True
    assert parser.parse_args(["info"]).show_logs is False


def test_tune_output_names_the_flag_in_its_refusal(capsys, tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "search.json").write_text("{}")
    for flag in ("--output", "--directory"):
        code, _, err = run(capsys, "tune", "lenet5", flag, str(tmp_path / "old"))
        assert code == 2 and "invalid value for --output:" in err and "not empty" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]  # the lock is gone


def test_explain_takes_the_example_as_a_positional_argument(capsys):
    code, out, _ = run(capsys, "explain", "24.4")
    assert code == 0
    assert out == run(capsys, "explain", "--example", "24.4")[1]
    assert out.startswith("Example 24.4: stride 2")
    assert out.rstrip().endswith("   8  10  13")
