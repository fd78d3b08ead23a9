"""The study report: statistics over seeds, the paper's claims with verdicts, and the figure set.

``write_report(folder)`` writes ``report.md`` and ``report.json``; ``draw_figures(folder, out=…)`` the figures.
Both read only the study's stored files (``landscape.report.collect``).
"""

from landscape.report.figures import draw_figures
from landscape.report.write import build_report, verdict_table, write_report

__all__ = ["build_report", "draw_figures", "verdict_table", "write_report"]
