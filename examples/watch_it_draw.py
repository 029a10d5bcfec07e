"""Watch an image form: previews from the step loop, in Python and through the OpenAI client.

1. ``engine.submit(request, on_progress=...)`` with ``partial_images=3``: the default (mp)
   executor sends three previews, each the model's current estimate of the final image.
2. The same through ``omni serve`` and the official ``openai`` client's streaming API
   (``images.generate(stream=True, partial_images=2)``), when both are installed.

Writes the previews as PNG files into a temporary folder and prints what arrived.
"""

# --8<-- [start:example]
import tempfile
from pathlib import Path

from omni_core import DiffusionEngine, OmniDiffusionConfig, OmniDiffusionRequest, ProgressEvent
from omni_core.images import to_pil

folder = Path(tempfile.mkdtemp(prefix="omni-previews-"))


def save_preview(event: ProgressEvent) -> None:
    if event.preview is not None:  # most steps carry none: only the ones previews were asked at
        path = folder / f"preview-{event.preview.index + 1}.png"
        to_pil(event.preview.images[0]).save(path)
        print(f"step {event.step}/{event.total_steps}: {path.name}")


with DiffusionEngine(OmniDiffusionConfig()) as engine:  # the built-in model, the mp executor
    request = OmniDiffusionRequest("a handwritten 8", seed=3, num_inference_steps=12, partial_images=3)
    output = engine.submit(request, on_progress=save_preview).result().raise_for_error()
    to_pil(output.output[0]).save(folder / "final.png")
    print("final image:", folder / "final.png")
# --8<-- [end:example]

try:
    from openai import OpenAI

    from omni_executor_http.testing import run_server
except ImportError:
    print("(pip install openai './packages/omni-executor-http[server]' for the streaming half)")
else:
    from omni_core.models.default import default_model_path

    with run_server(default_model_path(), tmp=folder) as server:
        client = OpenAI(base_url=f"{server.url}/v1", api_key="unused")
        stream = client.images.generate(prompt="a handwritten 2", stream=True, partial_images=2, size="64x64")
        for event in stream:
            print(event.type, getattr(event, "partial_image_index", ""), len(event.b64_json), "base64 chars")
