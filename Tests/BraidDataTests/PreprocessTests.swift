import BraidData
import BraidTensor
import Foundation
import XCTest
import BraidTestSupport

/// `PreprocessOverride`: each setting parsed and checked in one place, presets, metadata,
/// and what an applied override does to pixels.
final class PreprocessTests: XCTestCase {
    /// One 2x1 RGB image: pixel 0 is (10, 20, 30), pixel 1 is (255, 0, 128).
    private let image = Tensor(shape: [3, 1, 2], floats: [10, 255, 20, 0, 30, 128])

    private func adapted(_ o: PreprocessOverride, layout: InputLayout = .nchw) throws -> [Float] {
        let base = InputSpec(channels: 3, height: 1, width: 2, layout: layout)
        return try o.applied(to: base).adapt(image).floatArray
    }

    func testPresetsGiveTheirConventions() throws {
        var caffe = PreprocessOverride()
        try caffe.set(.preprocess, "caffe")
        // BGR order, 0-255, BGR means.
        assertClose(try adapted(caffe), [30 - 103.939, 128 - 103.939, 20 - 116.779, 0 - 116.779, 10 - 123.68, 255 - 123.68], tolerance: 1e-4)
        var inception = PreprocessOverride()
        try inception.set(.preprocess, "inception")
        assertClose(try adapted(inception), [10 / 127.5 - 1, 1, 20 / 127.5 - 1, -1, 30 / 127.5 - 1, 128 / 127.5 - 1], tolerance: 1e-4)
        var imagenet = PreprocessOverride()
        try imagenet.set(.preprocess, "IMAGENET")
        assertClose(try adapted(imagenet), [(10 / 255 - 0.485) / 0.229, (1 - 0.485) / 0.229,
                                            (20 / 255 - 0.456) / 0.224, (0 - 0.456) / 0.224,
                                            (30 / 255 - 0.406) / 0.225, (128 / 255 - 0.406) / 0.225], tolerance: 1e-4)
        var none = PreprocessOverride()
        try none.set(.preprocess, "none")
        assertClose(try adapted(none), [10, 255, 20, 0, 30, 128], tolerance: 1e-4)
    }

    /// A setting after a preset replaces that part of it; a range with a mean subtracts both.
    func testSettingsCombine() throws {
        var o = PreprocessOverride()
        try o.set(.preprocess, "imagenet")
        try o.set(.mean, "0.5")
        try o.set(.std, " 0.5 ")
        try o.set(.channelOrder, "BGR")
        try o.set(.layout, "nhwc")
        XCTAssertEqual(o.layout, .nhwc)
        XCTAssertEqual(o.fields, [.layout, .range, .mean, .std, .channelOrder])
        assertClose(try adapted(o, layout: .nhwc), [(30 / 255 - 0.5) / 0.5, (20 / 255 - 0.5) / 0.5, (10 / 255 - 0.5) / 0.5,
                                                    (128 / 255 - 0.5) / 0.5, -1, 1], tolerance: 1e-4)
        var r = PreprocessOverride()
        try r.set(.range, "-1-1")
        try r.set(.mean, "1")
        assertClose(try adapted(r), [10 / 127.5 - 2, 0, 20 / 127.5 - 2, -2, 30 / 127.5 - 2, 128 / 127.5 - 2], tolerance: 1e-4)
        try r.set(.scale, "2")
        XCTAssertNil(r.range, "a scale replaces the range")
        assertClose(try adapted(r), [19, 509, 39, -1, 59, 255], tolerance: 1e-4)
        XCTAssertEqual(try r.applied(to: InputSpec(channels: 3, height: 1, width: 1)).range, nil)
        XCTAssertEqual(try imagenetSpec().range, .unit)
    }

    private func imagenetSpec() throws -> InputSpec {
        var o = PreprocessOverride()
        try o.set(.preprocess, "imagenet")
        return try o.applied(to: InputSpec(channels: 3, height: 1, width: 1))
    }

    func testBadValuesNameTheSettingAndWhatItTakes() {
        let cases: [(PreprocessOverride.Key, String, String)] = [
            (.mean, "1,2", "mean takes 1 or 3"), (.mean, "a,b,c", "mean takes 1 or 3"), (.std, "1,0,1", "std takes non-zero"),
            (.scale, "-3", "scale takes a positive"), (.scale, "nan", "scale takes a positive"),
            (.range, "0-2", "range takes 0-1, 0-255, -1-1"), (.channelOrder, "rbg", "channel-order takes rgb or bgr"),
            (.layout, "chw", "layout takes nchw or nhwc"), (.preprocess, "torch", "preprocess takes imagenet, caffe, inception, none"),
        ]
        for (key, text, expected) in cases {
            var o = PreprocessOverride()
            XCTAssertThrowsError(try o.set(key, text)) { e in
                XCTAssertTrue("\(e)".hasPrefix(expected), "\(e)")
                XCTAssertTrue("\(e)".contains("'\(text)'"), "\(e)")
            }
            XCTAssertTrue(o.isEmpty, "a rejected value sets nothing")
        }
        // Three means for a one-channel input.
        var o = PreprocessOverride()
        XCTAssertNoThrow(try o.set(.mean, "1,2,3"))
        XCTAssertThrowsError(try o.applied(to: InputSpec(channels: 1, height: 4, width: 4)))
    }

    func testMetadataKeys() throws {
        XCTAssertNil(try PreprocessOverride(metadata: ["producer": "x"]))
        // Braid's ensemble exports: raw pixels, NCHW.
        let braid = try XCTUnwrap(try PreprocessOverride(metadata: ["meta.input_range": "0..255", "meta.input_layout": "NCHW"]))
        XCTAssertEqual(braid, PreprocessOverride(range: .byte, layout: .nchw))
        let full = try XCTUnwrap(try PreprocessOverride(metadata: ["input_range": "-1..1", "input_mean": "0.1,0.2,0.3",
                                                                   "input_std": "2", "input_channel_order": "BGR"]))
        XCTAssertEqual(full, PreprocessOverride(mean: [0.1, 0.2, 0.3], std: [2], range: .symmetric, bgr: true))
        XCTAssertThrowsError(try PreprocessOverride(metadata: ["input_range": "0..2"])) { e in
            XCTAssertTrue("\(e)".contains("metadata input_range"), "\(e)")
        }
    }

    func testCodableRoundTrip() throws {
        var o = PreprocessOverride()
        try o.set(.preprocess, "caffe")
        try o.set(.layout, "nhwc")
        let back = try JSONDecoder().decode(PreprocessOverride.self, from: JSONEncoder().encode(o))
        XCTAssertEqual(back, o)
    }
}
