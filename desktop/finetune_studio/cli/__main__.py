from finetune_studio.cli import run

run()
