// The types a program using BraidRuntime handles directly: tensors, the graph IR (inputs,
// outputs, passes) and image input specifications.
@_exported import BraidData
@_exported import BraidGraph
@_exported import BraidTensor
@_exported import struct BraidONNX.UnsupportedNode
