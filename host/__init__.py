"""slingshot host orchestrator: quantize, compile, flash, attack, evaluate."""

__version__ = "0.1.0"
