import BraidKeras
import Foundation
import XCTest

/// Inputs that crashed, hung or exhausted the Keras importer (found by tools/fuzz or by
/// review, kept in Fuzz/regressions): whole files under keras-h5, JSON configs under
/// keras-config. Each must now be refused with a `KerasError`.
final class KerasFuzzRegressionTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Fuzz/regressions").standardized.path

    private func inputs(_ target: String) throws -> [String] {
        let dir = "\(Self.folder)/\(target)"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.sorted().map { "\(dir)/\($0)" }
    }

    func testEveryModelFileRegressionIsAnError() throws {
        for path in try inputs("keras-h5") {
            XCTAssertThrowsError(try importKeras(path: path), path) { error in
                XCTAssertTrue(error is KerasError, "\(path): \(error)")
            }
        }
    }

    /// Configs are imported against every fixture's weights, as the fuzz target does.
    func testEveryConfigRegressionIsAnError() throws {
        let configs = try inputs("keras-config")
        XCTAssertFalse(configs.isEmpty)
        let weights = ["seq_mlp.h5", "func_nested.h5", "func_merges.h5"].map(KerasFixtures.path)
        for config in configs {
            for w in weights {
                XCTAssertThrowsError(try importKeras(configPath: config, weightsPath: w), config) { error in
                    XCTAssertTrue(error is KerasError, "\(config): \(error)")
                }
            }
        }
    }

    func testDeeplyNestedModelsAreRefused() {
        let config = "\(Self.folder)/keras-config/review-nested-40-deep.json"
        XCTAssertThrowsError(try importKeras(configPath: config, weightsPath: KerasFixtures.path("seq_mlp.h5"))) {
            XCTAssertTrue("\($0)".contains("nested more than 32 models deep"), "\($0)")
        }
    }

    /// A nested model called twice at each of 24 levels would make 2^24 layer calls.
    func testExponentialNestedCallsAreRefusedQuickly() {
        let config = "\(Self.folder)/keras-config/review-nested-called-twice-24-deep.json"
        let start = Date()
        XCTAssertThrowsError(try importKeras(configPath: config, weightsPath: KerasFixtures.path("seq_mlp.h5"))) {
            XCTAssertTrue("\($0)".contains("calls nested models more than 1000 times"), "\($0)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 60)
    }
}
