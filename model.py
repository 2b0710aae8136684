"""The S8 network: C1 C2 c3 P1 C3 C4 C5 c6 P2 C7 C8 C9 GAP C10, with BN, GN or LN."""
import torch
import torch.nn as nn
import torch.nn.functional as F

NORMS = ("bn", "gn", "ln")


def make_norm(norm, channels, groups=4):
    """BatchNorm, GroupNorm(groups) or LayerNorm over (C, H, W) as GroupNorm(1)."""
    if norm == "bn":
        return nn.BatchNorm2d(channels)
    if norm == "gn":
        if channels % groups:
            raise ValueError(f"GroupNorm: {channels} channels are not divisible by groups={groups}")
        return nn.GroupNorm(groups, channels)
    if norm == "ln":
        # one group = statistics over (C, H, W) per sample, affine per channel, any input size
        return nn.GroupNorm(1, channels)
    raise ValueError(f"unknown norm {norm!r}: choose one of {', '.join(NORMS)}")


def conv3(cin, cout, norm, groups, act=True):
    """A C block: 3x3 conv -> norm (-> GELU). No conv bias: the norm's shift replaces it."""
    layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), make_norm(norm, cout, groups)]
    if act:
        layers.append(nn.GELU())
    return nn.Sequential(*layers)


def conv1(cin, cout, norm, groups, normed):
    """A c block: a 1x1 conv that changes the width between stages (-> norm -> GELU if normed)."""
    conv = nn.Conv2d(cin, cout, 1, bias=False)
    return nn.Sequential(conv, make_norm(norm, cout, groups), nn.GELU()) if normed else conv


class Net(nn.Module):
    """Three stages at 32x32, 16x16 and 8x8; each ends in a residual branch.

    The last C of each residual branch has no GELU of its own: the GELU comes after
    the addition, and its norm scale starts at zero so each branch starts as identity.
    norm_1x1 gives the 1x1 convs c3 and c6 a norm and GELU too (it helps BN, not GN or LN).
    """

    def __init__(self, norm="bn", groups=4, widths=(16, 24, 32), num_classes=10, norm_1x1=False):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}: choose one of {', '.join(NORMS)}")
        w1, w2, w3 = widths
        self.norm = norm
        # stage 1, 32x32
        self.C1 = conv3(3, w1, norm, groups)
        self.C2 = conv3(w1, w1, norm, groups, act=False)    # residual: C1 + C2(C1)
        self.c3 = conv1(w1, w2, norm, groups, norm_1x1)
        self.P1 = nn.MaxPool2d(2)
        # stage 2, 16x16
        self.C3 = conv3(w2, w2, norm, groups)
        self.C4 = conv3(w2, w2, norm, groups)
        self.C5 = conv3(w2, w2, norm, groups, act=False)    # residual: C3 + C5(C4(C3))
        self.c6 = conv1(w2, w3, norm, groups, norm_1x1)
        self.P2 = nn.MaxPool2d(2)
        # stage 3, 8x8
        self.C7 = conv3(w3, w3, norm, groups)
        self.C8 = conv3(w3, w3, norm, groups)
        self.C9 = conv3(w3, w3, norm, groups, act=False)    # residual: C7 + C9(C8(C7))
        self.GAP = nn.AdaptiveAvgPool2d(1)
        self.C10 = nn.Conv2d(w3, num_classes, 1)
        self._init()

    def _init(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        for block in (self.C2, self.C5, self.C9):
            nn.init.zeros_(block[1].weight)  # zero-init residual: the branch starts silent

    def forward(self, x):                    # x: (N, 3, H, W)
        x = self.C1(x)
        x = F.gelu(x + self.C2(x))           # (N, w1, H, W)
        x = self.P1(self.c3(x))              # (N, w2, H/2, W/2)
        x = self.C3(x)
        x = F.gelu(x + self.C5(self.C4(x)))
        x = self.P2(self.c6(x))              # (N, w3, H/4, W/4)
        x = self.C7(x)
        x = F.gelu(x + self.C9(self.C8(x)))
        x = self.C10(self.GAP(x))            # (N, 10, 1, 1)
        return x.flatten(1)                  # (N, 10) logits


def count_params(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


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
