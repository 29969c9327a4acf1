# %% [markdown]
# # Design, check, train and run a CNN with cnnc
#
# The whole loop on scikit-learn's handwritten digits: write a network in a `.cnn` file, check
# it, build it in PyTorch, train it while sweeping the learning rate and the batch size, keep the
# best, and run it with cnnc, which gives the same predictions as PyTorch.
#
# `train_digits.ipynb` beside this file is the same code as a notebook (its cells are this file's
# `# %%` cells). Run either from the repository root:
#
#     pip install "./python[torch]" scikit-learn matplotlib
#     python examples/notebooks/train_digits.py          # CNNC_QUICK=1 for a short run
#
# It writes `examples/notebooks/out/` (the network, the best weights) and the sweep's plot,
# `examples/notebooks/train_digits_sweep.png`.

# %%
import os
import subprocess
import time

import cnnc
import cnnc.torch
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from sklearn.datasets import load_digits

# Paths are relative to the repository root (Jupyter starts in the notebook's folder).
if os.path.basename(os.getcwd()) == "notebooks":
    os.chdir(os.path.join("..", ".."))
HERE = os.path.join("examples", "notebooks")
OUT = os.path.join(HERE, "out")
os.makedirs(OUT, exist_ok=True)
QUICK = os.environ.get("CNNC_QUICK") == "1"
torch.manual_seed(0)
torch.set_num_threads(2)

# %% [markdown]
# ## 1. Write the network
#
# A small VGG-style network: each stage halves the resolution and doubles the channels.

# %%
SOURCE = """\
network digits_small
input 1x32x32
mean 0.305
std 0.324

block conv_bn(c) { conv 3x3 c nobias; bn; relu }

stage conv1 { conv_bn(8) x2; maxpool 2 }
stage conv2 { conv_bn(16) x2; maxpool 2 }
stage conv3 { conv_bn(32); maxpool 2 }
stage head { gap; flatten; dropout 0.1; fc 10 }
"""
CNN = os.path.join(OUT, "digits_small.cnn")
with open(CNN, "w") as f:
    f.write(SOURCE)

# %% [markdown]
# ## 2. Check it
#
# Shapes, parameters, MACs, receptive fields; in a notebook the report shows as a table.

# %%
report = cnnc.check(CNN)
print(report)
try:
    print(report.to_pandas()[["description", "output", "params", "macs"]])
except ImportError:  # pandas is optional
    pass

# %% [markdown]
# ## 3. The data, preprocessed as `cnnc run` preprocesses a PNG
#
# The 8x8 digits (0..16) are upsampled to 32x32 and quantised to 8 bits, then normalised with the
# header's mean and std: exactly what cnnc does to an 8-bit greyscale image of that size.

# %%
digits = load_digits()
x = torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None]
u8 = (F.interpolate(x, size=32, mode="bilinear", align_corners=False) * 255).round().clamp(0, 255).to(torch.uint8)
y = torch.tensor(digits.target)
images = ((u8.float() / 255.0).double() - 0.305).div(0.324).float()
order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
n_train = int(0.8 * len(y))
tr, va = order[:n_train], order[n_train:]

# %% [markdown]
# ## 4. Train, sweeping the learning rate and the batch size
#
# `cnnc.torch.build` gives the file's network as a `torch.nn.Module` whose parameters carry
# cnnc's canonical names. Each configuration starts from the same initialisation.


# %%
def train(lr, batch, epochs):
    torch.manual_seed(0)
    net = cnnc.torch.build(CNN)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    history = []
    for _ in range(epochs):
        net.train()
        perm = tr[torch.randperm(len(tr))]
        for i in range(0, len(perm), batch):
            b = perm[i : i + batch]
            loss = F.cross_entropy(net.logits(images[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            history.append((net.logits(images[va]).argmax(1) == y[va]).float().mean().item())
    return net, history


learning_rates = [1e-3, 3e-3] if QUICK else [3e-4, 1e-3, 3e-3, 1e-2]
batch_sizes = [32] if QUICK else [16, 64, 256]
epochs = 2 if QUICK else 12
results = {}
for lr in learning_rates:
    for batch in batch_sizes:
        t = time.time()
        net, history = train(lr, batch, epochs)
        results[(lr, batch)] = (net, history)
        print(f"lr {lr:<7g} batch {batch:<4d} validation accuracy {history[-1]:.4f} ({time.time() - t:.1f} s)")

# %% [markdown]
# ## 5. Plot the sweep

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
colours = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(learning_rates)))
styles = ["-", "--", ":", "-."]
for (lr, batch), (_, history) in results.items():
    colour, style = colours[learning_rates.index(lr)], styles[batch_sizes.index(batch) % len(styles)]
    ax1.plot(range(1, epochs + 1), history, color=colour, linestyle=style, label=f"lr {lr:g}, batch {batch}")
ax1.set_xlabel("epoch")
ax1.set_ylabel("validation accuracy")
ax1.set_ylim(0.5, 1.0)
ax1.legend(fontsize=7)
ax1.set_title("validation accuracy while training")
for batch in batch_sizes:
    ax2.plot(learning_rates, [results[(lr, batch)][1][-1] for lr in learning_rates], "o-", label=f"batch {batch}")
ax2.set_xscale("log")
ax2.set_xlabel("learning rate")
ax2.set_ylabel(f"validation accuracy after {epochs} epochs")
ax2.legend()
ax2.set_title("final accuracy by learning rate and batch size")
fig.tight_layout()
fig.savefig(os.path.join(HERE, "train_digits_sweep.png"), dpi=110)

# %% [markdown]
# ## 6. Save the best with safetensors
#
# The state dict's names are cnnc's, so the file loads into cnnc as it is.

# %%
(best_lr, best_batch), (best, best_history) = max(results.items(), key=lambda kv: kv[1][1][-1])
print(f"best: lr {best_lr:g}, batch {best_batch}: {best_history[-1]:.4f}")
WEIGHTS = os.path.join(OUT, "digits_small.safetensors")
save_file({k: v.contiguous() for k, v in best.state_dict().items()}, WEIGHTS)

# %% [markdown]
# ## 7. Run it with cnnc: the same predictions as PyTorch
#
# `cnnc.load` compiles the network; its logits match PyTorch's, and so do `cnnc run`'s on the
# same images written as PNGs.

# %%
model = cnnc.load(CNN, weights=WEIGHTS)
val = images[va].numpy()
with torch.no_grad():
    torch_logits = best.logits(images[va]).numpy()
cnnc_logits = model(val)
print(f"max |cnnc - torch| / std = {np.abs(cnnc_logits - torch_logits).max() / torch_logits.std():.1e}")
assert (cnnc_logits.argmax(1) == torch_logits.argmax(1)).all()

from PIL import Image  # noqa: E402

pngs = []
for i in range(8):
    path = os.path.join(OUT, f"val_{i}_{int(y[va[i]])}.png")
    Image.fromarray(u8[va[i], 0].numpy(), mode="L").save(path)
    pngs.append(path)
from_python = [p.top[0].index for p in model.predict(pngs)]
binary = os.environ.get("CNNC", os.path.join("target", "release", "cnnc"))
run = subprocess.run([binary, "run", CNN, *pngs, "--weights", WEIGHTS, "--json"], capture_output=True, text=True, check=True)
import json  # noqa: E402

from_cli = [p["top"][0]["index"] for p in json.loads(run.stdout)]
print("cnnc.load:", from_python)
print("cnnc run: ", from_cli)
print("labels:   ", [int(y[va[i]]) for i in range(8)])
assert from_python == from_cli == [int(v) for v in torch_logits[:8].argmax(1)]
