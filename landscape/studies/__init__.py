"""Studies: a TOML file declaring models, seeds and analyses (``spec``), run as resumable units (``runner``).

The bundled studies (``digits_demo.toml``, ``digits_demo_quick.toml``) sit in this folder.
"""

from landscape.studies.runner import run_study, units
from landscape.studies.spec import BUNDLED, check_study, load_study

__all__ = ["BUNDLED", "check_study", "load_study", "run_study", "units"]
