"""CapsNet: Sabour, Frosst and Hinton, "Dynamic Routing Between Capsules", NIPS 2017, §4 and
Figs. 1-2.

    input 28x28 -> Conv1: 256@20x20 (9x9, stride 1, ReLU)
    -> PrimaryCaps: 32 channels of 8D capsules on a 6x6 grid (9x9, stride 2), 1152 capsules
    -> DigitCaps: 10 capsules of 16D, routed from PrimaryCaps by agreement (3 iterations)
    class scores: the digit capsules' lengths

    Decoder (Fig. 2), for the reconstruction loss: the DigitCaps poses with all but one
    capsule masked out -> FC 512 ReLU -> FC 1024 ReLU -> FC 784 sigmoid

6.8M parameters without the decoder, 8.2M with it (§5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from cnnzoo import ClassifierNet, FeatureInfo, ModelCard, PublishedError, variant
from torch import nn

from cnnzoo_capsnet.capsules import DigitCaps, PrimaryCaps, margin_loss

PAPER = "Dynamic Routing Between Capsules"
AUTHORS = "S. Sabour, N. Frosst, G. E. Hinton"
URL = "https://arxiv.org/abs/1710.09829"

IMAGE_SIZE = 28
# §4.1: "We scale down this reconstruction loss by 0.0005 so that it does not dominate the
# margin loss during training."
RECONSTRUCTION_WEIGHT = 0.0005


class Decoder(nn.Module):
    """Fig. 2: three fully connected layers from the masked DigitCaps poses to the image's
    pixel intensities."""

    def __init__(self, capsules: int, dims: int, pixels: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(capsules * dims, 512),
            nn.ReLU(inplace=True),
            nn.Linear(512, 1024),
            nn.ReLU(inplace=True),
            nn.Linear(1024, pixels),
            nn.Sigmoid(),
        )

    def forward(self, poses: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Reconstruct from the capsule `keep` (one class index per image) of each image's
        poses (batch, capsules, dims), the others masked out (§4.1)."""
        mask = F.one_hot(keep, poses.shape[1]).to(poses.dtype).unsqueeze(-1)
        return self.layers((poses * mask).flatten(1))


class CapsNet(ClassifierNet):
    """The three-layer capsule network of §4 and its reconstruction decoder.

    `forward` gives the digit capsules' lengths, the class scores the error is read from;
    while the model trains, the lengths carry the DigitCaps poses and the input
    (`lengths.poses`, `lengths.images`) for `criterion`, whose reconstruction term needs
    both. Inputs are pixel intensities in [0, 1], the decoder's targets (the `capsnet`
    augmentation normalises nothing).
    """

    classifier_name = "digit_caps"
    num_features = 256  # PrimaryCaps' 32 x 8 maps
    head_hidden_size = 1152 * 8  # the primary capsules' poses that DigitCaps takes

    def __init__(self, num_classes: int = 10, in_chans: int = 1, iterations: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.iterations = iterations
        self.feature_info = [
            FeatureInfo("conv1", 256, 1),
            FeatureInfo("primary_caps.conv", 256, 2),
        ]
        self.conv1 = nn.Sequential(nn.Conv2d(in_chans, 256, kernel_size=9), nn.ReLU(inplace=True))
        self.primary_caps = PrimaryCaps(256, channels=32, dims=8)
        self.digit_caps = self.new_classifier(num_classes)
        self.decoder = Decoder(num_classes, 16, in_chans * IMAGE_SIZE * IMAGE_SIZE)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """PrimaryCaps' convolution maps, (batch, 256, 6, 6), before they become capsules."""
        return self.primary_caps.conv(self.conv1(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        u = self.primary_caps.capsules(x)
        if pre_logits or self.num_classes == 0:
            return u.flatten(1)
        return self.digit_caps(u).norm(dim=-1)

    def capsules(self, x: torch.Tensor) -> torch.Tensor:
        """The DigitCaps poses v_j of a batch, (batch, classes, 16)."""
        self.check_input(x)
        return self.digit_caps(self.primary_caps.capsules(self.forward_features(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_classes == 0:  # no DigitCaps: the primary capsules' poses
            return super().forward(x)
        poses = self.capsules(x)
        lengths = poses.norm(dim=-1)
        if self.training:
            lengths.poses, lengths.images = poses, x
        return lengths

    def reconstruct(self, poses: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Images (batch, C, 28, 28) from DigitCaps poses, through the capsule `keep` of each
        (default: the longest, the predicted class, as at test time in §4.1)."""
        keep = poses.norm(dim=-1).argmax(dim=1) if keep is None else keep
        pixels = self.decoder(poses, keep)
        return pixels.view(-1, self.in_chans, IMAGE_SIZE, IMAGE_SIZE)

    def criterion(
        self, logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0
    ) -> torch.Tensor:
        """The margin loss (eq. 4) plus 0.0005 x the reconstruction's sum of squared pixel
        differences, from the true class's capsule (§4.1), averaged over the batch.
        Evaluation scores carry no poses and are judged by the margin loss alone."""
        if label_smoothing:
            raise ValueError("CapsNet trains with the margin loss (eq. 4): set label_smoothing 0.")
        loss = margin_loss(logits, target)
        poses = getattr(logits, "poses", None)
        if poses is None and self.training:
            raise RuntimeError(
                "CapsNet's training loss needs the poses that its forward attaches to the "
                "class scores, and these scores carry none (torch.compile returns new "
                "tensors): train CapsNet without --model.compile."
            )
        if poses is None:
            return loss
        reconstruction = self.reconstruct(poses, target)
        squared = (reconstruction - logits.images).pow(2).flatten(1).sum(dim=1)
        return loss + RECONSTRUCTION_WEIGHT * squared.mean()

    def new_classifier(self, num_classes: int) -> nn.Module:
        return DigitCaps(1152, 8, num_classes, 16, self.iterations)

    def _set_classifier(self, num_classes: int) -> None:
        # The decoder reads every digit capsule: a new set of classes needs a new decoder.
        super()._set_classifier(num_classes)
        device = next(self.parameters()).device
        pixels = self.in_chans * IMAGE_SIZE * IMAGE_SIZE
        self.decoder = Decoder(num_classes, 16, pixels).to(device) if num_classes else None


@variant(
    ModelCard(
        paper=PAPER,
        authors=AUTHORS,
        year=2017,
        url=URL,
        input_size=(1, 28, 28),
        num_classes=10,
        published_params=8_200_000,
        params_source="§5: 8.2M parameters, 6.8M without the reconstruction subnetwork "
        "(ours: Conv1 20,992, PrimaryCaps 5,308,672, DigitCaps 1,474,560, decoder 1,411,344)",
        published_errors=(
            PublishedError(
                "MNIST",
                top1=0.25,
                evaluation="single view, 28x28",
                source="Table 1: CapsNet, 3 routing iterations, with reconstruction (0.25 ± 0.005)",
            ),
        ),
        recipe="capsnet_mnist",
        fixed_input_size=True,
        notes="Trained with the paper's margin loss and 0.0005 x reconstruction loss "
        "(`criterion`) on pixel intensities in [0, 1], digits shifted by up to 2 pixels. "
        "The paper states no initialisation of W_ij (here a normal of std 0.01) and no "
        "decay rate for Adam's exponentially decaying rate (the recipe's is a choice).",
    )
)
def capsnet(num_classes: int = 10, in_chans: int = 1) -> CapsNet:
    """CapsNet of Sabour et al. 2017 (§4): Conv1, PrimaryCaps, DigitCaps with 3 routing
    iterations, and the reconstruction decoder; 8.2M parameters."""
    return CapsNet(num_classes=num_classes, in_chans=in_chans)
