"""Application resources, installed as the package ``finetune_studio.resources``."""
