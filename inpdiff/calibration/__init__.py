"""INT8 calibration of the exported graphs. Not built yet."""
