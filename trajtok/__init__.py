"""TrajTok: an end-to-end trajectory video tokenizer and the models built on it."""

from trajtok.tokens import TrajectoryTokens

__all__ = ["TrajectoryTokens"]
__version__ = "0.1.0"
