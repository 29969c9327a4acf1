#!/usr/bin/env python3
"""Convert a PyTorch state dict to cnnc's safetensors weights.

Usage: tools/torch2cnnc.py STATE_DICT.pth MODEL.cnn -o OUT.safetensors [--order ORDER] [--cnnc PATH]

Tensors are mapped by position: the state dict's order (skipping BN's `num_batches_tracked`)
against `cnnc params MODEL.cnn --json`, which lists the network's tensors in layer order with, per
layer, PyTorch's order (conv/fc: weight, bias; bn: weight, bias, running_mean, running_var;
layernorm: weight, bias; scale: weight). The .cnn file must therefore list its layers in the
module order of the PyTorch model; the examples for torchvision's models do.

--order position  the state dict's order as it is;
--order module    each module's own tensors after its children's. PyTorch saves a module's own
                  parameters before its submodules', so ConvNeXt's `layer_scale`, applied after
                  the block's layers, is stored before them; in module order it comes last;
--order auto      (default) position, and module order if position does not fit (said on stderr).

Auxiliary classifiers, which only training uses (torchvision's `aux1.`/`aux2.` in GoogLeNet,
`AuxLogits.` in Inception-v3), are left out with a note when the network has fewer tensors than
the state dict; `--keep-aux` keeps them.

Shapes must match, except that a torch tensor may carry or drop trailing 1s: a Linear's [O, I]
weight fits a 1x1 conv's [O, I, 1, 1] (ConvNeXt's per-pixel Linear layers), and a [C, 1, 1]
layer scale fits `scale`'s [C]. Any other mismatch fails with both names.

Needs: python3 -m pip install torch safetensors
"""
import argparse
import json
import os
import shutil
import subprocess
import sys


def cnnc_binary(explicit):
    if explicit:
        return explicit
    here = os.path.dirname(os.path.abspath(__file__))
    for build in ("release", "debug"):
        candidate = os.path.join(here, "..", "target", build, "cnnc")
        if os.path.exists(candidate):
            return candidate
    found = shutil.which("cnnc")
    if not found:
        sys.exit("error: cannot find the cnnc binary; build it (cargo build --release) or pass --cnnc")
    return found


def module_order(items):
    """The (name, tensor) pairs with each module's own tensors after its children's, children in
    the order they first appear."""
    root = {"own": [], "children": {}}
    for name, tensor in items:
        node = root
        for part in name.split(".")[:-1]:
            node = node["children"].setdefault(part, {"own": [], "children": {}})
        node["own"].append((name, tensor))
    out = []

    def emit(node):
        for child in node["children"].values():
            emit(child)
        out.extend(node["own"])

    emit(root)
    return out


def squeezed(shape):
    shape = list(shape)
    while shape and shape[-1] == 1:
        shape.pop()
    return shape


def fits(source_shape, target_shape):
    return list(source_shape) == list(target_shape) or squeezed(source_shape) == squeezed(target_shape)


def mismatch(source, target, state_dict, model):
    """The first pair that does not fit, as an error message, or None."""
    if len(source) != len(target):
        return (f"{state_dict} has {len(source)} tensors (without num_batches_tracked) "
                f"but {model} needs {len(target)}")
    for (sname, tensor), spec in zip(source, target):
        if not fits(tensor.shape, spec["shape"]):
            return (f"shape mismatch: {state_dict} `{sname}` is {list(tensor.shape)} "
                    f"but {model} `{spec['name']}` ({spec['kind']}) needs {spec['shape']}")
    return None


# Top-level modules of torchvision's training-only auxiliary classifiers.
AUX_HEADS = {"aux1", "aux2", "AuxLogits"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("state_dict")
    ap.add_argument("model")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--order", choices=["auto", "position", "module"], default="auto",
                    help="how state-dict tensors are matched to the network's (default: auto)")
    ap.add_argument("--cnnc", help="path to the cnnc binary (default: target/release/cnnc)")
    ap.add_argument("--keep-aux", action="store_true", help="do not leave out auxiliary classifiers")
    a = ap.parse_args()

    import torch
    from safetensors.torch import save_file

    state = torch.load(a.state_dict, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        sys.exit(f"error: {a.state_dict} holds a {type(state).__name__}, not a state dict")
    source = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]

    listed = subprocess.run([cnnc_binary(a.cnnc), "params", a.model, "--json"], capture_output=True, text=True)
    if listed.returncode != 0:
        sys.exit(f"error: cnnc params {a.model} failed:\n{listed.stderr}")
    target = json.loads(listed.stdout)
    aux = [k for k, _ in source if k.split(".", 1)[0] in AUX_HEADS]
    if aux and not a.keep_aux and len(source) - len(aux) == len(target):
        heads = sorted({k.split(".", 1)[0] for k in aux})
        print(f"note: left out the auxiliary classifier{'s' if len(heads) > 1 else ''} {', '.join(heads)} "
              f"({len(aux)} tensors): training only", file=sys.stderr)
        source = [(k, v) for k, v in source if k.split(".", 1)[0] not in AUX_HEADS]

    orders = {"position": [source], "module": [module_order(source)], "auto": [source, module_order(source)]}
    errors = []
    for k, candidate in enumerate(orders[a.order]):
        error = mismatch(candidate, target, a.state_dict, a.model)
        if error is None:
            if k > 0:
                print(f"note: {a.state_dict} does not fit {a.model} in its own order; converted in module order "
                      "(each module's own tensors after its children's)", file=sys.stderr)
            source = candidate
            break
        errors.append(error)
    else:
        sys.exit(f"error: {errors[0]}" + (f"\n(in module order: {errors[1]})" if len(errors) > 1 else ""))
    out = {}
    for (_, tensor), spec in zip(source, target):
        out[spec["name"]] = tensor.detach().to(torch.float32).reshape(spec["shape"]).contiguous()
    save_file(out, a.output, metadata={"source": os.path.basename(a.state_dict), "converter": "tools/torch2cnnc.py"})
    print(f"wrote {len(out)} tensors to {a.output}")


if __name__ == "__main__":
    main()
