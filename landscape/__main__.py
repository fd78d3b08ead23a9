"""``python -m landscape …`` (and ``torchrun -m landscape …``): the ``landscape`` command line."""

from landscape.cli import main

if __name__ == "__main__":
    main(prog_name="landscape")
