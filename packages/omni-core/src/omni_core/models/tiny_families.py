"""Tiny random-weight pipelines of the other families omni batches by step: SDXL, SD3, PixArt.

Like :mod:`omni_core.models.tiny` and :mod:`omni_core.models.tiny_flux`: every
part of the real pipeline (their text encoders with locally written tokenizers,
the family's UNet or transformer, a KL VAE, the family's scheduler) at a width
that runs on a CPU, built from configs with a fixed seed and saved with
``save_pretrained``, so tests load them through ``from_pretrained`` and check that
step-level batching gives each family's own images. Needs the ``[diffusers]`` extra.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omni_core.models.tiny import tiny_t5, tiny_vae
from omni_core.models.tokenizer import (
    MODEL_MAX_LENGTH,
    byte_level_clip_text_encoder,
    character_t5_tokenizer,
    write_byte_level_clip_tokenizer,
)


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Random weights from ``seed`` without disturbing the caller's torch RNG."""
    import torch

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


def _clip_with_projection() -> Any:
    """The byte-level CLIP text encoder with its projection head (SDXL's and SD3's pooled output)."""
    from transformers import CLIPTextModelWithProjection

    return CLIPTextModelWithProjection(byte_level_clip_text_encoder().config)


def _clip_tokenizers(target: Path, names: tuple[str, ...]) -> list[Any]:
    from transformers import CLIPTokenizer

    tokenizers = []
    for name in names:
        write_byte_level_clip_tokenizer(target / name)
        tokenizers.append(CLIPTokenizer.from_pretrained(target / name, model_max_length=MODEL_MAX_LENGTH))
    return tokenizers


def build_tiny_sdxl_pipeline(directory: str | Path, *, seed: int = 0) -> Path:
    """SDXL: two CLIP encoders (one pooled), a text-time conditioned UNet, Euler."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    target = Path(directory)
    tokenizer, tokenizer_2 = _clip_tokenizers(target, ("tokenizer", "tokenizer_2"))
    with _seeded(seed):
        text_encoder = byte_level_clip_text_encoder()
        text_encoder_2 = _clip_with_projection()
        unet = UNet2DConditionModel(
            sample_size=8,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=64,  # both encoders' hidden states side by side
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=6 * 8 + 32,  # six size/crop ids + the pooled text
            norm_num_groups=16,
        )
        vae = tiny_vae()
    pipeline = StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=EulerDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="leading"
        ),
    )
    pipeline.save_pretrained(target)
    return target


def build_tiny_sd3_pipeline(directory: str | Path, *, seed: int = 0) -> Path:
    """SD3: two pooled CLIP encoders and a T5, an MMDiT, flow matching."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    target = Path(directory)
    tokenizer, tokenizer_2 = _clip_tokenizers(target, ("tokenizer", "tokenizer_2"))
    tokenizer_3, vocab_size = character_t5_tokenizer(target / "tokenizer_3")
    with _seeded(seed):
        text_encoder = _clip_with_projection()
        text_encoder_2 = _clip_with_projection()
        text_encoder_3 = tiny_t5(vocab_size, 64)
        transformer = SD3Transformer2DModel(
            sample_size=8,
            patch_size=1,
            in_channels=4,
            out_channels=4,
            num_layers=1,
            attention_head_dim=8,
            num_attention_heads=4,
            joint_attention_dim=64,  # T5's width, and the two CLIP widths side by side
            caption_projection_dim=32,
            pooled_projection_dim=64,
        )
        vae = tiny_vae(
            use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5
        )
    pipeline = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
    )
    pipeline.save_pretrained(target)
    return target


def build_tiny_pixart_pipeline(directory: str | Path, *, seed: int = 0) -> Path:
    """PixArt-alpha: a T5 encoder, a DiT with adaLN-single, DDIM.

    ``sample_size=32`` is the smallest PixArt's resolution binning knows (256x256):
    a request of another size is drawn at the nearest bin and resized, as PixArt does.
    """
    from diffusers import DDIMScheduler, PixArtAlphaPipeline, PixArtTransformer2DModel

    target = Path(directory)
    tokenizer, vocab_size = character_t5_tokenizer(target / "tokenizer")
    with _seeded(seed):
        text_encoder = tiny_t5(vocab_size, 32)
        transformer = PixArtTransformer2DModel(
            sample_size=32,
            num_layers=1,
            patch_size=2,
            attention_head_dim=8,
            num_attention_heads=3,
            caption_channels=32,
            in_channels=4,
            cross_attention_dim=24,
            out_channels=8,  # PixArt also predicts the variance
            attention_bias=True,
            activation_fn="gelu-approximate",
            num_embeds_ada_norm=1000,
            norm_type="ada_norm_single",
            norm_elementwise_affine=False,
            norm_eps=1e-6,
        )
        vae = tiny_vae()
    pipeline = PixArtAlphaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=DDIMScheduler(),
    )
    pipeline.save_pretrained(target)
    return target


BUILDERS: dict[str, Callable[..., Path]] = {
    "sdxl": build_tiny_sdxl_pipeline,
    "sd3": build_tiny_sd3_pipeline,
    "pixart": build_tiny_pixart_pipeline,
}
