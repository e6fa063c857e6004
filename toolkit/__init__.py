"""CenterFace multi-target deployment toolkit."""

__version__ = "0.1.0"
PROJECT = "centerface-toolkit"
