"""Train :class:`~omni_core.models.shapes.ShapesPipeline`, omni's default model, from rendered scenes.

Every batch is drawn fresh: random scenes (:func:`random_scene`), one random
phrasing each (:func:`prompt_for`), rendered by Pillow with jitter
(:mod:`omni_core.models.shapes_render`); no dataset is stored or downloaded.
Reproducible (fixed seeds: scenes, phrasings, noise and initial weights) and
sized for a 2-core CPU: the default steps take about 15 minutes. The UNet
predicts the clean image ("sample"), which stays stable at the few sampling
steps the model is served with; one prompt in ten is empty so classifier-free
guidance works.

Run: ``omni train-default --out DIR`` (or ``python -m omni_core.models.train_shapes DIR``).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Any

from omni_core.models.shapes import LATENT_CHANNELS, LATENT_SIDE, PROMPT_TOKENS
from omni_core.models.shapes_vocabulary import prompt_for, random_scene, vocabulary_words

DEFAULT_STEPS = 2400
DEFAULT_BATCH_SIZE = 32
CANVAS_CHANNELS = 8
NOISY_HALF_FROM = 600
"""Half of each batch is drawn from timesteps 600-999, where the picture comes from the prompt
alone (what there is to learn); the other half from all 1000."""


def build_untrained(tokenizer_dir: Path, seed: int = 0) -> tuple[Any, Any, Any, Any]:
    """(tokenizer, text encoder, UNet, scheduler) with fixed-seed random weights."""
    import torch
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import PreTrainedTokenizerFast

    from omni_core.models.tokenizer import clip_text_encoder, write_word_level_tokenizer

    vocab_size = write_word_level_tokenizer(tokenizer_dir, vocabulary_words(), max_length=PROMPT_TOKENS)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    text_encoder = clip_text_encoder(
        vocab_size=vocab_size,
        max_length=PROMPT_TOKENS,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        projection_dim=CANVAS_CHANNELS * LATENT_SIDE * LATENT_SIDE,  # the canvas (PromptEncoding)
        with_projection=True,
    )
    unet = UNet2DConditionModel(
        sample_size=LATENT_SIDE,
        in_channels=LATENT_CHANNELS + CANVAS_CHANNELS,
        out_channels=LATENT_CHANNELS,
        layers_per_block=1,
        block_out_channels=(64, 96, 128),
        # Plain convolutions at 16x16; the prompt enters by cross-attention at 8x8, 4x4 and the middle.
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64,
        class_embed_type="projection",  # the prompt's summary joins the timestep embedding
        projection_class_embeddings_input_dim=64,
        attention_head_dim=8,
        norm_num_groups=16,
    )
    scheduler = DDIMScheduler(
        prediction_type="sample",
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        clip_sample=True,
        set_alpha_to_one=True,
        steps_offset=0,
        timestep_spacing="trailing",
    )
    return tokenizer, text_encoder, unet, scheduler


def rendered_batch(rng: random.Random, size: int) -> tuple[Any, list[str]]:
    """(B, 48, 16, 16) folded images in [-1, 1] and their prompts (one in ten empty)."""
    import numpy as np
    import torch

    from omni_core.models.shapes import fold
    from omni_core.models.shapes_render import render

    scenes = [random_scene(rng) for _ in range(size)]
    pixels = np.stack([render(scene, rng) for scene in scenes])
    prompts = ["" if rng.random() < 0.1 else prompt_for(scene, rng) for scene in scenes]
    tensor = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return fold(tensor), prompts


def train(
    out: Path,
    *,
    steps: int = DEFAULT_STEPS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    log_every: int = 100,
) -> Path:
    import torch
    import torch.nn.functional as functional

    from omni_core.models.shapes import ShapesPipeline, encode_tokens, predict_clean

    torch.set_num_threads(max(1, torch.get_num_threads()))
    rng = random.Random(seed)
    tokenizer, text_encoder, unet, scheduler = build_untrained(out / "tokenizer", seed)
    alphas = scheduler.alphas_cumprod
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=1.5e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=1.5e-3, total_steps=steps, pct_start=max(0.05, 4 / steps)
    )
    generator = torch.Generator().manual_seed(seed)
    started = time.time()
    unet.train()
    text_encoder.train()
    for step in range(1, steps + 1):
        batch, prompts = rendered_batch(rng, batch_size)
        tokens = tokenizer(
            prompts, padding="max_length", max_length=PROMPT_TOKENS, truncation=True, return_tensors="pt"
        ).input_ids
        noise = torch.randn(batch.shape, generator=generator)
        top = scheduler.config.num_train_timesteps
        t = torch.cat(
            [
                torch.randint(0, top, (batch_size - batch_size // 2,), generator=generator),
                torch.randint(NOISY_HALF_FROM, top, (batch_size // 2,), generator=generator),
            ]
        )
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * batch + (1 - a).sqrt() * noise
        prompt = encode_tokens(text_encoder, tokens)
        predicted = predict_clean(unet, noisy, t, prompt)
        loss = functional.mse_loss(predicted, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        if step % log_every == 0 or step == steps:
            print(f"step {step}/{steps} loss {loss.item():.4f} {time.time() - started:.0f}s", flush=True)
    unet.eval()
    text_encoder.eval()
    save(ShapesPipeline(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler), out)
    return out


def save(pipeline: Any, out: Path) -> None:
    """Save with the UNet's weights in float16: half the size in the wheel (11 MB, not 22 MB).

    diffusers loads them into the UNet's float32 parameters (measured: same oracle scores);
    the text encoder, a few hundred kB, stays float32, since transformers would keep it in
    float16 and CPU matmuls in float16 are slow.
    """
    pipeline.unet.half()
    pipeline.save_pretrained(out)
    pipeline.unet.float()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train omni's built-in default (shapes) model.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    train(args.out, steps=args.steps, batch_size=args.batch_size, seed=args.seed)


if __name__ == "__main__":
    main()
