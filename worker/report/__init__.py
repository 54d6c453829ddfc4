"""The HTML report: pure rendering (render.py, charts.py, cohort_grid.py) and the loader that feeds it."""
