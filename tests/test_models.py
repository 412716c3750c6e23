"""Contract tests over every registered model (STYLE item 10)."""

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from workbench.compress import StructuredPrune, prune
from workbench.models import create_model, list_models, module_structure, restore_structure
from workbench.models.vit import Attention

DIGITS, MNIST, CIFAR = (1, 8), (1, 28), (3, 32)  # (channels, image size)


pytestmark = pytest.mark.usefixtures("one_thread")


def build(name, shape=DIGITS, seed=0, **knobs):
    torch.manual_seed(seed)
    return create_model(name, num_classes=10, in_channels=shape[0], image_size=shape[1], **knobs)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def flops(model, shape=DIGITS):
    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, shape[0], shape[1], shape[1]))
    return counter.get_total_flops()


@pytest.mark.parametrize("shape", [DIGITS, CIFAR], ids=["digits", "cifar"])
@pytest.mark.parametrize("name", list_models("images"))
def test_forward_backward(name, shape):
    model = build(name, shape)
    out = model(torch.randn(2, shape[0], shape[1], shape[1]))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
    out.logsumexp(dim=1).mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@torch.no_grad()
@pytest.mark.parametrize("name", list_models("images"))
def test_downsampling_fits_the_image(name):
    for shape in (DIGITS, MNIST, CIFAR):
        model, seen = build(name, shape).eval(), []
        for m in model.modules():
            if isinstance(m, nn.AdaptiveAvgPool2d):
                m.register_forward_hook(lambda module, inputs, output, *, seen=seen: seen.append(inputs[0].shape[-1]))
        assert model(torch.zeros(1, shape[0], shape[1], shape[1])).shape == (1, 10)
        # The CIFAR strides would take 8x8 digits to 1x1; the last feature map stays at least 4x4.
        assert all(size >= 4 for size in seen)


@pytest.mark.parametrize("name", list_models("images"))
def test_width_and_depth_change_size_and_flops(name):
    assert n_params(build(name, depth=1, width=0.5)) < n_params(build(name, depth=1))
    shallow, deep = build(name, depth=1), build(name, depth=2)
    assert n_params(shallow) < n_params(deep)
    assert flops(shallow) < flops(deep)


@pytest.mark.parametrize("name", list_models("images"))
def test_batchnorm_off_and_dropout(name):
    model = build(name, batchnorm=False, dropout=0.5)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))
    assert any(isinstance(m, nn.Dropout) and m.p == 0.5 for m in model.modules())
    x = torch.randn(2, 1, 8, 8)
    assert torch.isfinite(model(x)).all()
    assert not torch.equal(model(x), model(x))  # train mode: dropout is live
    model.eval()
    assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("name", list_models("images"))
def test_init_is_deterministic_under_a_seed(name):
    a, b, c = (build(name, seed=seed, depth=1) for seed in (1, 1, 2))
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    assert not all(torch.equal(a.state_dict()[k], v) for k, v in c.state_dict().items())


def test_cifar_resnets_match_the_paper():
    # He et al. 2016, Table 6: ResNet-20 0.27M, ResNet-56 0.85M parameters.
    assert 0.26e6 <= n_params(build("resnet20", CIFAR)) <= 0.28e6
    assert 0.84e6 <= n_params(build("resnet56", CIFAR)) <= 0.87e6
    assert n_params(build("resnet20", CIFAR, depth=9)) == n_params(build("resnet56", CIFAR))
    assert 11.1e6 <= n_params(build("resnet18", CIFAR)) <= 11.2e6


def test_unknown_name_lists_choices_and_closest_match():
    with pytest.raises(ValueError, match=r"Unknown model 'resnet21'\. Did you mean 'resnet20'\?") as err:
        create_model("resnet21", num_classes=10, in_channels=3, image_size=32)
    assert all(name in str(err.value) for name in list_models())


def test_bad_knobs_say_what_is_allowed():
    with pytest.raises(ValueError, match="width must be > 0"):
        build("mlp", width=0)
    with pytest.raises(ValueError, match="depth must be >= 1"):
        build("mlp", depth=0)


@pytest.mark.parametrize("name", list_models("images"))
def test_structured_pruning_keeps_the_model_working(name):
    """Every family survives halving its channels through the package's own verb (residual adds,
    depthwise convs and the ViT's attention heads included), and rebuilds from its saved structure."""
    model = build(name, CIFAR, depth=2).eval()  # two blocks per stage: identity and projection shortcuts
    x = torch.randn(2, 3, 32, 32)
    before = n_params(model)
    model = prune(model, StructuredPrune(amount=0.5), example_inputs=x)
    assert n_params(model) < 0.75 * before
    assert model(x).shape == (2, 10)
    heads = [m.num_heads for m in model.modules() if isinstance(m, Attention)]
    assert heads == [m.num_heads for m in build(name, CIFAR, depth=2).modules() if isinstance(m, Attention)]
    rebuilt = restore_structure(build(name, CIFAR, depth=2), module_structure(model), model.state_dict()).eval()
    assert torch.equal(rebuilt(x), model(x))
