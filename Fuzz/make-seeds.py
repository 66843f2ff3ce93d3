#!/usr/bin/env python3
"""Writes the committed fuzz seeds in Fuzz/corpus (run from anywhere; output is committed).

Tiny inputs made here, no third-party data: .npy files of every dtype and header version
(numpy), ONNX models built with onnx.helper (random weights of a few elements), and a
progressive JPEG from the BraidDataTests fixture (cjpeg). Keras seeds come from the
BraidKerasTests fixtures at run time (tools/fuzz).
"""
import subprocess
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent / "corpus"
rng = np.random.default_rng(7)


def npy_seeds():
    d = HERE / "npy"
    d.mkdir(parents=True, exist_ok=True)
    arrays = {
        "f4_2x3": rng.standard_normal((2, 3)).astype("<f4"),
        "f8_3": rng.standard_normal(3),
        "f2_2x2": rng.standard_normal((2, 2)).astype("<f2"),
        "i8_4": np.arange(4, dtype="<i8"),
        "i4_2x1": np.array([[1], [-2]], dtype="<i4"),
        "u1_5": np.arange(5, dtype="u1"),
        "b1_3": np.array([True, False, True]),
        "f4_scalar": np.array(1.5, dtype="<f4"),
        "f4_empty": np.zeros((0, 3), dtype="<f4"),
    }
    for name, a in arrays.items():
        np.save(d / f"{name}.npy", a)
    for version in [(2, 0), (3, 0)]:
        with open(d / f"v{version[0]}_f4.npy", "wb") as f:
            np.lib.format.write_array(f, arrays["f4_2x3"], version=version)


def model(nodes, inputs, outputs, inits=(), opset=13):
    g = helper.make_graph(nodes, "seed", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)],
                             producer_name="braid-fuzz-seed")


def onnx_seeds():
    d = HERE / "onnx"
    d.mkdir(parents=True, exist_ok=True)
    f = TensorProto.FLOAT
    x = helper.make_tensor_value_info("x", f, ["N", 1, 4, 4])
    w = numpy_helper.from_array(rng.standard_normal((2, 1, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(2).astype(np.float32), "b")
    fc = numpy_helper.from_array(rng.standard_normal((8, 3)).astype(np.float32), "fc")
    shape = numpy_helper.from_array(np.array([-1, 8], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[0, 0, 0, 0], strides=[1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[1, 1]),
        helper.make_node("Reshape", ["p", "shape"], ["flat"]),
        helper.make_node("MatMul", ["flat", "fc"], ["y0"]),
        helper.make_node("Softmax", ["y0"], ["y"], axis=1),
    ]
    y = helper.make_tensor_value_info("y", f, ["N", 3])
    onnx.save(model(nodes, [x], [y], [w, b, fc, shape]), d / "conv_relu_pool_matmul.onnx")

    x2 = helper.make_tensor_value_info("x", f, [1, 3, 2, 2])
    scale = numpy_helper.from_array(np.ones(3, dtype=np.float16), "scale")
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i0"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
        helper.make_node("Concat", ["n1", "m1"], ["ns"], axis=0),
        helper.make_node("Cast", ["scale"], ["scale32"], to=f),
        helper.make_node("BatchNormalization", ["x", "scale32", "bias", "mean", "var"], ["bn"]),
        helper.make_node("GlobalAveragePool", ["bn"], ["g"]),
        helper.make_node("Reshape", ["g", "ns"], ["y"]),
    ]
    inits = [scale,
             numpy_helper.from_array(np.array(0, dtype=np.int64), "i0"),
             numpy_helper.from_array(np.array([0], dtype=np.int64), "ax"),
             numpy_helper.from_array(np.array([-1], dtype=np.int64), "m1"),
             helper.make_tensor("bias", f, [3], [0.1, 0.2, 0.3]),
             helper.make_tensor("mean", f, [3], [0.0, 0.0, 0.0]),
             helper.make_tensor("var", f, [3], [1.0, 1.0, 1.0])]
    y2 = helper.make_tensor_value_info("y", f, [1, 3])
    onnx.save(model(nodes, [x2], [y2], inits), d / "shape_chain_batchnorm.onnx")

    # An If with two subgraphs (nesting), and a Constant holding a tensor attribute.
    then_g = helper.make_graph([helper.make_node("Neg", ["x"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", f, [2])])
    else_g = helper.make_graph([helper.make_node("Abs", ["x"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", f, [2])])
    nodes = [
        helper.make_node("Constant", [], ["k"], value=helper.make_tensor("kv", TensorProto.BOOL, [], [True])),
        helper.make_node("If", ["k"], ["y"], then_branch=then_g, else_branch=else_g),
    ]
    onnx.save(model(nodes, [helper.make_tensor_value_info("x", f, [2])],
                    [helper.make_tensor_value_info("y", f, [2])]), d / "if_subgraphs.onnx")

    nodes = [helper.make_node("Gemm", ["x", "gw", "gb"], ["y"], transB=1, alpha=0.5),
             helper.make_node("Clip", ["y", "lo", "hi"], ["z"])]
    inits = [numpy_helper.from_array(rng.standard_normal((2, 3)).astype(np.float64), "gw"),
             numpy_helper.from_array(np.zeros(2, dtype=np.float32), "gb"),
             numpy_helper.from_array(np.array(-1, dtype=np.float32), "lo"),
             numpy_helper.from_array(np.array(1, dtype=np.float32), "hi")]
    m = model(nodes, [helper.make_tensor_value_info("x", f, [1, 3])],
              [helper.make_tensor_value_info("z", f, [1, 2])], inits)
    onnx.save(m, d / "gemm_clip_double_weights.onnx")

    t = numpy_helper.from_array(rng.standard_normal((2, 2)).astype(np.float32), "ext")
    t.data_location = TensorProto.EXTERNAL
    del t.external_data[:]
    for k, v in [("location", "weights.bin"), ("offset", "0"), ("length", "16")]:
        e = t.external_data.add()
        e.key, e.value = k, v
    t.ClearField("raw_data")
    m = model([helper.make_node("Add", ["x", "ext"], ["y"])],
              [helper.make_tensor_value_info("x", f, [2, 2])],
              [helper.make_tensor_value_info("y", f, [2, 2])], [t])
    with open(d / "external_data.onnx", "wb") as out:
        out.write(m.SerializeToString())

    (d / "tensor_int64.pb").write_bytes(
        numpy_helper.from_array(np.arange(6, dtype=np.int64).reshape(2, 3), "t").SerializeToString())


def image_seeds():
    d = HERE / "image"
    d.mkdir(parents=True, exist_ok=True)
    ppm = HERE.parent.parent / "Tests/BraidDataTests/Fixtures/rgb.jpg.ppm"
    with open(d / "rgb_progressive.jpg", "wb") as out:
        subprocess.run(["cjpeg", "-progressive", "-quality", "80", str(ppm)], stdout=out, check=True)
    with open(d / "rgb_restart.jpg", "wb") as out:
        subprocess.run(["cjpeg", "-restart", "1", "-sample", "2x2", str(ppm)], stdout=out, check=True)


if __name__ == "__main__":
    npy_seeds()
    onnx_seeds()
    image_seeds()
