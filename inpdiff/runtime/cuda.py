"""The little of CUDA the TensorRT backend needs, through cuda-python (`cuda.bindings.runtime`), as
NVIDIA's own TensorRT samples do: device and pinned host buffers, a stream, and graph capture.
Imported lazily; without cuda-python (or without a GPU) `device_count()` is 0 and nothing else runs."""
from __future__ import annotations

import ctypes
from contextlib import contextmanager

import numpy as np


class CudaError(RuntimeError):
    pass


def _rt():
    from cuda.bindings import runtime

    return runtime


def check(result):
    """cuda-python returns (error, *values): raise on an error, else return the value(s)."""
    rt = _rt()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != rt.cudaError_t.cudaSuccess:
        raise CudaError(f"{rt.cudaGetErrorName(err)[1].decode()}: {rt.cudaGetErrorString(err)[1].decode()}")
    return values[0] if len(values) == 1 else (values or None)


def device_count() -> int:
    try:
        rt = _rt()
    except ImportError:
        return 0
    err, n = rt.cudaGetDeviceCount()
    return n if err == rt.cudaError_t.cudaSuccess else 0


def device_properties(device: int = 0) -> tuple[str, str]:
    """(name, compute capability "major.minor") of a CUDA device."""
    props = check(_rt().cudaGetDeviceProperties(device))
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return name.split("\0")[0].strip(), f"{props.major}.{props.minor}"


class DeviceBuffer:
    def __init__(self, nbytes: int):
        self.nbytes = int(nbytes)
        self.ptr = int(check(_rt().cudaMalloc(self.nbytes)))

    def at(self, offset: int) -> int:
        return self.ptr + int(offset)

    def free(self) -> None:
        if self.ptr:
            check(_rt().cudaFree(self.ptr))
            self.ptr = 0


class HostBuffer:
    """Pinned (page-locked) host memory with a numpy view: copies from it are truly asynchronous,
    and a captured copy reads whatever it holds at each replay."""

    def __init__(self, shape: tuple[int, ...], dtype):
        self.dtype = np.dtype(dtype)
        self.nbytes = int(np.prod(shape)) * self.dtype.itemsize
        self.ptr = int(check(_rt().cudaMallocHost(self.nbytes)))
        raw = (ctypes.c_byte * self.nbytes).from_address(self.ptr)
        self.array = np.frombuffer(raw, dtype=self.dtype).reshape(shape)

    def free(self) -> None:
        if self.ptr:
            self.array = None
            check(_rt().cudaFreeHost(self.ptr))
            self.ptr = 0


class Stream:
    def __init__(self):
        self.handle = check(_rt().cudaStreamCreate())

    @property
    def ptr(self) -> int:
        return int(self.handle)

    def htod(self, dst: int, src: int, nbytes: int) -> None:
        rt = _rt()
        check(rt.cudaMemcpyAsync(dst, src, nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self.handle))

    def dtoh(self, dst: int, src: int, nbytes: int) -> None:
        rt = _rt()
        check(rt.cudaMemcpyAsync(dst, src, nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.handle))

    def zero(self, dst: int, nbytes: int) -> None:
        check(_rt().cudaMemsetAsync(dst, 0, nbytes, self.handle))

    def synchronize(self) -> None:
        check(_rt().cudaStreamSynchronize(self.handle))

    def free(self) -> None:
        if self.handle is not None:
            check(_rt().cudaStreamDestroy(self.handle))
            self.handle = None


class Graph:
    """An instantiated CUDA graph: `with Graph.capture(stream) as g:` records what is enqueued on the
    stream inside the block; `g.launch()` replays it."""

    def __init__(self, stream: Stream):
        self.stream, self.exec = stream, None

    @classmethod
    @contextmanager
    def capture(cls, stream: Stream):
        rt = _rt()
        graph = cls(stream)
        check(rt.cudaStreamBeginCapture(stream.handle, rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal))
        try:
            yield graph
        finally:  # always end the capture, or the stream stays unusable
            captured = check(rt.cudaStreamEndCapture(stream.handle))
        graph.exec = check(rt.cudaGraphInstantiate(captured, 0))
        check(rt.cudaGraphDestroy(captured))

    def launch(self) -> None:
        check(_rt().cudaGraphLaunch(self.exec, self.stream.handle))

    def free(self) -> None:
        if self.exec is not None:
            check(_rt().cudaGraphExecDestroy(self.exec))
            self.exec = None
