"""The long reliability trials reuse the fast suite's support code and fixtures (tests/reliability)."""

from reliability._support import cli, tiny_ckpt, tiny_run, tiny_se_ckpt

__all__ = ["cli", "tiny_ckpt", "tiny_run", "tiny_se_ckpt"]
