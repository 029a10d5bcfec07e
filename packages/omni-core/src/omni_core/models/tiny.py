"""A tiny Stable-Diffusion-style pipeline with random weights.

It has every part of a real SD pipeline (CLIP text encoder and tokenizer,
conditional UNet, KL VAE with a latent scale of 8, DDIM scheduler), so it
exercises the real ``from_pretrained`` path and real batching, but weighs
about half a megabyte and runs a 64x64 image in tens of milliseconds on a
CPU. Weights come from a fixed seed, so two builds are identical. Needs the
``[diffusers]`` extra.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omni_core.models.tokenizer import (
    MODEL_MAX_LENGTH,
    byte_level_clip_text_encoder,
    write_byte_level_clip_tokenizer,
)

TINY_PIPELINE_CLASS = "StableDiffusionPipeline"


def tiny_vae(**config: object) -> Any:
    """A KL VAE with 4 blocks (latent scale 8, like real SD: 3 would make 512x512 crawl), 4 channels.

    Shared by the tiny SD and Flux pipelines; ``config`` adds family-specific settings.
    """
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 16, 32, 32),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
        **config,
    )


def tiny_t5(vocab_size: int, width: int) -> Any:
    """A two-layer T5 encoder of ``width`` (Flux's and SD3's second/third text encoder, PixArt's only)."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=vocab_size,
        d_model=width,
        d_kv=8,
        d_ff=2 * width,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
    )
    return T5EncoderModel(config)


def build_tiny_pipeline(directory: str | Path, *, seed: int = 0) -> Path:
    """Build the tiny pipeline and ``save_pretrained`` it into ``directory``; returns it."""
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTokenizer

    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    write_byte_level_clip_tokenizer(target / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(target / "tokenizer", model_max_length=MODEL_MAX_LENGTH)

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        text_encoder = byte_level_clip_text_encoder()
        unet = UNet2DConditionModel(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(32, 64),
            # Attention only at the coarser level keeps 512x512 affordable on a CPU.
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=16,
        )
        vae = tiny_vae()
    finally:
        torch.random.set_rng_state(generator_state)
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(target)
    return target


def build_tiny_lora(directory: str | Path, pipeline_directory: str | Path, *, seed: int = 1) -> Path:
    """A LoRA adapter (rank 4, random non-zero weights) for the tiny pipeline's UNet attention.

    PEFT initialises LoRA's B matrices to zero, which would change nothing; random
    ones make the adapter visibly change the image, as a trained one would. Saved
    with ``save_lora_weights`` so ``load_lora_weights`` reads it like any adapter.
    """
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipeline = StableDiffusionPipeline.from_pretrained(pipeline_directory, local_files_only=True)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        config = LoraConfig(
            r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False
        )
        pipeline.unet.add_adapter(config)
    finally:
        torch.random.set_rng_state(generator_state)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipeline.unet))
    target = Path(directory)
    StableDiffusionPipeline.save_lora_weights(target, unet_lora_layers=layers, safe_serialization=True)
    return target
