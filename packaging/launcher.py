"""Entry point of the frozen (PyInstaller) application."""

from finetune_studio.ui.app import main

if __name__ == "__main__":
    raise SystemExit(main())
