"""Finetune Studio: transfer learning on images, as a desktop application."""

__version__ = "0.1.0"
