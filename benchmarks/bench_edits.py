"""Image-to-image and inpainting: what the derived pipelines cost in memory, and an edit's overhead.

Memory: a worker's resident memory (RSS) right after loading a pipeline the way
omni's runner does, and again after it derived the image-to-image and
inpainting pipelines (``AutoPipelineFor*.from_pipe``, sharing every component).
Measured on a mid-sized random Stable Diffusion pipeline (about 200 MB of float32
weights, built from configs) so a copied weight would show. Target: under 5% more.

Speed: an edit (image-to-image at strength 1.0, so the same denoising steps) against
a generation at 256x256 with the same steps, through omni's in-process executor on
the tiny pipeline, taking turns request by request; the difference is what encoding
the input image with the VAE and preparing it costs. Reported, no target.

Run: ``nox -s benchmarks`` or ``python benchmarks/bench_edits.py [--full]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _targets import verdict

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest
from omni_core.models.tiny import build_tiny_pipeline
from omni_core.testing_pipelines import sample_image


def build_medium_pipeline(directory: Path) -> Path:
    """A Stable Diffusion pipeline of SD's shape at reduced width, random weights (seed 0)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTokenizer

    from omni_core.models.tokenizer import (
        MODEL_MAX_LENGTH,
        byte_level_clip_text_encoder,
        write_byte_level_clip_tokenizer,
    )

    write_byte_level_clip_tokenizer(directory / "tokenizer")
    torch.manual_seed(0)
    text_encoder = byte_level_clip_text_encoder(
        hidden_size=256, intermediate_size=1024, num_hidden_layers=4, projection_dim=256
    )
    unet = UNet2DConditionModel(
        sample_size=32,
        block_out_channels=(64, 128, 256, 256),
        cross_attention_dim=256,
        attention_head_dim=8,
        layers_per_block=2,
    )
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(64, 128, 256, 256),
        latent_channels=4,
    )
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(directory / "tokenizer", model_max_length=MODEL_MAX_LENGTH),
        unet=unet,
        scheduler=DDIMScheduler(clip_sample=False, set_alpha_to_one=False, steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(directory)
    return directory


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure_memory(model: str) -> dict[str, float]:
    """In this (fresh) process: RSS after loading as the runner does, then after deriving."""
    import gc

    import torch
    from diffusers import DiffusionPipeline

    from omni_core.runner.pipelines import PipelineSet

    pipeline = DiffusionPipeline.from_pretrained(model, dtype=torch.float32, local_files_only=True).to("cpu")
    pipeline(prompt="warm", height=64, width=64, num_inference_steps=1, output_type="np")
    gc.collect()
    before = rss_bytes()
    derived = PipelineSet.derive(pipeline, model)
    gc.collect()
    after = rss_bytes()
    weights = sum(p.numel() * p.element_size() for p in pipeline.unet.parameters())
    weights += sum(p.numel() * p.element_size() for p in pipeline.vae.parameters())
    weights += sum(p.numel() * p.element_size() for p in pipeline.text_encoder.parameters())
    shared = all(
        derived.pipelines[task].unet is pipeline.unet and derived.pipelines[task].vae is pipeline.vae
        for task in ("image", "inpaint")
    )
    return {"before": before, "after": after, "weights": weights, "shared": float(shared)}


def time_edit_against_generation(model: Path, count: int, steps: int) -> tuple[float, float]:
    image = sample_image(seed=1, size=256)
    config = OmniDiffusionConfig(model_name_or_path=str(model), executor_class="inproc")

    def generation(seed: int) -> OmniDiffusionRequest:
        return OmniDiffusionRequest("a 7", height=256, width=256, num_inference_steps=steps, seed=seed)

    def edit(seed: int) -> OmniDiffusionRequest:
        return OmniDiffusionRequest("a 7", image=image, strength=1.0, num_inference_steps=steps, seed=seed)

    times: dict[str, list[float]] = {"generation": [], "edit": []}
    with DiffusionEngine(config) as engine:
        for make in (generation, edit):
            engine.step([make(999)])[0].raise_for_error()
        for seed in range(count):
            for name, make in (("generation", generation), ("edit", edit)):
                started = time.perf_counter()
                engine.step([make(seed)])[0].raise_for_error()
                times[name].append(time.perf_counter() - started)
    return statistics.median(times["generation"]), statistics.median(times["edit"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--plot-dir", default=None, help=argparse.SUPPRESS)  # no chart for this one
    parser.add_argument("--memory-only", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_only is not None:
        print(json.dumps(measure_memory(args.memory_only)))
        return
    with tempfile.TemporaryDirectory() as folder:
        medium = build_medium_pipeline(Path(folder) / "medium")
        # A fresh process: this one's allocations (building the model) would blur the figure.
        child = subprocess.run(
            [sys.executable, __file__, "--memory-only", str(medium)],
            capture_output=True,
            text=True,
            check=True,
        )
        memory = json.loads(child.stdout.strip().splitlines()[-1])
        tiny = build_tiny_pipeline(Path(folder) / "tiny")
        count, steps = (30, 10) if args.full else (5, 4)
        generation, edit = time_edit_against_generation(tiny, count, steps)
    grown = memory["after"] / memory["before"] - 1
    weights = memory["weights"] / 2**20
    print(f"derived image-to-image + inpainting pipelines, SD-shaped model of {weights:.0f} MB")
    print(
        f"  worker RSS {memory['before'] / 2**20:.0f} MB -> {memory['after'] / 2**20:.0f} MB "
        f"(+{grown * 100:.2f}%, target < 5%: {verdict(grown < 0.05)}); "
        f"components shared, not copied: {bool(memory['shared'])}"
    )
    print(f"edit vs generation, tiny SD, 256x256, {steps} steps, inproc, medians of {count}")
    print(
        f"  generation {generation * 1e3:6.1f} ms, edit (strength 1.0) {edit * 1e3:6.1f} ms: "
        f"overhead {(edit - generation) * 1e3:+.1f} ms ({edit / generation:.2f}x)"
    )


if __name__ == "__main__":
    main()
