"""The Qwen-VL image processor, handed channels-first pixels.

transformers' torchvision backend turns a PIL image into a channels-last *view*
(torchvision's ``pil_to_tensor`` avoids the copy on purpose), and the processor's
rescale, normalise and patchify then run on that strided view at about half speed:
10.9 ms vs 6.0 ms (copy included) for an 800k-pixel view on one thread. One copy to
contiguous channels-first up front (0.8 ms) gives bit-identical ``pixel_values``.

The class keeps the stock name, so checkpoints saved with it load with the stock class
anywhere (vLLM, plain transformers). Needs torchvision (:func:`depthlm.models.require_torchvision`).
"""

from __future__ import annotations

from transformers.models.qwen2_vl.image_processing_qwen2_vl import (
    Qwen2VLImageProcessor as StockQwen2VLImageProcessor,
)


class Qwen2VLImageProcessor(StockQwen2VLImageProcessor):
    """The stock processor, but each image is made contiguous before the batch operations."""

    def process_image(self, *args, **kwargs):
        return super().process_image(*args, **kwargs).contiguous()


def channels_first(image_processor):
    """The same settings in the class with the channels-first input step (stock Qwen-VL
    torchvision processors only; others come back unchanged)."""
    if type(image_processor) is not StockQwen2VLImageProcessor:
        return image_processor
    return Qwen2VLImageProcessor.from_dict(image_processor.to_dict())
