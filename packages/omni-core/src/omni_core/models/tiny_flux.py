"""A tiny Flux pipeline with random weights: omni's transformer-family test model.

Every part of a real Flux pipeline (CLIP and T5 text encoders with locally
written tokenizers, a ``FluxTransformer2DModel``, a KL VAE with latent scale 8,
the flow-matching Euler scheduler), small enough to run a 64x64 image on a CPU
in tens of milliseconds. diffusers derives Flux's image-to-image and inpainting
pipelines from it, so it checks those paths beyond the UNet family. Weights come
from a fixed seed. Needs the ``[diffusers]`` extra.
"""

from __future__ import annotations

from pathlib import Path

from omni_core.models.tiny import tiny_t5, tiny_vae
from omni_core.models.tokenizer import (
    MODEL_MAX_LENGTH,
    byte_level_clip_text_encoder,
    character_t5_tokenizer,
    write_byte_level_clip_tokenizer,
)


def build_tiny_flux_pipeline(directory: str | Path, *, seed: int = 0) -> Path:
    """Build the tiny Flux pipeline and ``save_pretrained`` it into ``directory``; returns it."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTokenizer

    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    write_byte_level_clip_tokenizer(target / "tokenizer")
    tokenizer_2, t5_vocab_size = character_t5_tokenizer(target / "tokenizer_2")
    tokenizer = CLIPTokenizer.from_pretrained(target / "tokenizer", model_max_length=MODEL_MAX_LENGTH)

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        text_encoder = byte_level_clip_text_encoder()
        text_encoder_2 = tiny_t5(t5_vocab_size, 32)
        transformer = FluxTransformer2DModel(
            patch_size=1,
            in_channels=16,  # Flux packs 2x2 patches of the VAE's 4 latent channels
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,  # the T5 width
            pooled_projection_dim=32,  # the CLIP projection
            axes_dims_rope=[4, 6, 6],
        )
        # Flux's VAE has no quant convs and shifts its latents.
        vae = tiny_vae(
            use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=0.3611
        )
    finally:
        torch.random.set_rng_state(generator_state)
    pipeline = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    pipeline.save_pretrained(target)
    return target
