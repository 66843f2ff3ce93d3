"""torchvision classifiers with random weights, as tools/torchvision-zoo and tools/bench-zoo use them.

`architectures()` lists every classifier `torchvision.models.list_models(module=torchvision.models)`
gives, smallest first by parameter count (from torchvision's weight metadata, nothing
downloaded); `build(arch, size)` makes one with seeded random weights that keep its outputs
varied; `export_ts` writes it with the TorchScript exporter. torch and torchvision are
imported inside the functions, so a script can import this module before it has re-executed
itself in the torch zoo venv (tools/zoovenv.py).
"""


def size_of(arch):
    """Input height and width: 299 for inception_v3, 224 for every other (ViT, MaxViT and
    Swin at their built size)."""
    return 299 if arch == "inception_v3" else 224


def parameters(arch):
    """The parameter count torchvision's weight metadata gives for `arch`."""
    import torchvision

    return list(torchvision.models.get_model_weights(arch))[0].meta["num_params"]


def architectures():
    """Every classifier torchvision lists, smallest first."""
    import torchvision

    names = torchvision.models.list_models(module=torchvision.models)
    return sorted(names, key=lambda n: (parameters(n), n))


def sample_batch(n, size):
    """Smooth seeded images with per-image offset and contrast (white noise pools to nearly
    the same features for every image)."""
    import numpy as np
    import torch

    rng = np.random.default_rng(15)
    coarse = torch.from_numpy(rng.standard_normal((n, 3, 8, 8)).astype(np.float32))
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False).numpy()
    offset = rng.uniform(-1, 1, (n, 3, 1, 1))
    contrast = rng.uniform(0.5, 2, (n, 1, 1, 1))
    pixels = rng.standard_normal((n, 3, size, size)) * 0.1
    return (smooth * contrast + offset + pixels).astype(np.float32)


def build(arch, size):
    """`arch` with random weights (torch.manual_seed(0)), in eval mode: every batch norm gets
    non-default running statistics and affine parameters, all-zero weight matrices (ViT's
    head) get small random values, and each convolution and linear layer is scaled to unit
    output variance on the sample batch (random deep nets otherwise fade to near-constant
    outputs). googlenet and inception_v3 are built without their auxiliary classifiers."""
    import torch
    import torchvision

    torch.manual_seed(0)
    kwargs = {"weights": None}
    if arch in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, init_weights=True)
    model = torchvision.models.get_model(arch, **kwargs)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
                    m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
        for p in model.parameters():
            if p.dim() >= 2 and not p.detach().any():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    model.eval()
    hooks = []

    def unit_variance(module, inputs, output):
        std = float(output.std())
        if std > 0:
            module.weight.data /= std
            if module.bias is not None:
                module.bias.data /= std
            return output / std
        return output

    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            hooks.append(m.register_forward_hook(unit_variance))
    with torch.no_grad():
        model(torch.from_numpy(sample_batch(2, size)))
    for h in hooks:
        h.remove()
    return model


def export_ts(model, size, path):
    """The TorchScript exporter (dynamo=False) at opset 17, traced at batch 1 with a dynamic
    batch axis; input `input`, output `logits`. A model over 2 GB gets its tensors as separate
    files beside `path`, so give each export a folder of its own."""
    import torch

    x = torch.from_numpy(sample_batch(2, size)[:1].copy())
    torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})


def first_line(text):
    """The line of a failure's output that names it: a Python traceback's exception, or
    Braid's one error line; at most 300 characters."""
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith(("RuntimeError", "ValueError", "torch.", "onnxruntime", "Error", "error", "Exception")) \
                or "Error:" in ln or ln.startswith("error:"):
            return ln[:300]
    return (lines[-1] if lines else "(no message)")[:300]


def out_of_memory(text):
    """True when a failure's message reads as running out of memory."""
    return any(k in text for k in ("bad_alloc", "MemoryError", "DefaultCPUAllocator", "out of memory"))

