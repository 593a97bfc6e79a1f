"""Run finetune-studio-cli in a subprocess with the tiny test backbone registered."""

from __future__ import annotations

import sys

from finetune_studio.cli import main
from support.tiny import register_tiny

if __name__ == "__main__":
    register_tiny()
    raise SystemExit(main(sys.argv[1:]))
