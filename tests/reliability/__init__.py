"""Reliability suite: bad inputs, kill -9 and resume, concurrent writers, write failures (issue 15)."""
