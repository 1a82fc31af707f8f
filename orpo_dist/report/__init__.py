"""Pictures and reports of a run: training curves (plots.py, training.py), `orpo-dist report`."""
