"""The built-in default model (shapes-v1): time per 64x64 image at its default steps, and the oracle.

Baseline in the same run: calling the shipped pipeline directly with diffusers
(``ShapesPipeline.from_pretrained``), against omni's in-process executor.
Targets (issue 26): under 100 ms per image through inproc on a 2-core CPU; over
200 random prompts the oracle finds the asked subject in >= 90 %, the asked
colors in >= 95 %; size and position are reported.

Run: ``nox -s benchmarks`` or ``python benchmarks/bench_shapes.py [--full]``.
"""

from __future__ import annotations

import importlib.util
import json

from _builtin import arguments, direct_in_own_process, report, time_direct, time_omni
from _targets import verdict

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest
from omni_core.models.default import default_model_path
from omni_core.models.shapes import ShapesPipeline
from omni_core.models.shapes_vocabulary import SUBJECTS

STEPS = 4
"""The pipeline's default number of sampling steps."""


def prompt(seed: int) -> str:
    return f"a red {SUBJECTS[seed % len(SUBJECTS)]} on a blue background"


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    if args.direct_only is not None:
        pipeline = ShapesPipeline.from_pretrained(default_model_path())
        print(json.dumps(time_direct(pipeline, prompt, args.direct_only)))
        return
    count = 200 if args.full else 40
    direct = direct_in_own_process(__file__, count)
    with DiffusionEngine(OmniDiffusionConfig(executor_class="inproc")) as engine:
        o, _ = time_omni(engine, prompt, count)
        title = f"shapes model (default), 64x64, its default {STEPS} sampling steps, no guidance"
        report("shapes", title, direct, o, args.plot_dir)
        if importlib.util.find_spec("sklearn") is None:
            print("  oracle: skipped (pip install 'omni-core[train]')")
            return
        from omni_core.models.shapes_oracle import random_prompts, score

        pairs = random_prompts(200, seed=0)
        outputs = engine.step([OmniDiffusionRequest(text, seed=i) for i, (_, text) in enumerate(pairs)])
    scores = score([scene for scene, _ in pairs], [o.raise_for_error().output[0] for o in outputs])
    targets = {"subject": 0.90, "color": 0.95, "background": 0.95}
    print(
        "  oracle over 200 random prompts: "
        + ", ".join(
            f"{name} {value:.1%}"
            + (
                f" (target >= {targets[name]:.0%}: {verdict(value >= targets[name])})"
                if name in targets
                else ""
            )
            for name, value in scores.items()
        )
    )


if __name__ == "__main__":
    main()
