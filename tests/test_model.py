import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from model import NORMS, Net, count_params, whiten_

HEADLINE = NORMS[:3]  # bn, gn, ln: the assignment's three models ("none" is a study's)
SPEC = ["C1", "C2", "c3", "P1", "C3", "C4", "C5", "c6", "P2", "C7", "C8", "C9", "GAP", "C10"]


def call_order(model, x):
    """Names of the top-level layers in the order forward() really calls them."""
    order = []
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: order.append(n)) for n, m in model.named_children()]
    model(x)
    for h in hooks:
        h.remove()
    return order


@pytest.mark.parametrize("norm", NORMS)
def test_layers_run_in_the_assignment_order(norm):
    model = Net(norm).eval()
    assert [n for n, _ in model.named_children()] == SPEC
    assert call_order(model, torch.randn(2, 3, 32, 32)) == SPEC


@pytest.mark.parametrize("norm", NORMS)
def test_kernel_sizes_and_layer_kinds(norm):
    model = Net(norm)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 11
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    for name, layer in model.named_children():
        if name.startswith("C") and name != "C10":
            assert layer[0].kernel_size == (3, 3), name
        elif name.startswith("c") or name == "C10":
            assert isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1), name
    assert isinstance(model.P1, nn.MaxPool2d) and isinstance(model.P2, nn.MaxPool2d)
    assert model.C10.out_channels == 10


@pytest.mark.parametrize("norm_1x1", (False, True))
@pytest.mark.parametrize("norm", HEADLINE)
def test_parameter_budget(norm, norm_1x1):
    n = count_params(Net(norm, norm_1x1=norm_1x1))
    assert 40_000 < n < 50_000
    assert n == count_params(Net("bn", norm_1x1=norm_1x1))  # same affine size for every norm


@pytest.mark.parametrize("norm", HEADLINE)
def test_norm_1x1_gives_the_1x1_convs_a_norm_and_gelu(norm):
    plain, normed = Net(norm), Net(norm, norm_1x1=True)
    assert isinstance(plain.c3, nn.Conv2d) and isinstance(plain.c6, nn.Conv2d)
    for c, width in ((normed.c3, 24), (normed.c6, 32)):
        assert [type(m) for m in c] == [nn.Conv2d, type(normed.C1[1]), nn.GELU]
        assert c[0].out_channels == width and c[1].weight.numel() == width
    assert count_params(normed) - count_params(plain) == 2 * (24 + 32)  # one scale and shift per channel
    assert normed(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_norm_layers_per_variant():
    kinds = {norm: {type(m) for m in Net(norm).modules()} for norm in NORMS}
    assert nn.BatchNorm2d in kinds["bn"] and nn.GroupNorm not in kinds["bn"]
    for norm in ("gn", "ln"):
        assert nn.BatchNorm2d not in kinds[norm] and nn.GroupNorm in kinds[norm]
        assert nn.LayerNorm not in kinds[norm]
    assert {m.num_groups for m in Net("ln").modules() if isinstance(m, nn.GroupNorm)} == {1}
    assert {m.num_groups for m in Net("gn", groups=8).modules() if isinstance(m, nn.GroupNorm)} == {8}


def test_ln_normalizes_each_sample_over_chw():
    norm = Net("ln").C1[1]
    x = torch.randn(3, 16, 5, 7) * 4 + 2
    y = norm(x)  # fresh affine: scale 1, shift 0
    assert torch.allclose(y.mean(dim=(1, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.var(dim=(1, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("size", [32, 48, 64])
def test_eval_batch_of_one_any_size(norm, size):
    model = Net(norm).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, size, size))
    assert out.shape == (1, 10) and torch.isfinite(out).all()


def test_unknown_norm_names_the_choices():
    with pytest.raises(ValueError, match="bn, gn, ln, none"):
        Net("instance")


def test_groups_must_divide_the_channels():
    with pytest.raises(ValueError, match="divisible"):
        Net("gn", groups=5)


@pytest.mark.parametrize("norm", NORMS)
def test_only_the_last_c_of_each_branch_leaves_its_gelu_to_after_the_addition(norm):
    model = Net(norm)
    for name in ("C1", "C3", "C4", "C7", "C8"):
        assert isinstance(getattr(model, name)[-1], nn.GELU), name
    for name in ("C2", "C5", "C9"):  # gelu(x + branch): the branch itself ends in its norm
        assert not any(isinstance(m, nn.GELU) for m in getattr(model, name).modules()), name


def test_residual_branches_start_silent():
    model = Net("bn")
    for block in (model.C2, model.C5, model.C9):
        assert block[1].weight.abs().sum() == 0


def test_whiten_gives_unit_variance_uncorrelated_features_in_sign_pairs():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 3, 10, 10, generator=gen)
    x = x + x.roll(1, dims=3) + 0.5 * x[:, [1, 2, 0]]  # neighbouring pixels and channels correlate
    conv = nn.Conv2d(3, 9, 3, bias=False)
    whiten_(conv, x, eps=0)
    out = F.conv2d(x, conv.weight)                      # the patches whiten_ measured (no padding)
    feats = out[:, :4].permute(1, 0, 2, 3).flatten(1)   # (4, N*8*8)
    assert torch.allclose(torch.cov(feats), torch.eye(4), atol=1e-4)
    assert torch.allclose(out[:, 4:8], -out[:, :4])
    assert conv.weight[8].abs().sum() == 0              # an odd filter out is left at zero
    patches = F.unfold(x, 3).transpose(1, 2).flatten(0, 1).double()
    top = torch.linalg.eigvalsh(torch.cov(patches.T))[-4:].flip(0)
    direction = conv.weight[:4].flatten(1).double()
    direction = direction / direction.norm(dim=1, keepdim=True)
    spread = torch.einsum("kd,de,ke->k", direction, torch.cov(patches.T), direction)
    assert torch.allclose(spread, top)                  # the 4 directions of largest variance, largest first


SEPARABLE = dict(widths=(32, 48, 96), block="separable")  # the widths the separable runs use


@pytest.mark.parametrize("norm", HEADLINE)
def test_separable_blocks_keep_the_layout_and_budget(norm):
    model = Net(norm, **SEPARABLE).eval()
    assert call_order(model, torch.randn(2, 3, 32, 32)) == SPEC
    assert isinstance(model.C1[0], nn.Conv2d) and model.C1[0].kernel_size == (3, 3)  # colours stay mixed
    for name in ("C2", "C3", "C4", "C5", "C7", "C8", "C9"):
        depthwise, pointwise = getattr(model, name)[0]
        assert depthwise.kernel_size == (3, 3) and depthwise.groups == depthwise.in_channels, name
        assert pointwise.kernel_size == (1, 1) and pointwise.groups == 1, name
    for block in (model.C2, model.C5, model.C9):
        assert isinstance(block[1], (nn.BatchNorm2d, nn.GroupNorm)) and block[1].weight.abs().sum() == 0
    for norm_1x1 in (False, True):
        assert 45_000 < count_params(Net(norm, norm_1x1=norm_1x1, **SEPARABLE)) < 50_000


def test_separable_conv_is_a_full_conv_with_rank_one_filters():
    """Depthwise then pointwise = one 3x3 conv whose weight is pointwise[o, i] * depthwise[i]."""
    depthwise, pointwise = Net("bn", **SEPARABLE).C3[0]
    x = torch.randn(2, depthwise.in_channels, 8, 8)
    full = pointwise.weight[:, :, 0, 0, None, None] * depthwise.weight[:, 0]  # (out, in, 3, 3)
    with torch.no_grad():
        assert torch.allclose(pointwise(depthwise(x)), F.conv2d(x, full, padding=1), atol=1e-5)


def test_bad_block_or_widths_name_the_fix():
    with pytest.raises(ValueError, match="full, separable"):
        Net("bn", block="depthwise")
    with pytest.raises(ValueError, match="three channel counts"):
        Net("bn", widths=(16, 32))
