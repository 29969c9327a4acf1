"""The PyTorch bridge (skipped without torch): every example's module agrees with cnnc, and its
state dict loads into cnnc as it is saved."""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

import cnnc  # noqa: E402
import cnnc.torch  # noqa: E402
from conftest import ROOT, examples  # noqa: E402


def randomise(net, seed):
    """Non-trivial batch-norm statistics, layer-norm affines and layer scales."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.normal_(0, 0.3, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, cnnc.torch.LayerNorm)):
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0, 0.2, generator=g)
            if isinstance(m, cnnc.torch.Scale):
                m.weight.uniform_(0.5, 1.5, generator=g)


@pytest.mark.parametrize("path", examples(), ids=os.path.basename)
def test_every_example_agrees_with_cnnc(path, tmp_path):
    torch.manual_seed(0)
    net = cnnc.torch.build(path).eval()
    randomise(net, 1)
    weights = tmp_path / "w.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    model = cnnc.load(path, weights=weights)
    assert model.warnings == [], "the state dict loads as it is (num_batches_tracked ignored)"
    x = torch.randn((2, *model.input), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = net.logits(x).reshape(2, -1).numpy()
    got = model(x.numpy())
    assert np.abs(got - expected).max() <= 1e-4 * expected.std(), os.path.basename(path)


def test_state_dict_names_are_canonical_and_run_from_the_command_line(cli, tmp_path):
    path = os.path.join(ROOT, "examples", "digits.cnn")
    net = cnnc.torch.build(path).eval()
    names = [k for k in net.state_dict() if not k.endswith("num_batches_tracked")]
    assert names == [p.name for p in cnnc.load(path).params()]
    weights = tmp_path / "digits.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    np.save(tmp_path / "x.npy", x.numpy())
    run = cli.json("run", path, str(tmp_path / "x.npy"), "--weights", str(weights), "--json")
    with torch.no_grad():
        expected = net(x).numpy()
    got = np.array([p["logits"] for p in run], dtype=np.float32)
    assert np.abs(got - expected).max() <= 1e-4 * expected.std()


def test_training_mode_uses_dropout_and_batch_statistics():
    net = cnnc.torch.build(os.path.join(ROOT, "examples", "digits.cnn"))
    x = torch.randn(8, 1, 32, 32)
    net.train()
    a, b = net(x), net(x)
    assert not torch.equal(a, b), "dropout is active in training"
    loss = torch.nn.functional.cross_entropy(net.logits(x), torch.arange(8) % 10)
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())
