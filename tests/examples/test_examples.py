"""Each example in examples/ runs end to end on its real data, small (--quick)."""
import importlib.util
import os

import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "examples")


def example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(EXAMPLES, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_mlp(capsys):
    pytest.importorskip("sklearn")
    result = example("digits_mlp").main(["--quick"])
    out = capsys.readouterr().out
    assert result["fastbp"]["accuracy"] >= 0.85                      # 5 epochs
    assert result["sklearn"]["accuracy"] >= 0.5
    h = result["fastbp"]["history"]
    assert h["loss"][-1] < h["loss"][0]
    assert "fastbp MLP : test accuracy" in out and "sklearn MLPClassifier" in out


def test_digits_lstm_gridsearch(capsys):
    pytest.importorskip("sklearn")
    result = example("digits_lstm_gridsearch").main(["--quick"])
    out = capsys.readouterr().out
    search = result["lstm"]["search"]
    assert type(search.best_estimator_).__name__ == "LSTMClassifier"
    assert search.best_estimator_.n_features_in_ == 8              # 8 pixels per step (row)
    assert result["lstm"]["accuracy"] >= 0.8 and result["sklearn"]["accuracy"] >= 0.8
    assert "LSTMClassifier in GridSearchCV" in out and "scikit-learn MLPClassifier" in out


def test_char_lstm(capsys):
    result = example("char_lstm").main(["--quick", "--no-progress"])
    out = capsys.readouterr().out
    h = result["history"]
    assert h["val_loss"][-1] < result["loss_before"] < 1.05 * np.log(result["vocab"])
    assert result["after"].startswith("def ") and len(result["after"]) == 4 + 80
    assert "sampled before training" in out and "sampled after training" in out and "time:" in out


def test_char_lstm_with_bptt_k1_k2(capsys):
    result = example("char_lstm").main(["--quick", "--no-progress", "--bptt", "10", "--k2", "25"])
    out = capsys.readouterr().out
    assert result["history"]["val_loss"][-1] < result["loss_before"]
    assert "truncated BPTT(10, 25)" in out


def test_sine_rnn(capsys):
    result = example("sine_rnn").main(["--quick"])
    out = capsys.readouterr().out
    assert result["history"]["loss"][-1] < result["history"]["loss"][0]
    assert result["mse_rnn"] < result["mse_last"]
    assert "last-value baseline" in out and "time:" in out


@pytest.mark.parametrize("name", ["char_lstm", "sine_rnn"])
def test_plot_option_writes_a_png(name, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "loss.png"
    args = ["--quick", "--epochs", "1", "--plot", str(path)] + (["--no-progress"] if name == "char_lstm" else [])
    example(name).main(args)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(path) in capsys.readouterr().out


def test_deploy_onnx_step(capsys, tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    path = tmp_path / "lstm.onnx"
    result = example("deploy_onnx_step").main(["--quick", "--out", str(path)])
    out = capsys.readouterr().out
    assert path.read_bytes()                                  # the exported model
    assert result["ort_error"] < 1e-5
    assert result["step_error"] == 0.0      # a loop of steps is forward, bit for bit
    assert result["history"]["loss"][-1] < result["history"]["loss"][0]
    assert "onnxruntime on 8 new sequences" in out and "model.step, one value at a time" in out
