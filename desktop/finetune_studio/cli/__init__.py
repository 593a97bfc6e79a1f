"""finetune-studio-cli: the engine from the command line; never imports Qt.

Exit codes: 0 success, 2 bad input or arguments (one line on stderr), 1 internal
error (a bug: the traceback follows the one-line summary).

Each module of this package adds its commands to the parser (``add_commands``) and
returns their handlers; handlers import the engine modules they need when they run,
so ``--help`` and a typo answer at once.

The console script enters through ``run``: ``main`` and then a quick exit (see
``exit_now``). Tests call ``main`` in their own process, which must go on living.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import sys
import threading
import traceback
from collections.abc import Sequence
from typing import NoReturn

from . import cluster, compare, data, lr_find, models, repair, review, training
from .common import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, Handler, Parser
from .training import checkpoint_path_for

__all__ = ["checkpoint_path_for", "exit_now", "main", "run"]

COMMAND_MODULES = (data, training, lr_find, compare, models, review, repair, cluster)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Handler]]:
    parser = Parser(
        prog="finetune-studio-cli",
        description="Fine-tune pretrained image "
        "classifiers on a folder of pictures (one subfolder per class).",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    handlers: dict[str, Handler] = {}
    for module in COMMAND_MODULES:
        handlers.update(module.add_commands(commands))
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    from ..engine.errors import UserFacingError

    try:
        return handlers[args.command](args)
    except UserFacingError as error:
        print(f"finetune-studio-cli: {_rank_label()}{error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps interpreter shutdown quiet
        return EXIT_OK
    except KeyboardInterrupt:
        print("finetune-studio-cli: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the boundary: anything else is our bug
        print(f"finetune-studio-cli: {_rank_label()}internal error: {error!r}", file=sys.stderr)
        traceback.print_exc()
        return EXIT_INTERNAL


def _rank_label() -> str:
    """``rank 1: `` in a process torchrun started as one of several, so each message
    says which process speaks."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ:
        return f"rank {os.environ['RANK']}: "
    return ""


def run(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``finetune-studio-cli`` console script: ``main``, then ``exit_now``."""
    exit_now(main(argv))


def exit_now(code: int) -> NoReturn:
    """Leave the process without the interpreter's teardown.

    After a run, the normal exit spends one to two seconds on a final garbage
    collection over every object still alive and on torch's library finalisers, and
    none of it is needed: every file the CLI writes is written atomically and closed
    before its command returns. What a normal exit does that matters is done here, in
    its order: wait for the threads that are not daemons, run the ``atexit``
    callbacks (multiprocessing stops its children there, logging flushes), flush
    stdout and stderr; a distributed run leaves its process group first.
    """
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    _leave_process_group()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing to say there
            stream.flush()
    os._exit(code)


def _leave_process_group() -> None:
    """Under torchrun, destroy the process group (only if torch was loaded at all)."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is None:
        return
    if distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()
