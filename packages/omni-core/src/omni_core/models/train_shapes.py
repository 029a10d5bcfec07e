"""Train :class:`~omni_core.models.shapes.ShapesPipeline`, omni's default model, from rendered scenes.

Every batch is drawn fresh: random scenes and jitter, rendered by Pillow
(:mod:`omni_core.models.shapes_render`); no dataset is stored or downloaded.
Reproducible (fixed seeds: scenes, jitter, noise, dropped labels and initial
weights) and sized for a 2-core CPU: the default 1500 steps take about 8 minutes. The denoiser
(:class:`~omni_core.models.shapes_denoiser.SceneUNet`) is trained on two
targets at once: its full prediction of the clean image from the noisy one,
and its sketch alone (what the prompt says, before the UNet looks at the noisy
image), so the templates and palette carry the picture by themselves and the
UNet learns only corrections. One label in ten is dropped (the "not said"
index) so classifier-free guidance has an unconditional model to push from.

Run: ``omni train-default DIR`` (or ``python -m omni_core.models.train_shapes DIR``).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Any

DEFAULT_STEPS = 1500
DEFAULT_BATCH_SIZE = 32
LABEL_DROPOUT = 0.1
SKETCH_LEARNING_RATE = 0.03
"""Templates and palette are plain tables read by one warp: they take large steps safely."""
UNET_LEARNING_RATE = 2e-3


def build_untrained(seed: int = 0) -> tuple[Any, Any]:
    """(denoiser, scheduler) with fixed-seed random weights."""
    import torch
    from diffusers import DDIMScheduler

    from omni_core.models.shapes_denoiser import SceneUNet
    from omni_core.models.shapes_vocabulary import COLORS, SUBJECTS

    torch.manual_seed(seed)
    denoiser = SceneUNet(num_subjects=len(SUBJECTS), num_colors=len(COLORS))
    scheduler = DDIMScheduler(
        prediction_type="sample",
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        clip_sample=True,
        set_alpha_to_one=True,
        steps_offset=0,
        timestep_spacing="trailing",
    )
    return denoiser, scheduler


def rendered_batch(rng: random.Random, size: int) -> tuple[Any, Any, Any]:
    """(images (B, 3, 64, 64) in [-1, 1], labels (B, 3) with one in ten dropped, placements (B, 3))."""
    import numpy as np
    import torch

    from omni_core.models.shapes import scene_labels
    from omni_core.models.shapes_render import placement, random_jitter, render
    from omni_core.models.shapes_vocabulary import random_scene

    pixels, labels, placements = [], [], []
    for _ in range(size):
        scene = random_scene(rng)
        jitter = random_jitter(rng)
        pixels.append(render(scene, jitter=jitter))
        dropped = [rng.random() < LABEL_DROPOUT for _ in range(3)]
        labels.append(
            scene_labels(
                None if dropped[0] else scene.subject,
                *(
                    None if drop else name
                    for drop, name in zip(dropped[1:], (scene.color, scene.background), strict=True)
                ),
            )
        )
        placements.append(placement(scene, jitter))
    images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return images, torch.tensor(labels), torch.tensor(placements)


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

    from omni_core.models.shapes import ShapesPipeline

    # Same seed, same weights, bit for bit, whatever else the machine is doing: without this a
    # full run drifted by up to 6e-4 in a weight (same oracle scores) between a quiet and a busy run.
    torch.use_deterministic_algorithms(True)
    rng = random.Random(seed)
    denoiser, scheduler = build_untrained(seed)
    alphas = scheduler.alphas_cumprod
    tables = [denoiser.templates, denoiser.foreground.weight, denoiser.background.weight]
    table_ids = {id(p) for p in tables}
    unet = [p for p in denoiser.parameters() if id(p) not in table_ids]
    optimizer = torch.optim.Adam(
        [{"params": tables, "lr": SKETCH_LEARNING_RATE}, {"params": unet, "lr": UNET_LEARNING_RATE}]
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[SKETCH_LEARNING_RATE, UNET_LEARNING_RATE],
        total_steps=steps,
        pct_start=max(0.05, 4 / steps),
    )
    generator = torch.Generator().manual_seed(seed)
    started = time.time()
    denoiser.train()
    for step in range(1, steps + 1):
        images, labels, placements = rendered_batch(rng, batch_size)
        noise = torch.randn(images.shape, generator=generator)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,), generator=generator)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * images + (1 - a).sqrt() * noise
        sketch, mask = denoiser.sketch(labels, placements)
        clean = denoiser.refine(noisy, t, sketch, mask)
        loss = functional.mse_loss(clean, images) + functional.mse_loss(sketch, images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet, 1.0)
        optimizer.step()
        schedule.step()
        if step % log_every == 0 or step == steps:
            print(f"step {step}/{steps} loss {loss.item():.4f} {time.time() - started:.0f}s", flush=True)
    denoiser.eval()
    ShapesPipeline(unet=denoiser, scheduler=scheduler).save_pretrained(out)
    return out


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
