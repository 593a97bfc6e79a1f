from finetune_studio.cli import main

raise SystemExit(main())
