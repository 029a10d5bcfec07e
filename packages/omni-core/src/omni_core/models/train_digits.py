"""Train ``DigitsPipeline`` on scikit-learn's bundled handwritten digits.

Reproducible (fixed seeds) and sized for a 2-core CPU: the default 6000
steps take about ten minutes. No shift augmentation: on 8x8 images one
pixel is an eighth of the digit, and shifted digits are what a pixel-space
classifier (the test oracle) calls another digit. Prompts name the digit in several ways ("7", "seven",
"a handwritten 7", ...); one prompt in ten is empty so classifier-free
guidance works at sampling time. Needs the ``[train]`` extra (scikit-learn).

Run: ``omni train-digits --out DIR`` (or ``python -m omni_core.models.train_digits DIR``).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Any

from omni_core.models.digits_constants import DIGIT_WORDS, NATIVE_SIZE, PROMPT_TOKENS
from omni_core.models.tokenizer import (
    MODEL_MAX_LENGTH,
    byte_level_clip_text_encoder,
    write_byte_level_clip_tokenizer,
)

WORDS = list(DIGIT_WORDS)
TEMPLATES = [
    "{d}",
    "{w}",
    "a handwritten {d}",
    "a handwritten {w}",
    "the digit {d}",
    "the number {w}",
    "a {w}",
    "digit {d}",
    "handwritten {w}",
    "{d} drawn by hand",
]
HELD_OUT_FRACTION = 0.25
SPLIT_SEED = 0


def prompts_for(digit: int) -> list[str]:
    return [t.format(d=digit, w=WORDS[digit]) for t in TEMPLATES]


def digits_split() -> tuple[Any, Any, Any, Any]:
    """(x_train, x_test, y_train, y_test): the split both the model and the oracle use."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    return tuple(
        train_test_split(
            data.images,
            data.target,
            test_size=HELD_OUT_FRACTION,
            random_state=SPLIT_SEED,
            stratify=data.target,
        )
    )


def build_untrained(seed: int = 0) -> tuple[Any, Any, Any, Any]:
    import torch
    from diffusers import DDIMScheduler, UNet2DConditionModel

    from omni_core.models.digits import DigitsPipeline

    torch.manual_seed(seed)
    text_encoder = byte_level_clip_text_encoder()
    unet = UNet2DConditionModel(
        sample_size=NATIVE_SIZE,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(32, 48),
        # Cross-attention (the prompt) at 4x4 and in the mid block; plain convolutions at 8x8.
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    # The model predicts the clean image ("sample"), not the noise: on 8x8 digits that stays
    # stable with few sampling steps, where noise prediction amplified errors near t=0.
    scheduler = DDIMScheduler(
        prediction_type="sample",
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        clip_sample=True,
        set_alpha_to_one=True,
        steps_offset=0,
        timestep_spacing="trailing",
    )
    return DigitsPipeline, unet, text_encoder, scheduler


def train(out: Path, *, steps: int, batch_size: int = 64, seed: int = 0, log_every: int = 200) -> Path:
    import numpy as np
    import torch
    import torch.nn.functional as functional
    from transformers import CLIPTokenizer

    torch.set_num_threads(max(1, torch.get_num_threads()))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    pipeline_class, unet, text_encoder, scheduler = build_untrained(seed)
    tokenizer_dir = out / "tokenizer"
    write_byte_level_clip_tokenizer(tokenizer_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir, model_max_length=MODEL_MAX_LENGTH)

    x_train, _, y_train, _ = digits_split()
    # (N, 1, 8, 8) in [-1, 1]: the model works at the data's own resolution.
    images = torch.tensor(np.asarray(x_train), dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
    labels = np.asarray(y_train)
    all_prompts = [prompts_for(d) for d in range(10)]
    alphas = scheduler.alphas_cumprod

    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=2e-3, total_steps=steps, pct_start=max(0.05, 4 / steps)
    )
    generator = torch.Generator().manual_seed(seed)
    started = time.time()
    unet.train()
    text_encoder.train()
    for step in range(1, steps + 1):
        index = torch.randint(0, len(images), (batch_size,), generator=generator)
        batch = images[index]
        choice = torch.randint(0, len(TEMPLATES), (batch_size,), generator=generator).tolist()
        drop = (torch.rand(batch_size, generator=generator) < 0.1).tolist()
        texts = [
            "" if drop[i] else all_prompts[int(labels[int(index[i])])][choice[i]] for i in range(batch_size)
        ]
        tokens = tokenizer(
            texts, padding="max_length", max_length=PROMPT_TOKENS, truncation=True, return_tensors="pt"
        ).input_ids
        noise = torch.randn(batch.shape, generator=generator)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,), generator=generator)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * batch + (1 - a).sqrt() * noise
        embeddings = text_encoder(tokens)[0]
        predicted = unet(noisy, t, encoder_hidden_states=embeddings).sample
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
    pipeline = pipeline_class(unet=unet, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)
    pipeline.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train omni's built-in digits model.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    train(args.out, steps=args.steps, batch_size=args.batch_size, seed=args.seed)


if __name__ == "__main__":
    main()
