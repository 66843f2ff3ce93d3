#!/usr/bin/env python3
"""Compare Braid's output with onnxruntime's: worst error and, for class scores, the
predicted class of each row."""
import sys

import numpy as np

got, ref = np.load(sys.argv[1]), np.load(sys.argv[2])
err = np.max(np.minimum(np.abs(got - ref), np.abs(got - ref) / np.maximum(np.abs(ref), 1e-12)))
line = f"output {got.shape}: worst error vs onnxruntime {err:.2e}"
if got.ndim == 2:
    line += f"; predicted classes {got.argmax(1).tolist()} (onnxruntime {ref.argmax(1).tolist()})"
print(line)
