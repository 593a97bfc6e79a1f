"""Entry point of the frozen (PyInstaller) application."""

import logging

from finetune_studio.ui.app import main


def _quiet_about_missing_triton(record: logging.LogRecord) -> bool:
    # The spec leaves triton (torch.compile's GPU kernels) out of the bundle on purpose.
    return "triton not found" not in record.getMessage()


if __name__ == "__main__":
    logging.getLogger("torch.utils.flop_counter").addFilter(_quiet_about_missing_triton)
    raise SystemExit(main())
