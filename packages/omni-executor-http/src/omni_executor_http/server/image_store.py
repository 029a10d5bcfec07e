"""Images kept for ``response_format=url``: bounded, expiring, behind unguessable ids.

A URL is ``/v1/images/{id}/content`` on this server, read with the same API
key as the request that made it. Ids are 32 random bytes (``secrets``), so
knowing one URL tells nothing about another. The store holds at most
``max_images`` images and ``max_bytes`` bytes (the oldest go first) and each
for ``ttl`` seconds; a server restart forgets them all, as it forgets queued
work. Many replicas behind a balancer need sticky sessions or
``b64_json`` (docs/reference/http-api.md).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

DEFAULT_IMAGE_URL_TTL = 600.0
"""Seconds an image stays readable at its URL unless the operator says otherwise."""


@dataclass(frozen=True)
class StoredImage:
    data: bytes
    media_type: str
    expires: float


class ImageStore:
    def __init__(self, *, ttl: float, max_images: int, max_bytes: int) -> None:
        self.ttl = ttl
        self.max_images = max_images
        self.max_bytes = max_bytes
        self._images: OrderedDict[str, StoredImage] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, data: bytes, media_type: str) -> str:
        """Keep ``data``; returns its id."""
        image_id = secrets.token_urlsafe(32)
        with self._lock:
            self._expire(time.monotonic())
            self._images[image_id] = StoredImage(data, media_type, time.monotonic() + self.ttl)
            self._bytes += len(data)
            while self._images and (len(self._images) > self.max_images or self._bytes > self.max_bytes):
                _, dropped = self._images.popitem(last=False)
                self._bytes -= len(dropped.data)
        return image_id

    def get(self, image_id: str) -> StoredImage | None:
        """The image, or None when unknown or expired."""
        with self._lock:
            self._expire(time.monotonic())
            return self._images.get(image_id)

    def _expire(self, now: float) -> None:
        while self._images:
            first = next(iter(self._images.values()))
            if first.expires > now:
                return
            _, dropped = self._images.popitem(last=False)
            self._bytes -= len(dropped.data)
