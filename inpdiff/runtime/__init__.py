"""The lean runtime: numpy, OpenCV and an inference backend; never torch, never training code."""
