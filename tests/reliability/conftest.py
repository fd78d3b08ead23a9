"""Fixtures of the reliability suite (defined in _support.py, shared with tests/slow)."""

from ._support import cli, tiny_ckpt, tiny_run, tiny_se_ckpt

__all__ = ["cli", "tiny_ckpt", "tiny_run", "tiny_se_ckpt"]
