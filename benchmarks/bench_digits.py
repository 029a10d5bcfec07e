"""The built-in digits model (digits-v1, by name): time per image at 64x64, and oracle accuracy.

Baseline in the same run: calling the shipped pipeline directly with
diffusers (``DigitsPipeline.from_pretrained``), against omni's in-process
executor. Target: under 100 ms per image on a 2-core CPU.

Run: ``nox -s benchmarks`` or ``python benchmarks/bench_digits.py [--full]``.
"""

from __future__ import annotations

import importlib.util
import json

from _builtin import arguments, direct_in_own_process, report, time_direct, time_omni

from omni_core import DiffusionEngine, OmniDiffusionConfig
from omni_core.models.default import builtin_model_path
from omni_core.models.digits import DigitsPipeline


def prompt(seed: int) -> str:
    return str(seed % 10)


def main() -> None:
    args = arguments(__doc__.splitlines()[0])
    if args.direct_only is not None:
        pipeline = DigitsPipeline.from_pretrained(builtin_model_path("digits-v1"))
        print(json.dumps(time_direct(pipeline, prompt, args.direct_only)))
        return
    count = 100 if args.full else 10
    direct = direct_in_own_process(__file__, count)
    config = OmniDiffusionConfig(model_name_or_path="digits-v1", executor_class="inproc")
    with DiffusionEngine(config) as engine:
        o, outputs = time_omni(engine, prompt, count)
    title = "digits model, 64x64, its default 8 sampling steps, guidance 1.5"
    report("digits", title, direct, o, args.plot_dir)
    if importlib.util.find_spec("sklearn") is None:
        print("  oracle: skipped (pip install 'omni-core[train]')")
        return
    from omni_core.models.digits_oracle import classify, oracle

    predicted = classify([output.output[0] for output in outputs])
    correct = sum(p == seed % 10 for seed, p in enumerate(predicted))
    print(
        f"  oracle: {correct}/{count} images classified as the prompted digit "
        f"(oracle held-out accuracy {oracle()[1]:.3f})"
    )


if __name__ == "__main__":
    main()
