"""Helpers of the torchvision-weights tests (test_weights.py, test_weights_torchvision.py):
torchvision models built with ``weights=None`` (nothing downloads) whose batch-norm statistics
and affine parameters are randomised (at their initial zeros and ones a wrong mapping of them
would still pass), probes, logits on both sides, and the two file formats.
"""

import numpy as np

import torch_peer

HW = 64  # small inputs: the geometry is the same at 224


def randomise_bn(tv_model, seed=0):
    torch = torch_peer.torch()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in tv_model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
                module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(n, generator=gen) * 0.2)
                module.num_batches_tracked.fill_(7)
    return tv_model.eval()


def torchvision_model(name, num_classes=1000, seed=0, **kwargs):
    torch = torch_peer.torch()
    torch.manual_seed(seed)
    tv = torch_peer.torchvision()
    model = getattr(tv.models, name)(weights=None, num_classes=num_classes, **kwargs)
    # He-normal weights keep the signal's scale through the depth, as in a trained network: at
    # torchvision's GoogLeNet initialisation (std 0.01) the features die out and every image
    # gives the same logits, which any mapping of the weights reproduces
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):  # (Linear layers do not shrink it)
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen)
                                    * (2.0 / fan_in) ** 0.5)
    return randomise_bn(model, seed)


def probe(seed=1, hw=HW):
    return np.random.default_rng(seed).standard_normal((2, 3, hw, hw)).astype(np.float32)


def torch_logits(tv_model, x):
    torch = torch_peer.torch()
    with torch.no_grad():
        return tv_model(torch.from_numpy(x)).numpy()


def our_logits(model, x):
    return np.asarray(model(np.transpose(x, (0, 2, 3, 1)), training=False))


def assert_same_logits(ours, theirs):
    scale = float(np.max(np.abs(theirs)))
    assert scale > 0
    # the logits must depend on the image: with dead features (e.g. GoogLeNet at torchvision's
    # initial statistics) every image gives the classifier's bias and any mapping would pass
    spread = float(np.max(np.abs(theirs - theirs[:1])))
    assert spread > 1e-3 * scale, ("degenerate probe: the same logits for every image", spread)
    diff = float(np.max(np.abs(ours - theirs)))
    assert diff <= 1e-4 * scale, (diff, scale)
    np.testing.assert_array_equal(ours.argmax(-1), theirs.argmax(-1))


def save_pth(tv_model, path):
    torch_peer.torch().save(tv_model.state_dict(), path)
    return path


def save_safetensors(tv_model, path):
    from safetensors.numpy import save_file

    save_file(state_numpy(tv_model), path)
    return path


def state_numpy(tv_model):
    return {k: v.detach().numpy().copy() for k, v in tv_model.state_dict().items()}


def trainable_count(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)
