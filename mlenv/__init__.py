"""mlenv: reproducible, content-addressed machine-learning environments."""

__version__ = "0.1.0"
