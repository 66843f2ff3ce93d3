import BraidGraph
import BraidKeras
import Foundation
import XCTest

/// Broken files give one clear error each (issue 3, item 8); fixtures from
/// tools/make-keras-fixtures, truncation made here.
final class KerasBadInputTests: XCTestCase {
    func expectError(_ fixture: String, _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
        let message = errorText { try importKeras(path: KerasFixtures.path(fixture)) }
        guard let message else { return XCTFail("\(fixture) imported without error", file: file, line: line) }
        for f in fragments {
            XCTAssertTrue(message.contains(f), "'\(message)' lacks '\(f)'", file: file, line: line)
        }
    }

    func testMissingFile() {
        let message = errorText { try importKeras(path: "/nonexistent/model.h5") }
        XCTAssertEqual(message, "/nonexistent/model.h5: no such file")
    }

    func testHDF5FileThatIsNotAKerasModel() {
        expectError("bad_not_keras.h5", ["bad_not_keras.h5", "not a Keras model", "model_config"])
    }

    func testMissingWeight() {
        expectError("bad_missing_weight.h5", ["(Dense, position 1)", "missing weight", "expected 2 weights"])
    }

    func testWeightOfWrongShape() {
        expectError("bad_wrong_shape.h5", ["(Dense, position 1)", "kernel", "[11, 16]", "expected [10, 16]"])
    }

    func testConfigNamingALayerThatDoesNotExist() {
        expectError("bad_unknown_ref.h5", ["position 3", "no_such_layer", "not a layer of the model"])
    }

    func testUnknownLayerClass() {
        expectError("bad_unknown_class.h5", ["FancyLayer, position 3", "unsupported layer class 'FancyLayer'"])
    }

    func testLambdaLayer() {
        expectError("bad_lambda.h5", ["layer 'double' (Lambda, position 2)", "Lambda"])
    }

    func testTruncatedFiles() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: KerasFixtures.path("func_xception.h5")))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("braid-keras-bad-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for fraction in [0.0, 0.01, 0.3, 0.7, 0.95] {
            let url = dir.appendingPathComponent("cut\(fraction).h5")
            try data.prefix(Int(Double(data.count) * fraction)).write(to: url)
            let message = errorText { try importKeras(path: url.path) }
            XCTAssertNotNil(message, "a file cut at \(fraction) imported")
            XCTAssertTrue(message?.hasPrefix(url.path) == true, message ?? "")
        }
        let zipData = try Data(contentsOf: URL(fileURLWithPath: KerasFixtures.path("func_xception.keras")))
        for fraction in [0.1, 0.5, 0.9] {
            let url = dir.appendingPathComponent("cut\(fraction).keras")
            try zipData.prefix(Int(Double(zipData.count) * fraction)).write(to: url)
            let message = errorText { try importKeras(path: url.path) }
            XCTAssertNotNil(message, "a .keras cut at \(fraction) imported")
        }
    }

    func testConfigFileThatIsNotJSON() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("braid-bad-\(UUID().uuidString).json")
        try Data("{not json".utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let message = errorText { try importKeras(configPath: url.path, weightsPath: KerasFixtures.path("seq_mlp.weights.h5")) }
        XCTAssertTrue(message?.contains("not a JSON object") == true, message ?? "no error")
    }
}
