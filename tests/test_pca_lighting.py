"""AlexNet's PCA colour augmentation (§4.1): the fit on real photos and the noise it adds."""

from __future__ import annotations

import pytest
import torch
from cnnzoo_data.pca_lighting import IMAGENET_PCA, PCALighting, fit_pca_lighting
from torchvision import tv_tensors
from torchvision.transforms import v2

skimage_data = pytest.importorskip("skimage.data")

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


@pytest.fixture(scope="module")
def photos() -> list[torch.Tensor]:
    """Colour photographs shipped with scikit-image, as float CHW tensors in [0, 1]."""
    return [
        torch.from_numpy(getattr(skimage_data, name)()).permute(2, 0, 1).float() / 255
        for name in PHOTOS
    ]


@pytest.fixture(scope="module")
def fitted(photos) -> PCALighting:
    return fit_pca_lighting(photos, max_pixels_per_image=None, progress=False)


def test_fit_is_an_eigendecomposition_of_the_pixel_covariance(photos, fitted):
    eigenvalues = fitted.eigenvalues.double()
    eigenvectors = fitted.eigenvectors.double()
    torch.testing.assert_close(eigenvectors.T @ eigenvectors, torch.eye(3, dtype=torch.float64))
    assert torch.all(eigenvalues > 0)
    assert torch.all(eigenvalues[:-1] >= eigenvalues[1:])
    pixels = torch.cat([photo.reshape(3, -1) for photo in photos], dim=1).double()
    covariance = torch.cov(pixels)
    reconstructed = eigenvectors @ torch.diag(eigenvalues) @ eigenvectors.T
    torch.testing.assert_close(reconstructed, covariance, rtol=1e-4, atol=1e-6)


def test_fit_on_a_pixel_sample_is_close(photos, fitted):
    """Drawing as many pixels from each photo weighs the photos equally: the sample's
    covariance approaches that of the equal mixture of the photos' pixels."""
    torch.manual_seed(0)
    sampled = fit_pca_lighting(iter(photos), max_pixels_per_image=20_000, progress=False)
    per_photo = [photo.reshape(3, -1).double() for photo in photos]
    means = torch.stack([pixels.mean(dim=1) for pixels in per_photo])
    second_moments = torch.stack([pixels @ pixels.T / pixels.shape[1] for pixels in per_photo])
    mixture = second_moments.mean(dim=0) - torch.outer(means.mean(dim=0), means.mean(dim=0))
    eigenvectors = sampled.eigenvectors.double()
    reconstructed = eigenvectors @ torch.diag(sampled.eigenvalues.double()) @ eigenvectors.T
    torch.testing.assert_close(reconstructed, mixture, rtol=0, atol=0.03 * mixture.abs().max())
    only_two = fit_pca_lighting(photos, max_images=2, max_pixels_per_image=None, progress=False)
    assert not torch.allclose(only_two.eigenvalues, fitted.eigenvalues)


@pytest.mark.bad_input
def test_fit_refuses_images_it_cannot_read():
    with pytest.raises(ValueError, match=r"float RGB images shaped \(3, H, W\)"):
        fit_pca_lighting([torch.zeros(3, 4, 4, dtype=torch.uint8)], progress=False)
    with pytest.raises(ValueError, match="at least two pixels"):
        fit_pca_lighting([], progress=False)


def test_imagenet_figures_are_an_orthonormal_basis():
    lighting = PCALighting(**IMAGENET_PCA)
    basis = lighting.eigenvectors
    torch.testing.assert_close(basis.T @ basis, torch.eye(3), atol=1e-3, rtol=0)
    assert lighting.std == 0.1


def test_zero_std_is_the_identity(photos, fitted):
    lighting = PCALighting(fitted.eigenvalues, fitted.eigenvectors, std=0.0)
    assert torch.equal(lighting(photos[0]), photos[0])


def test_one_offset_per_image(photos, fitted):
    torch.manual_seed(0)
    image = photos[1]
    offset = fitted(image) - image
    per_channel = offset.reshape(3, -1)
    torch.testing.assert_close(per_channel, per_channel[:, :1].expand_as(per_channel))
    assert per_channel[:, 0].abs().max() > 0
    # A batch draws one offset for each of its images.
    batch_offsets = (fitted(torch.zeros(4, 3, 2, 2)))[:, :, 0, 0]
    assert len({tuple(row.tolist()) for row in batch_offsets}) == 4


def test_seeding_repeats_the_noise(photos, fitted):
    torch.manual_seed(5)
    first = fitted(photos[0])
    torch.manual_seed(5)
    assert torch.equal(fitted(photos[0]), first)
    assert not torch.equal(fitted(photos[0]), first)


def test_offset_covariance_is_the_papers(fitted):
    """Over many draws the offsets have covariance P diag((0.1 l)^2) P^T and mean 0."""
    torch.manual_seed(0)
    draws = 100_000
    offsets = fitted(torch.zeros(draws, 3, 1, 1)).reshape(draws, 3).double()
    eigenvalues = fitted.eigenvalues.double()
    eigenvectors = fitted.eigenvectors.double()
    expected = eigenvectors @ torch.diag((0.1 * eigenvalues) ** 2) @ eigenvectors.T
    scale = expected.abs().max().item()
    torch.testing.assert_close(torch.cov(offsets.T), expected, rtol=0, atol=0.03 * scale)
    torch.testing.assert_close(
        offsets.mean(dim=0), torch.zeros(3, dtype=torch.float64), rtol=0, atol=0.01 * scale**0.5
    )


def test_in_a_v2_pipeline(photos):
    lighting = PCALighting(**IMAGENET_PCA)
    pipeline = v2.Compose([lighting, v2.Normalize(mean=[0.5] * 3, std=[0.25] * 3)])
    image = tv_tensors.Image(photos[0])
    mask = tv_tensors.Mask(torch.zeros(1, *photos[0].shape[1:]))
    out = pipeline({"image": image, "mask": mask, "label": 7})
    assert isinstance(out["image"], tv_tensors.Image)
    assert out["image"].shape == image.shape
    assert out["mask"] is mask and out["label"] == 7
    with pytest.raises(TypeError, match="ToDtype"):
        lighting(torch.zeros(3, 4, 4, dtype=torch.uint8))
    with pytest.raises(TypeError, match="not PIL images"):
        lighting(v2.ToPILImage()(photos[0]))
