"""``SceneUNet``: the shapes model's denoiser, a sketch from the prompt refined by a small UNet.

Why this shape and not a plain text-conditioned UNet: a generic UNet has to
learn, from pixels alone, where a subject goes, how big it is, what 43 glyphs
look like and which words pick which of them; on a 2-core CPU in 20 minutes it
learns the colors and little else (an earlier try: 2 % of subjects right). Here
each of those has weights of its own, so each is learned in minutes:

- **templates**: one learned 72x72 mask per subject (plus one for "none"), in a
  frame centred on the subject; placed on the canvas by an affine warp at the
  subject's centre and extent (``placement``, computed by
  :func:`omni_core.models.shapes_render.placement`, the renderer's own rule);
- **palette**: one learned RGB value per foreground and background color;
- the **sketch** is ``mask * foreground + (1 - mask) * background``;
- a small **UNet** (timestep-modulated residual blocks at 32x32, on the image
  folded 2x2) sees the noisy image, the sketch and the mask, and predicts the
  clean image as the sketch plus a correction. It is what makes this a denoiser
  rather than a lookup: at low noise it keeps what the noisy image shows (so
  image-to-image at low strength keeps the input), at high noise it trusts the
  sketch.

The model predicts the clean image (``prediction_type="sample"``); every row is
independent, so omni merges rows of different requests (step batching).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as functional
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

FOLD = 2
"""The UNet works on the image folded 2x2 (``pixel_unshuffle``): 32x32, four times cheaper, exact."""


@dataclass
class SceneUNetOutput(BaseOutput):  # type: ignore[misc]
    """The predicted clean image, (B, 3, 64, 64) in [-1, 1]."""

    sample: torch.Tensor


class _Block(nn.Module):  # type: ignore[misc]
    """A residual block whose features the timestep scales and shifts (FiLM)."""

    def __init__(self, channels: int, time_channels: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(8, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.film = nn.Linear(time_channels, 2 * channels)
        self.norm2 = nn.GroupNorm(8, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        h = self.conv1(functional.silu(self.norm1(x)))
        scale, shift = self.film(time)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        return x + self.conv2(functional.silu(h))


class SceneUNet(ModelMixin, ConfigMixin):  # type: ignore[misc]
    """Denoiser for scenes: ``model(noisy, t, labels=..., placement=...).sample`` is the clean image.

    ``labels`` is (B, 3) int64: subject, foreground color, background color; each
    index past the last (``num_subjects``, ``num_colors``) means "not said"
    (what classifier-free guidance's unconditional half uses). ``placement`` is
    (B, 3) float: the subject's centre x, centre y and extent in pixels.
    """

    @register_to_config  # type: ignore[untyped-decorator]
    def __init__(
        self,
        num_subjects: int = 43,
        num_colors: int = 8,
        sample_size: int = 64,
        template_size: int = 72,
        template_span: float = 1.4,
        channels: int = 48,
        num_blocks: int = 4,
    ) -> None:
        super().__init__()
        self.templates = nn.Parameter(torch.full((num_subjects + 1, 1, template_size, template_size), -3.0))
        self.foreground = nn.Embedding(num_colors + 1, 3)
        self.background = nn.Embedding(num_colors + 1, 3)
        nn.init.zeros_(self.foreground.weight)
        nn.init.zeros_(self.background.weight)
        self.time_proj = Timesteps(channels, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(channels, 2 * channels)
        inputs = (3 + 3 + 1) * FOLD * FOLD  # noisy image, sketch, mask
        self.conv_in = nn.Conv2d(inputs, channels, 3, padding=1)
        self.down = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.blocks = nn.ModuleList(_Block(channels, 2 * channels) for _ in range(num_blocks))
        self.up = nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1)
        self.conv_out = nn.Conv2d(2 * channels, 3 * FOLD * FOLD, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # starts as the sketch itself
        nn.init.zeros_(self.conv_out.bias)

    def place(self, subjects: torch.Tensor, placement: torch.Tensor) -> torch.Tensor:
        """Each row's subject template warped to its centre and extent: (B, 1, 64, 64) in [0, 1]."""
        size = self.config.sample_size
        side = placement[:, 2] * self.config.template_span  # the template's frame, in pixels
        zoom = size / side
        centre_x = placement[:, 0] / (size / 2) - 1
        centre_y = placement[:, 1] / (size / 2) - 1
        zero = torch.zeros_like(zoom)
        theta = torch.stack(
            [
                torch.stack([zoom, zero, -centre_x * zoom], dim=1),
                torch.stack([zero, zoom, -centre_y * zoom], dim=1),
            ],
            dim=1,
        )
        grid = functional.affine_grid(theta, [len(subjects), 1, size, size], align_corners=False)
        templates = torch.sigmoid(self.templates[subjects])
        return functional.grid_sample(
            templates, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )

    def sketch(self, labels: torch.Tensor, placement: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sketch image (B, 3, 64, 64) in [-1, 1], mask (B, 1, 64, 64)): what the prompt alone says."""
        placement = placement.to(self.templates.dtype)
        mask = self.place(labels[:, 0], placement)
        foreground = torch.tanh(self.foreground(labels[:, 1]))[:, :, None, None]
        background = torch.tanh(self.background(labels[:, 2]))[:, :, None, None]
        return mask * foreground + (1 - mask) * background, mask

    def refine(
        self, sample: torch.Tensor, timestep: Any, sketch: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """The clean image: the sketch plus the UNet's correction from the noisy image."""
        rows = len(sample)
        steps = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(rows)
        time = self.time_embedding(self.time_proj(steps).to(sample.dtype))
        x = functional.pixel_unshuffle(torch.cat([sample, sketch, mask], dim=1), FOLD)
        skip = self.conv_in(x)
        h = self.down(functional.silu(skip))
        for block in self.blocks:
            h = block(h, time)
        h = self.up(h)
        correction = self.conv_out(functional.silu(torch.cat([h, skip], dim=1)))
        return sketch + functional.pixel_shuffle(correction, FOLD)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: Any,
        labels: torch.Tensor,
        placement: torch.Tensor,
        return_dict: bool = True,
    ) -> Any:
        sketch, mask = self.sketch(labels, placement)
        clean = self.refine(sample, timestep, sketch.to(sample.dtype), mask.to(sample.dtype))
        return SceneUNetOutput(sample=clean) if return_dict else (clean,)
