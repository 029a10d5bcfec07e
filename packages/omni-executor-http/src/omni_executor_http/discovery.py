"""Where the external executor's servers are: a fixed list, a DNS name, or a file.

- ``urls``: the list, as given.
- a DNS name, written as a URL (``http://omni-serve.default.svc:8000``): each A/AAAA
  record becomes a server with that scheme and port, so a Kubernetes headless Service
  or a round-robin DNS entry lists the fleet.
- a file path (``/etc/omni/servers.txt`` or ``file:///...``): one base URL a line
  (blank lines and ``#`` comments ignored), re-read when its size or mtime changes,
  so a Slurm job or a deploy script can add and remove servers by rewriting it.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit


class Discovery(Protocol):
    def urls(self) -> list[str] | None:
        """The servers now, or ``None`` if nothing changed since the last call."""


def check_url(url: str, where: str) -> str:
    """``url`` without a trailing slash, or ``ValueError`` naming ``where`` it came from."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) or not urlsplit(url).hostname:
        raise ValueError(f"{where}: a server URL must look like http://host:port, got {url!r}")
    return url.rstrip("/")


class StaticUrls:
    def __init__(self, urls: list[str]) -> None:
        self._urls: list[str] | None = [check_url(url, "urls") for url in urls]

    def urls(self) -> list[str] | None:
        urls, self._urls = self._urls, None
        return urls


class DnsDiscovery:
    """Re-resolves ``url``'s host name; each address is one server."""

    def __init__(self, url: str) -> None:
        self.url = check_url(url, "discovery")
        parts = urlsplit(self.url)
        self.scheme = parts.scheme
        self.host = str(parts.hostname)
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._last: list[str] | None = None

    def urls(self) -> list[str] | None:
        try:
            records = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror:
            records = []  # the name is gone: no servers (kept out of rotation until it returns)
        addresses = sorted({str(record[4][0]) for record in records})
        urls = [f"{self.scheme}://{_host(address)}:{self.port}" for address in addresses]
        if urls == self._last:
            return None
        self._last = urls
        return urls


def _host(address: str) -> str:
    return f"[{address}]" if isinstance(ipaddress.ip_address(address), ipaddress.IPv6Address) else address


class FileDiscovery:
    """Reads one URL a line from ``path`` whenever the file changes."""

    def __init__(self, path: str) -> None:
        self.path = Path(path.removeprefix("file://"))
        self._seen: tuple[int, int] | None = None

    def urls(self) -> list[str] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            stat = None
        version = (stat.st_mtime_ns, stat.st_size) if stat else (0, -1)
        if version == self._seen:
            return None
        self._seen = version
        if stat is None:
            return []
        lines = (line.split("#", 1)[0].strip() for line in self.path.read_text().splitlines())
        return [check_url(line, f"discovery file {self.path}") for line in lines if line]


def discovery_for(urls: list[str] | None, discovery: str | None) -> Discovery:
    """The discovery the options ask for; exactly one of ``urls`` and ``discovery``."""
    if (urls is None) == (discovery is None):
        raise ValueError(
            "give exactly one of urls (a list of base URLs) and discovery "
            "(a DNS name as http://name:port, or a file path with one URL a line)"
        )
    if urls is not None:
        if not urls:
            raise ValueError("urls: give at least one base URL, e.g. ['http://10.0.0.5:8000']")
        return StaticUrls(urls)
    assert discovery is not None
    if discovery.startswith(("http://", "https://")):
        return DnsDiscovery(discovery)
    return FileDiscovery(discovery)
