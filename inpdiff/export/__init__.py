"""Per-component ONNX export: condition.onnx, denoise_step.onnx and their manifest, with checks."""
