"""Long reliability trials, run on demand (--run-slow or LANDSCAPE_SLOW=1)."""
