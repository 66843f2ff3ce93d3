@testable import BraidONNX
import XCTest

final class OpTableTests: XCTestCase {
    /// Each op's first opset, from onnx 1.23.2:
    /// `[d.get_schema(op, v, '').since_version for the lowest v that exists]` over onnx.defs.
    private let firstVersion: [String: Int] = [
        "Add": 1, "Sub": 1, "Mul": 1, "Div": 1, "Pow": 1, "Max": 1, "Min": 1, "Sum": 1, "Mean": 1, "Mod": 10,
        "Neg": 1, "Abs": 1, "Sqrt": 1, "Exp": 1, "Log": 1, "Reciprocal": 1, "Floor": 1, "Ceil": 1, "Round": 11,
        "Sign": 9, "Sin": 7, "Cos": 7, "Tan": 7, "Asin": 7, "Acos": 7, "Atan": 7, "Sinh": 9, "Cosh": 9,
        "Asinh": 9, "Acosh": 9, "Atanh": 9, "Erf": 9, "Relu": 1, "Sigmoid": 1, "Tanh": 1, "Softplus": 1,
        "Softsign": 1, "HardSwish": 14, "Mish": 18, "Not": 1, "IsNaN": 9, "IsInf": 10, "LeakyRelu": 1, "Elu": 1,
        "Celu": 12, "Selu": 1, "ThresholdedRelu": 10, "HardSigmoid": 1, "Gelu": 20, "Shrink": 9, "Equal": 1,
        "Less": 1, "Greater": 1, "LessOrEqual": 12, "GreaterOrEqual": 12, "And": 1, "Or": 1, "Xor": 1,
        "BitShift": 11, "Where": 9, "Clip": 1, "PRelu": 1, "Cast": 1, "Conv": 1, "ConvTranspose": 1, "Gemm": 1,
        "MatMul": 1, "BatchNormalization": 1, "InstanceNormalization": 1, "LayerNormalization": 17, "MaxPool": 1,
        "AveragePool": 1, "LpPool": 1, "GlobalAveragePool": 1, "GlobalMaxPool": 1, "GlobalLpPool": 1, "LRN": 1, "Softmax": 1,
        "LogSoftmax": 1, "Hardmax": 1, "Dropout": 1, "Reshape": 1, "Flatten": 1, "Transpose": 1, "Concat": 1,
        "Split": 1, "Slice": 1, "Gather": 1, "GatherElements": 11, "Shape": 1, "Size": 1, "ConstantOfShape": 9,
        "Unsqueeze": 1, "Squeeze": 1, "Expand": 8, "Tile": 1, "Pad": 1, "Resize": 10, "Upsample": 1, "Range": 11,
        "DepthToSpace": 1, "SpaceToDepth": 1, "ArgMax": 1, "ArgMin": 1, "ReduceSum": 1, "ReduceMean": 1,
        "ReduceMax": 1, "ReduceMin": 1, "ReduceProd": 1, "ReduceL1": 1, "ReduceL2": 1, "ReduceLogSum": 1,
        "ReduceLogSumExp": 1, "ReduceSumSquare": 1, "Identity": 1, "Constant": 1,
        "GatherND": 11, "ScatterND": 11, "ScatterElements": 11, "Scatter": 9, "CumSum": 11, "CumProd": 26,
        "TopK": 1, "OneHot": 9, "Trilu": 14, "BitwiseAnd": 18, "BitwiseOr": 18, "BitwiseXor": 18,
        "BitwiseNot": 18, "Einsum": 12, "CastLike": 15, "Swish": 24, "SwiGLU": 28, "RotaryEmbedding": 23,
        "RMSNormalization": 23, "LpNormalization": 1, "EyeLike": 9, "NegativeLogLikelihoodLoss": 12,
        "SoftmaxCrossEntropyLoss": 12, "Attention": 23, "QuantizeLinear": 10, "DequantizeLinear": 10,
        "QLinearMatMul": 10, "QLinearConv": 10, "ConvInteger": 10, "MatMulInteger": 10,
        "DynamicQuantizeLinear": 11, "GridSample": 16, "Compress": 9, "Unique": 11, "CenterCropPad": 18,
        "HannWindow": 17, "HammingWindow": 17, "BlackmanWindow": 17, "BitCast": 26, "GroupNormalization": 18,
        "MeanVarianceNormalization": 9, "AffineGrid": 20, "RNN": 1, "GRU": 1, "LSTM": 1, "DFT": 17, "Col2Im": 18, "ReverseSequence": 10, "STFT": 17, "NonMaxSuppression": 10, "CausalConvWithState": 27, "LinearAttention": 27, "TensorScatter": 24, "Det": 11, "MaxUnpool": 9,
    ]

    /// Versions Braid deliberately starts later, each with its reason.
    private let laterStart: [String: Int] = [
        "Tile": 6,  // Tile-1 took `tiles` and `axis` inputs with different semantics
        "RNN": 7, "GRU": 7, "LSTM": 7,  // versions 1-3 had an `output_sequence` attribute, not read
    ]

    func testEveryListedOpIsRegisteredFromItsFirstVersion() {
        XCTAssertEqual(Set(onnxOpTable.keys), Set(firstVersion.keys))
        for (op, first) in firstVersion {
            XCTAssertEqual(onnxOpTable[op]?.first?.since, laterStart[op] ?? first, op)
            XCTAssertNotNil(lookupOp(op, opset: maxSupportedOpset), op)
            XCTAssertNil(lookupOp(op, opset: (laterStart[op] ?? first) - 1), op)
        }
    }

    func testVersionsAreAscendingAndDistinct() {
        for (op, versions) in onnxOpTable {
            let since = versions.map(\.since)
            XCTAssertEqual(since, since.sorted(), op)
            XCTAssertEqual(Set(since).count, since.count, op)
        }
    }

    func testVersionBoundariesPickTheRightEntry() {
        XCTAssertEqual(lookupOp("Softmax", opset: 12)?.since, 1)
        XCTAssertEqual(lookupOp("Softmax", opset: 13)?.since, 13)
        XCTAssertEqual(lookupOp("Clip", opset: 10)?.since, 1)
        XCTAssertEqual(lookupOp("Clip", opset: 11)?.since, 11)
        XCTAssertEqual(lookupOp("ReduceSum", opset: 12)?.since, 1)
        XCTAssertEqual(lookupOp("ReduceSum", opset: 13)?.since, 13)
        XCTAssertEqual(lookupOp("ReduceMean", opset: 17)?.since, 1)
        XCTAssertEqual(lookupOp("ReduceMean", opset: 18)?.since, 18)
        XCTAssertEqual(lookupOp("Split", opset: 17)?.since, 13)
        XCTAssertEqual(lookupOp("Resize", opset: 12)?.since, 11)
        XCTAssertEqual(lookupOp("Unsqueeze", opset: 12)?.since, 1)
        XCTAssertEqual(lookupOp("Unsqueeze", opset: 13)?.since, 13)
        XCTAssertEqual(lookupOp("Pad", opset: 10)?.since, 1)
        XCTAssertEqual(lookupOp("Slice", opset: 9)?.since, 1)
        XCTAssertEqual(lookupOp("Slice", opset: 10)?.since, 10)
    }
}
