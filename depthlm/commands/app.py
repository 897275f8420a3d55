"""``depthlm app --model M``: a web page to click points in a photo and ask how far they are,
and (its "Depth map" tab) to turn the photo into a depth map and point cloud to download.

Examples::

    depthlm app --model runs/sft                       # http://127.0.0.1:7860
    depthlm app --model runs/sft --backend vllm --port 8080
    depthlm app --backend openai --base-url http://127.0.0.1:8000/v1 --model depthlm --render-settings runs/sft

Binds to 127.0.0.1 (this machine only). ``--host 0.0.0.0`` exposes it to the network: the page
has no login, so do that only on a network you trust.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys

from depthlm.commands.backend import (
    add_backend_arguments,
    backend_from_args,
    backend_kind,
    settings_from_args,
    stop_on_sigterm,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_backend_arguments(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=7860)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    from depthlm.app import build_app, close, launch

    settings = settings_from_args(args)
    if not _is_loopback(args.host):
        print(f"warning: serving on {args.host}: anyone who can reach it can use the model", file=sys.stderr)
    print(f"loading {args.model} ({backend_kind(args)} backend)...", flush=True)
    backend = backend_from_args(args, settings)
    stop_on_sigterm()
    page = None
    try:
        page = build_app(backend, settings, max_tokens=args.max_tokens, model_name=args.model)
        print(f"serving on http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
        launch(page, args.host, args.port)
    except KeyboardInterrupt:
        pass
    finally:
        if page is not None:
            close(page)  # uploaded photos are deleted with the page's upload folder
        backend.close()
    return 0
