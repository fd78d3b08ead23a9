"""HDF5 storage: one schema per result kind, each in its own module (``landscape.store.surface`` …).

This package depends on nothing of ours but the version and the error type; analyses hand it plain arrays and
attributes, plots read through it.
"""

from landscape.store._h5 import (
    atomic_h5,
    read_attrs,
    read_schema,
    require_schema,
    write_attrs,
)

__all__ = ["atomic_h5", "read_attrs", "read_schema", "require_schema", "write_attrs"]
