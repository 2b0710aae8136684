"""The S8 network: C1 C2 c3 P1 C3 C4 C5 c6 P2 C7 C8 C9 GAP C10, with BN, GN or LN."""
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

NORMS = ("bn", "gn", "ln", "none")  # "none": no normalization at all (a study of what it buys)
BLOCKS = ("full", "separable")  # how a C block does its 3x3 conv


def settings(norm="bn", groups=4, widths=(16, 24, 32), num_classes=10, norm_1x1=False, block="full", residual=True):
    """Net's keyword arguments as one plain dict: what a model remembers (Net.config) and what checkpoints and
    results files record. groups is None for the norms that have no groups (BN, LN, none): they ignore it."""
    return {"norm": norm, "groups": groups if norm == "gn" else None, "widths": list(widths),
            "num_classes": num_classes, "norm_1x1": norm_1x1, "block": block, "residual": residual}


def make_norm(norm, channels, groups=4):
    """BatchNorm, GroupNorm(groups), LayerNorm over (C, H, W) as GroupNorm(1), or nothing (Identity)."""
    if norm == "bn":
        return nn.BatchNorm2d(channels)
    if norm == "gn":
        if channels % groups:
            raise ValueError(f"GroupNorm: {channels} channels are not divisible by groups={groups}")
        return nn.GroupNorm(groups, channels)
    if norm == "ln":
        # one group = statistics over (C, H, W) per sample, affine per channel, any input size
        return nn.GroupNorm(1, channels)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {norm!r}: choose one of {', '.join(NORMS)}")


def conv3(cin, cout, norm, groups, act=True, block="full"):
    """A C block: 3x3 conv -> norm (-> GELU). No conv bias: the norm's shift replaces it (norm="none": the
    bias comes back and the norm is an Identity).

    block="separable": the 3x3 conv is depthwise 3x3 + pointwise 1x1, about 9x fewer parameters, so the
    stages can be wider. A block on the 3 colour channels (C1) stays full: depthwise, it would see each
    colour alone. The two convs share one Sequential so that block[1] is always the norm."""
    bias = norm == "none"
    if block == "separable" and cin > 3:
        conv = nn.Sequential(nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),  # depthwise
                             nn.Conv2d(cin, cout, 1, bias=bias))                          # pointwise
    else:
        conv = nn.Conv2d(cin, cout, 3, padding=1, bias=bias)
    layers = [conv, make_norm(norm, cout, groups)]
    if act:
        layers.append(nn.GELU())
    return nn.Sequential(*layers)


def conv1(cin, cout, norm, groups, normed):
    """A c block: a 1x1 conv that changes the width between stages (-> norm -> GELU if normed)."""
    conv = nn.Conv2d(cin, cout, 1, bias=normed and norm == "none")  # a norm's shift, or the bias instead
    return nn.Sequential(conv, make_norm(norm, cout, groups), nn.GELU()) if normed else conv


class Net(nn.Module):
    """Three stages at 32x32, 16x16 and 8x8; each ends in a residual branch.

    The last C of each residual branch has no GELU of its own: the GELU comes after
    the addition, and its norm scale starts at zero so each branch starts as identity.
    norm_1x1 gives the 1x1 convs c3 and c6 a norm and GELU too (it helps BN, not GN or LN).
    block="separable" builds C2..C9 as depthwise + pointwise convs (see conv3).
    residual=False drops the three additions (each stage ends in gelu(branch(x))) and the zero start.
    norm="none" has no norm layers; the last conv of each residual branch then starts at zero instead.
    self.config: the keyword arguments it was built with (settings()), so Net(**net.config) builds it again.
    """

    def __init__(self, norm="bn", groups=4, widths=(16, 24, 32), num_classes=10, norm_1x1=False, block="full",
                 residual=True):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}: choose one of {', '.join(NORMS)}")
        if block not in BLOCKS:
            raise ValueError(f"unknown block {block!r}: choose one of {', '.join(BLOCKS)}")
        if len(widths) != 3:
            raise ValueError(f"widths {widths!r}: give three channel counts, one per stage, e.g. (16, 24, 32)")
        w1, w2, w3 = widths
        self.config = settings(norm, groups, widths, num_classes, norm_1x1, block, residual)
        self.norm, self.residual = norm, residual
        c = partial(conv3, norm=norm, groups=groups, block=block)  # a C block: c(cin, cout[, act])
        # stage 1, 32x32
        self.C1 = c(3, w1)
        self.C2 = c(w1, w1, act=False)    # residual: C1 + C2(C1)
        self.c3 = conv1(w1, w2, norm, groups, norm_1x1)
        self.P1 = nn.MaxPool2d(2)
        # stage 2, 16x16
        self.C3 = c(w2, w2)
        self.C4 = c(w2, w2)
        self.C5 = c(w2, w2, act=False)    # residual: C3 + C5(C4(C3))
        self.c6 = conv1(w2, w3, norm, groups, norm_1x1)
        self.P2 = nn.MaxPool2d(2)
        # stage 3, 8x8
        self.C7 = c(w3, w3)
        self.C8 = c(w3, w3)
        self.C9 = c(w3, w3, act=False)    # residual: C7 + C9(C8(C7))
        self.GAP = nn.AdaptiveAvgPool2d(1)
        self.C10 = nn.Conv2d(w3, num_classes, 1)
        self._init()

    def _init(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if not self.residual:
            return  # without the additions a zero start would silence the whole network
        for block in (self.C2, self.C5, self.C9):  # each branch starts silent: the stage starts as its input
            if self.norm == "none":  # no norm scale to zero: zero the branch's last conv instead, as Fixup does
                conv = [m for m in block[0].modules() if isinstance(m, nn.Conv2d)][-1]
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
            else:
                nn.init.zeros_(block[1].weight)

    def end_stage(self, x, branch):
        """The end of a stage: gelu(x + branch), or gelu(branch) without the residual additions."""
        return F.gelu(x + branch if self.residual else branch)

    def forward(self, x):                           # x: (N, 3, H, W)
        x = self.C1(x)
        x = self.end_stage(x, self.C2(x))           # (N, w1, H, W)
        x = self.P1(self.c3(x))                     # (N, w2, H/2, W/2)
        x = self.C3(x)
        x = self.end_stage(x, self.C5(self.C4(x)))
        x = self.P2(self.c6(x))                     # (N, w3, H/4, W/4)
        x = self.C7(x)
        x = self.end_stage(x, self.C9(self.C8(x)))
        x = self.C10(self.GAP(x))                   # (N, 10, 1, 1)
        return x.flatten(1)                         # (N, 10) logits


def count_params(model):
    """All parameters, trainable or frozen: the assignment's budget is the model's size."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def whiten_(conv, x, eps=5e-4):
    """Data-dependent init: conv's filters become the top principal directions of x's patches, each
    scaled to unit output variance, in +/- pairs (so a GELU after it passes either sign). x: (N, C, H, W)."""
    k = conv.kernel_size[0]
    patches = F.unfold(x.float(), k).transpose(1, 2).flatten(0, 1).double()  # (N*L, C*k*k)
    evals, evecs = torch.linalg.eigh(torch.cov(patches.T))                    # ascending
    n = conv.out_channels // 2
    top = evecs[:, -n:].flip(1) / (evals[-n:].flip(0) + eps).sqrt()            # (C*k*k, n)
    w = torch.cat([top, -top], 1).T.reshape(2 * n, -1, k, k)
    conv.weight.zero_()[:2 * n] = w.to(conv.weight)
