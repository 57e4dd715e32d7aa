"""INT8 calibration of the exported graphs: `inpdiff calibrate` (quantize.py), its data (collect.py),
the per-layer sensitivity (sensitivity.py) and the accuracy and speed report (report.py)."""
