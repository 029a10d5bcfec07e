"""Step-level batching: a short request joins a long one's batch and finishes first.

Runs on the built-in default model with the in-process executor; prints the
batching mode the model runs in, its measured cap, and when each request ended.
"""

# --8<-- [start:example]
import time

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest

config = OmniDiffusionConfig(executor_class="inproc", batching="step")  # "step" is the default
with DiffusionEngine(config) as engine:
    batching = engine.collective_rpc("describe")[0]["batching"]
    print(batching["mode"], "cap:", batching["cap_rows"], "rows;", batching["calibration"]["why"])
    started = time.perf_counter()
    long = engine.submit(OmniDiffusionRequest("a handwritten 3", seed=1, num_inference_steps=200))
    time.sleep(0.2)  # the long request is running
    short = engine.submit(OmniDiffusionRequest("a handwritten 7", seed=2, num_inference_steps=4))
    short_output = short.result().raise_for_error()  # joined at the next step: done first
    print(f"short done after {time.perf_counter() - started:.2f} s, long still running: {not long.done()}")
    long_output = long.result().raise_for_error()
    print(f"long done after {time.perf_counter() - started:.2f} s")
    print("rows per forward of the short request:", short_output.timings["batch_rows"])
# --8<-- [end:example]
