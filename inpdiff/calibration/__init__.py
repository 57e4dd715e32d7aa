"""Reduced precision in the ONNX: INT8 calibration (`inpdiff calibrate`: quantize.py, its data in
collect.py, the per-layer sensitivity in sensitivity.py), FP16 conversion (`inpdiff fp16`: fp16.py),
and the accuracy and speed report of both against FP32 (report.py)."""
