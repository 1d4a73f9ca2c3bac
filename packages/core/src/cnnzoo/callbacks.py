"""A picture of sample predictions, saved as PNG and sent to W&B when it is a logger."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger


def prediction_figure(images: torch.Tensor, target: torch.Tensor, predicted: torch.Tensor, classes):
    """A grid of images titled "predicted (true)", wrong ones in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(images)
    cols = min(8, count)
    rows = (count + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, true, pred in zip(
        axes.flat, images, target.tolist(), predicted.tolist(), strict=False
    ):
        low, high = image.amin(), image.amax()
        shown = ((image - low) / (high - low + 1e-8)).permute(1, 2, 0).cpu().float().numpy()
        ax.imshow(shown.squeeze(-1) if shown.shape[-1] == 1 else shown, cmap="gray")
        name = classes[pred] if classes else str(pred)
        truth = classes[true] if classes else str(true)
        ax.set_title(f"{name} ({truth})", fontsize=8, color="black" if pred == true else "red")
    fig.tight_layout()
    return fig


class PredictionGallery(L.Callback):
    """Draw the first `num_images` validation and test images with their predictions.

    Saved as `predictions-<stage>.png` in the run's log folder and logged to W&B, for
    validation every `every_n_epochs` epochs and after the last.
    """

    def __init__(self, num_images: int = 16, every_n_epochs: int = 5) -> None:
        self.num_images = num_images
        self.every_n_epochs = every_n_epochs

    def _draw(self, trainer: L.Trainer, module: L.LightningModule, batch, stage: str) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        images, target = batch[0][: self.num_images], batch[1][: self.num_images]
        with torch.no_grad():
            predicted = module.predict_log_probs(images).argmax(dim=-1)
        if images.ndim == 5:  # multi-crop batches: show the first crop
            images = images[:, 0]
        classes = getattr(trainer.datamodule, "classes", None)
        fig = prediction_figure(images, target, predicted, classes)
        folder = Path(trainer.log_dir or trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        fig.savefig(folder / f"predictions-{stage}.png", dpi=100)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=f"{stage}/predictions", images=[fig], step=trainer.global_step)
        import matplotlib.pyplot as plt

        plt.close(fig)

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        epoch = trainer.current_epoch + 1
        if batch_idx == 0 and (epoch % self.every_n_epochs == 0 or epoch == trainer.max_epochs):
            self._draw(trainer, module, batch, "val")

    def on_test_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 0:
            self._draw(trainer, module, batch, "test")
