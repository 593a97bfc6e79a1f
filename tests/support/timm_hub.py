"""Weights of timm's tiny test models, made here and put where a user's would be:
the Hugging Face cache, or a local web server standing in for the Hub. No network."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import save_file

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def random_state(model_name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A timm model's state dict with seeded random weights ("pretrained" for tests)."""
    import timm

    torch.manual_seed(seed)
    return timm.create_model(model_name).state_dict()


def put_in_hub_cache(cache: Path, model_name: str, state: dict[str, torch.Tensor]) -> Path:
    """Write ``state`` as ``timm/<model_name>``'s model.safetensors in huggingface_hub's
    cache layout (refs/main naming a snapshot), as ``hf download`` leaves it."""
    repo = cache / f"models--timm--{model_name}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    save_file(state, snapshot / "model.safetensors")
    return snapshot / "model.safetensors"


def hub_file(root: Path, model_name: str, filename: str) -> Path:
    """Where a local Hub (``serve_hub``) serves ``filename`` of ``timm/<model_name>``."""
    path = root / "timm" / model_name / "resolve" / "main" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # the base class names it
        pass


@contextlib.contextmanager
def serve_hub(root: Path) -> Iterator[str]:
    """Serve ``root`` over HTTP on localhost; yields the endpoint for ``HF_ENDPOINT``."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
