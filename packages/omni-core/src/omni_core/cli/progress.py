"""A step progress bar fed by the executor's progress events (tqdm)."""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

from tqdm import tqdm

from omni_core.executors.base import ProgressEvent


class StepProgress:
    """One bar over all denoising steps of the given requests.

    Executors that cannot see steps (remote ones) send no events; the bar
    then jumps to done when the request completes, which is still honest.
    """

    def __init__(self, request_ids: list[str], *, disable: bool = False) -> None:
        self._request_ids = set(request_ids)
        self._done: dict[str, int] = {}
        self._lock = threading.Lock()
        self._bar = tqdm(total=0, unit="step", desc="generating", disable=disable, leave=True)

    def __call__(self, event: ProgressEvent) -> None:
        if event.request_id not in self._request_ids:
            return
        with self._lock:
            if self._bar.total != event.total_steps * len(self._request_ids):
                self._bar.total = event.total_steps * len(self._request_ids)
            previous = self._done.get(event.request_id, 0)
            self._done[event.request_id] = event.step
            self._bar.update(max(event.step - previous, 0))

    def finish(self) -> None:
        with self._lock:
            if not self._bar.total:
                self._bar.total = len(self._request_ids)
            self._bar.update(max(self._bar.total - self._bar.n, 0))
            self._bar.close()

    def __enter__(self) -> StepProgress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.finish()
        else:
            self._bar.close()


class PreviewWriter:
    """Writes each preview a request sends as PNG files into a folder, as they arrive.

    ``preview-1.png`` is the first (``preview-1-2.png`` the second image's, with ``-n``);
    a person can keep the folder open in an image viewer and watch the picture form.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.written: list[Path] = []

    def __call__(self, event: ProgressEvent) -> None:
        if event.preview is None:
            return
        from omni_core.images import to_pil

        many = len(event.preview.images) > 1
        for number, image in enumerate(event.preview.images, start=1):
            suffix = f"-{number}" if many else ""
            path = self.directory / f"preview-{event.preview.index + 1}{suffix}.png"
            to_pil(image).save(path)
            self.written.append(path)
