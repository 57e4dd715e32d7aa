"""Per-component ONNX export (condition graph, denoising-step graph). Not built yet."""
