"""Channel padding for the CPU form. ONNX Runtime's x86 convolutions work in blocks of 16 channels
(NCHWc); a convolution whose output channels are not a multiple of that is followed by a conversion of
its whole output to the plain layout. The ACN's full-resolution high-pass convolution has 15 outputs,
and that conversion (ReorderOutput) took 15% of the CPU INT8 condition graph. A zero filter in the
convolution and a zero input channel in the convolutions that read it change no result and remove it.

Only what is safe to pad is padded: a float convolution with constant weights and bias (one group)
whose output reaches nothing but such convolutions, through Relu or a Clip that keeps 0 at 0."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper


def pad_conv_outputs(model: onnx.ModelProto, multiple: int = 16) -> list[str]:
    """Pads, in place, every convolution that qualifies; returns their names."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}

    def constant(name: str) -> onnx.TensorProto | None:  # an initializer or a Constant node's value
        if name in inits:
            return inits[name]
        node = producer.get(name)
        return onnx.helper.get_attribute_value(node.attribute[0]) if node is not None and node.op_type == "Constant" else None

    def plain_conv(n) -> bool:
        w = constant(n.input[1]) if n.op_type == "Conv" else None
        return (w is not None and w.data_type == onnx.TensorProto.FLOAT and all(a.name != "group" or a.i == 1 for a in n.attribute)
                and (len(n.input) < 3 or not n.input[2] or constant(n.input[2]) is not None))

    def bound(n, i: int, default: float) -> float:  # a Clip's bound; nan where it is not a constant
        name = n.input[i] if len(n.input) > i else ""
        t = constant(name) if name else None
        return default if not name else float(numpy_helper.to_array(t)) if t is not None else float("nan")

    def keeps_zero(n) -> bool:
        return n.op_type == "Relu" or (n.op_type == "Clip" and bound(n, 1, -np.inf) <= 0 <= bound(n, 2, np.inf))

    def readers(tensor: str, passed: list[str]) -> list | None:
        """The convolutions that read `tensor` (collecting the tensors passed on the way), or None
        where anything else does."""
        if tensor in outputs:
            return None
        found = []
        for n in consumers.get(tensor, []):
            if n.op_type == "Conv" and n.input[0] == tensor and plain_conv(n):
                found.append(n)
            elif keeps_zero(n) and n.input[0] == tensor:
                passed.append(n.output[0])
                more = readers(n.output[0], passed)
                if more is None:
                    return None
                found += more
            else:
                return None
        return found

    padded, stale = [], set()
    for n in list(g.node):
        passed = [n.output[0]]
        if not plain_conv(n) or constant(n.input[1]).dims[0] % multiple == 0:
            continue
        convs = readers(n.output[0], passed)
        if not convs:
            continue
        extra = -constant(n.input[1]).dims[0] % multiple
        targets = [(n, i, 0) for i in (1, 2) if i < len(n.input) and n.input[i]]  # its weight and bias
        targets += [(c, 1, 1) for c in {c.name: c for c in convs}.values()]  # its readers' weights
        for node, i, axis in targets:
            t = _pad(g, node, i, constant(node.input[i]), axis, extra)
            inits[t.name] = t  # a reader padded here may be padded again as a producer later
        padded.append(n.name)
        stale.update(passed)
    keep = [v for v in g.value_info if v.name not in stale]  # shapes recorded before the padding
    del g.value_info[:]
    g.value_info.extend(keep)
    used = {i for n in g.node for i in n.input}  # what the padded tensors replaced, where nothing else reads it
    for items, unused in ((g.initializer, lambda t: t.name not in used),
                          (g.node, lambda n: n.op_type == "Constant" and n.output[0] not in used)):
        kept = [x for x in items if not unused(x)]
        del items[:]
        items.extend(kept)
    return padded


def pad_conv_file(path: Path) -> None:
    """pad_conv_outputs on the graph in `path`, in place."""
    model = onnx.load(str(path))
    if pad_conv_outputs(model):
        onnx.save(model, str(path))


def _pad(g, node, i: int, t: onnx.TensorProto, axis: int, extra: int) -> onnx.TensorProto:
    """Node's input i (`t`) with `extra` zeros along `axis`, as a tensor of its own: the exporter
    shares equal constants (zero biases, say) between nodes, which must not change with it."""
    a = numpy_helper.to_array(t)
    zeros = np.zeros([extra if k == axis else d for k, d in enumerate(a.shape)], a.dtype)
    name = f"{node.input[i]}/padded:{node.name}"
    g.initializer.append(numpy_helper.from_array(np.concatenate([a, zeros], axis=axis), name))
    node.input[i] = name
    return g.initializer[-1]
