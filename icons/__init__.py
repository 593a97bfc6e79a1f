"""Application icons, installed as the package ``finetune_studio.icons``."""
