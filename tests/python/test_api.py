"""The package's API against the command line: checks, errors, the model's forward pass,
pickling, threads and bad inputs."""
import os
import pickle
import threading

import numpy as np
import pytest

import cnnc
from conftest import ROOT, examples

DIGITS = os.path.join(ROOT, "examples", "digits.cnn")
IMAGES = os.path.join(ROOT, "examples", "images")


@pytest.mark.parametrize("path", examples(), ids=os.path.basename)
def test_check_matches_the_command_line(path, cli):
    report = cnnc.check(path)
    expected = cli.json("check", "--json", path)
    assert report.totals["params"] == expected["total_params"]
    assert report.totals["macs"] == expected["total_macs"]
    assert report.totals["flops"] == expected["total_flops"]
    assert report.totals["depth"] == expected["depth"]
    assert report.totals["peak_activation_bytes"] == expected["peak_activation_bytes"]
    assert [l["name"] for l in report.layers] == [l["name"] for l in expected["layers"]]
    assert "<table>" in report._repr_html_()


def test_check_takes_source_text_and_an_input_size():
    source = "network tiny\ninput 3x32x32\nconv 3x3 8 relu\ngap\nflatten\nfc 4\n"
    assert cnnc.check(source).totals["params"] == 3 * 9 * 8 + 8 + 8 * 4 + 4
    assert cnnc.check(os.path.join(ROOT, "examples", "googlenet.cnn"), input=(3, 320, 320)).input == (3, 320, 320)


def test_errors_raise_check_error_with_line_and_column():
    path = os.path.join(ROOT, "examples", "errors", "unknown_layer.cnn")
    with pytest.raises(cnnc.CheckError) as e:
        cnnc.check(path)
    assert (e.value.line, e.value.column) == (5, 36)
    assert "unknown_layer.cnn:5:36" in str(e.value) and "E0002" in str(e.value)
    assert e.value.diagnostics[0]["help"] == "did you mean `maxpool`?"
    with pytest.raises(cnnc.CheckError):
        cnnc.load(path)


def test_graph_and_compare():
    g = cnnc.graph(os.path.join(ROOT, "examples", "googlenet.cnn"), collapse=True)
    assert g._repr_svg_().startswith("<svg")
    c = cnnc.compare(os.path.join(ROOT, "examples", "conv5x5.cnn"), os.path.join(ROOT, "examples", "stack3x3.cnn"))
    assert "0.72x" in str(c) and "<table>" in c._repr_html_()
    assert [n["params"] for n in c.networks] == [102464, 73856]


def test_forward_equals_cnnc_run_bitwise(cli, tmp_path):
    x = np.random.default_rng(0).standard_normal((3, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    expected = cli.json("run", DIGITS, str(tmp_path / "x.npy"), "--json")
    got = cnnc.load(DIGITS)(x)
    assert got.dtype == np.float32 and got.shape == (3, 10)
    assert np.array_equal(got, np.array([p["logits"] for p in expected], dtype=np.float32))
    # A single image [C, H, W] is a batch of one.
    assert np.array_equal(cnnc.load(DIGITS)(x[0]), got[:1])


def test_predict_matches_cnnc_run(cli):
    files = [os.path.join(IMAGES, f"digit_{k}.png") for k in range(10)]
    expected = cli.json("run", DIGITS, *files, "--json")
    model = cnnc.load(DIGITS)
    got = model.predict(files)
    for p, e in zip(got, expected):
        assert p.input == e["input"]
        assert [(t.index, t.label, t.prob) for t in p.top] == [(t["index"], t["label"], t["prob"]) for t in e["top"]]
        assert p.logits.tolist() == e["logits"]
    pytest.importorskip("PIL")
    from PIL import Image

    from_pil = model.predict([Image.open(f) for f in files])
    assert [p.logits.tolist() for p in from_pil] == [p.logits.tolist() for p in got]


def test_params_and_interpreter():
    model = cnnc.load(DIGITS, backend="interp")
    names = [p.name for p in model.params()]
    assert names[:2] == ["conv1.1.1.weight", "conv1.1.2.weight"] and len(names) == 32
    x = np.random.default_rng(1).standard_normal((2, 1, 32, 32)).astype(np.float32)
    assert np.allclose(model(x), cnnc.load(DIGITS)(x), rtol=0, atol=1e-4)


def test_pickling_round_trips():
    model = cnnc.load(os.path.join(ROOT, "examples", "googlenet.cnn"), threads=1)
    again = pickle.loads(pickle.dumps(model))
    x = np.random.default_rng(2).standard_normal((1, 3, 224, 224)).astype(np.float32)
    assert np.array_equal(model(x), again(x))
    assert again.input == (3, 224, 224) and again.name == "googlenet"


def test_four_threads_share_one_model():
    model = cnnc.load(os.path.join(ROOT, "examples", "resnet18.cnn"))
    rng = np.random.default_rng(3)
    inputs = [rng.standard_normal((1, 3, 224, 224)).astype(np.float32) for _ in range(4)]
    expected = [model(x) for x in inputs]
    results = [None] * 4

    def work(i):
        results[i] = [model(inputs[i]) for _ in range(3)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        for r in results[i]:
            assert np.array_equal(r, expected[i])


def test_bad_inputs_raise_python_exceptions():
    with pytest.raises(FileNotFoundError):
        cnnc.load("no/such/model.cnn")
    with pytest.raises(FileNotFoundError):
        cnnc.load(DIGITS, weights="no/such.safetensors")
    with pytest.raises(ValueError):
        cnnc.load(DIGITS, backend="gpu")
    with pytest.raises(ValueError, match="at most 256"):
        cnnc.load(DIGITS, threads=50000)
    model = cnnc.load(DIGITS)
    with pytest.raises(ValueError, match=r"\[N, 1, 32, 32\]"):
        model(np.zeros((2, 3, 32, 32), dtype=np.float32))
    with pytest.raises(ValueError):
        model(np.zeros((32, 32), dtype=np.float32))
    with pytest.raises(TypeError, match="dtype"):
        model(np.zeros((1, 1, 32, 32), dtype=np.int64))
    with pytest.raises(TypeError):
        model(np.array([["a"]]))
    # Non-contiguous and float64 arrays are converted.
    x = np.zeros((1, 1, 32, 64), dtype=np.float64)[:, :, :, ::2]
    assert model(x).shape == (1, 10)
    with pytest.raises(FileNotFoundError):
        model.predict(["no/such/image.png"])
    with pytest.raises(ValueError):
        model.predict([os.path.join(ROOT, "README.md")])
    with pytest.raises(TypeError):
        model.predict([42])
