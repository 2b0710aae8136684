import pytest
import torch
import torch.nn.functional as F

import report


def normalize(x, mean, var, norm, groups=2, eps=1e-5):
    """Apply (mean, var) from norm_stats to x, broadcasting them back to (N, C, H, W)."""
    n, c, h, w = x.shape
    if norm == "bn":
        return (x - mean.view(1, c, 1, 1)) / (var.view(1, c, 1, 1) + eps).sqrt()
    if norm == "ln":
        return (x - mean.view(n, 1, 1, 1)) / (var.view(n, 1, 1, 1) + eps).sqrt()
    xg = x.view(n, groups, c // groups, h, w)
    return ((xg - mean.view(n, groups, 1, 1, 1)) / (var.view(n, groups, 1, 1, 1) + eps).sqrt()).view_as(x)


@pytest.fixture
def x():
    return torch.randn(5, 6, 7, 3, generator=torch.Generator().manual_seed(0)) * 3 + 1


def test_shapes(x):
    for norm, shape in (("bn", (6,)), ("ln", (5,)), ("gn", (5, 3))):
        mean, var = report.norm_stats(x, norm, groups=3)
        assert mean.shape == shape and var.shape == shape


def test_matches_batch_norm_in_training_mode(x):
    mean, var = report.norm_stats(x, "bn")
    ref = F.batch_norm(x, None, None, training=True, eps=1e-5)
    assert torch.allclose(normalize(x, mean, var, "bn"), ref, atol=1e-5)


def test_matches_layer_norm_over_chw(x):
    mean, var = report.norm_stats(x, "ln")
    ref = F.layer_norm(x, x.shape[1:], eps=1e-5)
    assert torch.allclose(normalize(x, mean, var, "ln"), ref, atol=1e-5)


@pytest.mark.parametrize("groups", [1, 2, 3, 6])
def test_matches_group_norm(x, groups):
    mean, var = report.norm_stats(x, "gn", groups)
    ref = F.group_norm(x, groups, eps=1e-5)
    assert torch.allclose(normalize(x, mean, var, "gn", groups), ref, atol=1e-5)


def test_variance_is_the_biased_one():
    x = torch.tensor([1.0, 3.0]).view(1, 1, 1, 2)
    assert report.norm_stats(x, "ln")[1].item() == 1.0  # unbiased would give 2.0


def test_worked_example_by_hand():
    x = report.norm_example()
    mean, var = report.norm_stats(x, "bn")
    ch0 = x[:, 0].float().flatten()  # 1 2 3 4 | 2 2 2 2 | 3 5 1 7
    assert mean[0].item() == pytest.approx(34 / 12)
    assert var[0].item() == pytest.approx(((ch0 - 34 / 12) ** 2).mean().item())
    assert report.norm_stats(x, "ln")[0].tolist() == pytest.approx([2.25, 2.75, 3.25])
    assert report.norm_stats(x, "gn", 2)[0][0].tolist() == pytest.approx([1.5, 3.0])


def test_errors():
    with pytest.raises(ValueError, match="unknown norm"):
        report.norm_stats(torch.zeros(2, 4, 2, 2), "in")
    with pytest.raises(ValueError, match="4-D"):
        report.norm_stats(torch.zeros(4, 2, 2), "bn")
    with pytest.raises(ValueError, match="not divisible"):
        report.norm_stats(torch.zeros(2, 4, 2, 2), "gn", groups=3)


def test_norm_sets_match_the_statistics():
    sets = report.norm_sets(3, 4, "gn", 2)
    assert sets.tolist() == [[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5]]
    assert report.norm_sets(3, 4, "bn").unique().numel() == 4
    assert report.norm_sets(3, 4, "ln").unique().numel() == 3


def test_tables_and_figure(tmp_path):
    text = report.norm_tables(report.norm_example())
    assert "| mean | 2.833 | 2.833 | 1.667 | 3.667 |" in text and "| image 0 | 1.500 | 1.750 |" in text
    report.plot_norm_sets(report.norm_example(), tmp_path)
    assert (tmp_path / "norm_axes.png").stat().st_size > 10_000
