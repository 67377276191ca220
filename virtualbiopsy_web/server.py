"""One review server for one study: loopback only by default, a random secret in the URL it prints."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"


@dataclass
class ReviewServer:
    server: object
    app: object
    host: str
    secret: str

    @property
    def port(self) -> int:
        return int(self.server.port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/index.html?secret={self.secret}"


def trame_arguments(host: str, port: int, secret: str) -> list[str]:
    """trame's options for one review server, as ``--option=value`` (a secret may begin with "-", which argparse
    would otherwise take for an option); no idle timeout: the server runs until stopped."""
    return [f"--host={host}", f"--port={int(port)}", f"--authKey={secret}", "--server", "--timeout=0"]


def create(source: dict, out: Path, models, host: str = LOOPBACK, port: int = 0, show_3d: bool = False,
           secret: str | None = None, name: str | None = None, outcome_model: Path | None = None) -> ReviewServer:
    """Build the app (the study is read here: a bad study raises before anything listens)."""
    if not os.environ.get("DISPLAY"):  # no X server: VTK renders offscreen through EGL (Mesa on a CPU)
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    from trame.app import get_server
    from trame_slicer import module as trame_slicer_module

    from virtualbiopsy_web.app import ReviewApp

    server = get_server(name or f"virtualbiopsy-view-{secrets.token_hex(4)}", client_type="vue3")
    server.enable_module(trame_slicer_module)
    secret = secret or secrets.token_urlsafe(24)
    app = ReviewApp(server, source, Path(out), models, show_3d, outcome_model)
    # trame reads its options from a command line: give it ours, never the process's own
    arguments = trame_arguments(host, port, secret)
    parser = server.cli
    parse = parser.parse_known_args
    parser.parse_known_args = lambda args=None, namespace=None: parse(arguments, namespace)
    return ReviewServer(server, app, host, secret)


def start(review: ReviewServer, on_ready=None, **kwargs):
    """Serve until stopped (Ctrl+C); ``on_ready(review)`` once listening."""
    if on_ready is not None:
        review.server.controller.on_server_ready.add(lambda **_: on_ready(review))
    return review.server.start(open_browser=False, show_connection_info=False, disable_logging=True, **kwargs)
