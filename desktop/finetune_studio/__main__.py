"""``python -m finetune_studio`` opens the window."""

from finetune_studio.ui.app import main

raise SystemExit(main())
