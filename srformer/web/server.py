"""Running the web application with uvicorn: bind the address first (so a busy port is one sentence), print
where the page is, serve until Ctrl+C."""

from __future__ import annotations

import ipaddress
import socket
import sys
from typing import TextIO

import uvicorn

from srformer.errors import SRFormerError, resolve_device
from srformer.web import engine
from srformer.web.app import Settings, create_app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (port 0: any free one); :class:`SRFormerError` when it cannot be had."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise SRFormerError(f"cannot listen on {host!r}: {err.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(64)
    except OSError as err:
        sock.close()
        hint = "; choose another with --port" if err.errno in (98, 48, 10048) else ""
        raise SRFormerError(f"cannot listen on {host} port {port} ({err.strerror}){hint}") from None
    sock.set_inheritable(True)
    return sock


def page_address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, out: TextIO = sys.stderr) -> None:
    """Serve the page and the API on ``host``:``port`` until interrupted."""
    resolve_device(settings.device)  # an unknown device: one sentence now, not at the first upscale
    engine.tune_memory()
    sock = bind(host, port)
    try:
        app = create_app(settings)
    except BaseException:
        sock.close()
        raise
    if not is_loopback(host):
        print(f"warning: listening on {host}: anyone who can reach this machine can use the page", file=out)
    print(f"srformer serve: open {page_address(sock)} in a browser (Ctrl+C stops it)", file=out, flush=True)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:
        pass  # uvicorn has shut down cleanly, then re-raised the signal
    finally:
        sock.close()
    print("srformer serve: stopped", file=out)
