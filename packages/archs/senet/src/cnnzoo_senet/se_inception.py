"""SE-BN-Inception: Hu et al., "Squeeze-and-Excitation Networks" (arXiv:1709.01507), §3.3 and
Fig. 2, on the BN-Inception of Ioffe and Szegedy 2015 (cnnzoo_inception).

Fig. 2, the SE-Inception module: the Inception module is the transformation F_tr, and an SE
block recalibrates its concatenated output, x~ = SE(Inception(x)). Every one of BN-Inception's
ten Inception modules (3a to 5b, the two grid-reducing modules 3c and 4e included) becomes an
SE-Inception module; the rest of the network is BN-Inception's.
"""

from __future__ import annotations

import torch
from cnnzoo import ModelCard, variant
from cnnzoo_inception.bn_inception import BN_EPS, MIN_INPUT_SIZE, BNInception
from cnnzoo_inception.layers import Branch, InceptionModule
from torch import nn

from cnnzoo_senet.layers import SqueezeExcitation
from cnnzoo_senet.se_resnet import AUTHORS, MACS_NOTE, PAPER, REDUCTION, URL, release, table_2


class SEInceptionModule(nn.Module):
    """Fig. 2: an Inception module followed by an SE block on its concatenated output."""

    def __init__(
        self, in_chans: int, branches: tuple[Branch, ...], reduction: int = REDUCTION
    ) -> None:
        super().__init__()
        self.inception = InceptionModule(in_chans, branches, BN_EPS)
        self.in_chans = in_chans
        self.out_chans = self.inception.out_chans
        self.se = SqueezeExcitation(self.out_chans, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se(self.inception(x))


class SEBNInception(BNInception):
    """BN-Inception with every Inception module an SE-Inception module (Fig. 2)."""

    def __init__(
        self, num_classes: int = 1000, in_chans: int = 3, reduction: int = REDUCTION
    ) -> None:
        super().__init__(
            num_classes,
            in_chans,
            module=lambda chans, branches: SEInceptionModule(chans, branches, reduction),
        )
        # SENet trains every network from scratch with He et al.'s initialisation (its
        # training details), where BN-Inception's own release uses Glorot's.
        for module in self.modules():
            if isinstance(module, nn.Conv2d) or (
                isinstance(module, nn.Linear) and module is not self.fc
            ):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)


@variant(
    ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=2018,
        url=URL,
        input_size=(3, 224, 224),
        num_classes=1000,
        published_params=11_931_622,
        params_source="our exact count (the paper prints none, and neither torchvision nor "
        "timm builds SE-BN-Inception)",
        published_macs=2_040_000_000,
        macs_source="Table 2: 2.04 GFLOPs (multiply-adds)",
        macs_tolerance=0.005,
        published_errors=(table_2(24.23, 7.14), release(23.62, 7.04)),
        recipe=None,
        min_input_size=MIN_INPUT_SIZE,
        notes="BN-Inception from cnnzoo_inception (its Figure 5 filter counts), an SE block "
        "(r = 16) after each of its ten Inception modules. " + MACS_NOTE,
    )
)
def se_bn_inception(
    num_classes: int = 1000, in_chans: int = 3, reduction: int = REDUCTION
) -> SEBNInception:
    """SE-BN-Inception (§3.3, Fig. 2, Table 2)."""
    return SEBNInception(num_classes, in_chans, reduction)
