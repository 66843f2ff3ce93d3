import BraidHDF5
import BraidTensor
@testable import BraidTraining
@preconcurrency import CHDF5
import Foundation
import XCTest

final class CheckpointTests: XCTestCase {
    private func tempDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("braid-ck-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    /// Tensors of every storage kind, with names that nest, collide with groups, or hold
    /// characters HDF5 paths treat specially.
    private func sample() -> Checkpoint {
        let w = Tensor(shape: [2, 3], floats: [1, -2.5, .pi, 0, -0.0, Float.greatestFiniteMagnitude])
        let tensors: [String: Tensor] = [
            "m0/conv.weight": w,
            "m0/opt/conv.weight.m": Tensor(shape: [2, 3], floats: [1e-30, 2, 3, 4, 5, -6]),
            "m0": Tensor(shape: [], floats: [7]),
            "m1//odd": Tensor(shape: [1], floats: [8]),
            ".": Tensor(shape: [1], floats: [9]),
            "a%2Fb": Tensor(shape: [1], floats: [10]),
            "a/b": Tensor(shape: [1], floats: [11]),
            "empty": Tensor(zeros: [0, 4]),
            "steps": Tensor(shape: [3], ints: [1, -2, Int64.max]),
            "mask": Tensor(shape: [2], ints: [0, 1], dtype: .bool),
        ]
        return Checkpoint(tensors: tensors, facts: ["epoch": "3", "m0/steps": "120", "history": "[{\"loss\":0.5}]",
                                                    "note": "ünïcode ✓", "blank": ""])
    }

    func testRoundTripIsExact() throws {
        let dir = try tempDir()
        let ck = sample()
        try ck.save(to: dir + "/c.h5")
        let back = try Checkpoint.load(from: dir + "/c.h5")
        XCTAssertEqual(back.facts, ck.facts)
        XCTAssertEqual(Set(back.tensors.keys), Set(ck.tensors.keys))
        for (name, t) in ck.tensors {
            let u = try XCTUnwrap(back.tensors[name])
            XCTAssertEqual(u.shape, t.shape, name)
            XCTAssertEqual(u.dtype, t.dtype, name)
            let bytes = t.count * t.dtype.storageStride
            XCTAssertEqual(Data(bytes: u.buffer.raw, count: bytes), Data(bytes: t.buffer.raw, count: bytes), name)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["c.h5"], "temporary file left behind")
    }

    func testDatasetPathsNestAndNeverCollide() {
        let names = Array(sample().tensors.keys)
        let paths = checkpointDatasetPaths(names)
        XCTAssertEqual(paths["m0/conv.weight"], "m0/conv.weight")
        XCTAssertEqual(paths["m0/opt/conv.weight.m"], "m0/opt/conv.weight.m")
        XCTAssertEqual(paths["m0"], "m0%", "a name that is also a group is written flat")
        XCTAssertEqual(paths["a/b"], "a/b")
        XCTAssertEqual(paths["a%2Fb"], "a%252Fb")
        XCTAssertEqual(paths["m1//odd"], "m1%2F%2Fodd%")
        XCTAssertEqual(paths["."], ".%")
        XCTAssertEqual(Set(paths.values).count, names.count)
    }

    func testOverwritesAtomicallyAndFailsCleanly() throws {
        let dir = try tempDir()
        try sample().save(to: dir + "/c.h5")
        try Checkpoint(tensors: ["w": Tensor(shape: [1], floats: [42])], facts: [:]).save(to: dir + "/c.h5")
        XCTAssertEqual(try Checkpoint.load(from: dir + "/c.h5").tensors["w"]?.floatArray, [42])
        XCTAssertThrowsError(try sample().save(to: dir + "/missing/c.h5")) { e in
            XCTAssertTrue("\(e)".contains("missing/c.h5"), "\(e)")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["c.h5"])
    }

    func testRejectsDamagedAndForeignFiles() throws {
        let dir = try tempDir()
        try sample().save(to: dir + "/c.h5")
        let bytes = try Data(contentsOf: URL(fileURLWithPath: dir + "/c.h5"))
        for cut in [0, 4, 20, 600, bytes.count / 2, bytes.count - 3] {
            try bytes.prefix(cut).write(to: URL(fileURLWithPath: dir + "/cut.h5"))
            XCTAssertThrowsError(try Checkpoint.load(from: dir + "/cut.h5"), "cut at \(cut)") { e in
                XCTAssertTrue("\(e)".contains("cut.h5"), "\(e)")
            }
        }
        try Data("BRAIDCK1\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}".utf8).write(to: URL(fileURLWithPath: dir + "/old.bin"))
        XCTAssertThrowsError(try Checkpoint.load(from: dir + "/old.bin")) { e in
            XCTAssertTrue("\(e)".contains("old.bin") && "\(e)".contains("BRAIDCK1"), "\(e)")
        }
        XCTAssertThrowsError(try Checkpoint.load(from: dir + "/none.h5")) { e in
            XCTAssertTrue("\(e)".contains("none.h5"), "\(e)")
        }
    }

    func testRejectsAnotherHDF5File() throws {
        let keras = repoRoot() + "/Tests/BraidKerasTests/Fixtures"
        let h5 = (try? FileManager.default.contentsOfDirectory(atPath: keras))?.first { $0.hasSuffix(".h5") }
        let file = try XCTUnwrap(h5.map { keras + "/" + $0 }, "no Keras .h5 fixture in \(keras)")
        XCTAssertThrowsError(try Checkpoint.load(from: file)) { e in
            XCTAssertTrue("\(e)".contains("not a Braid checkpoint"), "\(e)")
        }
    }

    /// A dataset whose shape passes the per-dimension bound (each below 2^31) but whose
    /// byte count overflows Int: [2^31-1, 2^31-1, 2] int64 values are 2^66 bytes. Chunked
    /// storage with no chunk written lets libhdf5 accept the shape. Refused, not a trap.
    func testShapeWhoseByteCountOverflowsIsRefused() throws {
        let path = try tempDir() + "/huge.h5"
        try Checkpoint(tensors: ["w": Tensor(shape: [1], floats: [1])], facts: [:]).save(to: path)
        try addUnwrittenDataset(to: path, named: "tensors/huge", dims: [(1 << 31) - 1, (1 << 31) - 1, 2], attributes: ["name": "huge", "dtype": "int64"])
        XCTAssertThrowsError(try Checkpoint.load(from: path)) { e in
            XCTAssertTrue("\(e)".contains("huge.h5") && "\(e)".contains("tensor 'huge'") && "\(e)".contains("more than the file stores"), "\(e)")
        }
    }

    /// Adds a chunked int64 dataset (no chunk written) with string attributes, as libhdf5
    /// allows and a crafted file could hold.
    private func addUnwrittenDataset(to path: String, named name: String, dims: [hsize_t], attributes: [String: String]) throws {
        hdf5Lock.lock()
        defer { hdf5Lock.unlock() }
        let f = H5Fopen(path, 1 /* H5F_ACC_RDWR */, 0)
        guard f >= 0 else { throw XCTSkip("libhdf5 cannot reopen \(path)") }
        defer { H5Fclose(f) }
        let space = H5Screate_simple(Int32(dims.count), dims, nil)
        defer { H5Sclose(space) }
        let dcpl = H5Pcreate(H5P_CLS_DATASET_CREATE_ID_g)
        defer { H5Pclose(dcpl) }
        H5Pset_chunk(dcpl, Int32(dims.count), [hsize_t](repeating: 1, count: dims.count))
        let d = H5Dcreate2(f, name, H5T_STD_I64LE_g, space, 0, dcpl, 0)
        XCTAssertGreaterThanOrEqual(d, 0)
        defer { H5Dclose(d) }
        let type = H5Tcopy(H5T_C_S1_g)
        defer { H5Tclose(type) }
        H5Tset_size(type, -1 /* H5T_VARIABLE */)
        let scalar = H5Screate(H5S_SCALAR)
        defer { H5Sclose(scalar) }
        for (key, value) in attributes {
            let a = H5Acreate2(d, key, type, scalar, 0, 0)
            defer { H5Aclose(a) }
            value.withCString { c in
                var ptr: UnsafePointer<CChar>? = c
                XCTAssertGreaterThanOrEqual(H5Awrite(a, type, &ptr), 0)
            }
        }
    }

    /// An HDF5 file whose variable-length attribute declares a 37 GB string (libhdf5 1.10
    /// would allocate it) is refused before libhdf5 opens it.
    func testBadVariableLengthAttributeIsRefusedBeforeLibhdf5() {
        let path = repoRoot() + "/Fuzz/regressions/keras-h5/vlen-length-37GB.h5"
        XCTAssertThrowsError(try Checkpoint.load(from: path)) { e in
            XCTAssertTrue("\(e)".contains("vlen-length-37GB.h5") && "\(e)".contains("global heap object holds 22 bytes"), "\(e)")
        }
    }

    /// `h5ls` and h5py (when installed) see the layout the documentation promises.
    func testOtherToolsReadIt() throws {
        let dir = try tempDir()
        try sample().save(to: dir + "/c.h5")
        var ran = 0
        if let out = try run("/usr/bin/h5ls", ["-r", dir + "/c.h5"]) {
            ran += 1
            XCTAssertTrue(out.contains("/tensors/m0/opt/conv.weight.m Dataset {2, 3}"), out)
            XCTAssertTrue(out.contains("/tensors/steps") && out.contains("/facts"), out)
        }
        let python = repoRoot() + "/.cache/keras-venv/bin/python"
        let script = """
        import h5py, sys
        f = h5py.File(sys.argv[1], "r")
        w = f["tensors/m0/conv.weight"]
        print(f.attrs["format"], w.attrs["name"], w.dtype, list(w[1]), f["facts"].attrs["m0/steps"], list(f["tensors/steps"][:2]))
        """
        if let out = try run(python, ["-c", script, dir + "/c.h5"]) {
            ran += 1
            XCTAssertEqual(out.trimmingCharacters(in: .whitespacesAndNewlines),
                           "braid-checkpoint m0/conv.weight float32 [np.float32(0.0), np.float32(-0.0), np.float32(3.4028235e+38)] 120 [np.int64(1), np.int64(-2)]")
        }
        if ran == 0 { throw XCTSkip("neither h5ls nor \(python) is installed") }
    }

    private func repoRoot() -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    /// Standard output of `tool args`, or nil when the tool is not installed; fails on a
    /// non-zero exit.
    private func run(_ tool: String, _ args: [String]) throws -> String? {
        guard FileManager.default.isExecutableFile(atPath: tool) else { return nil }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "\(tool): \(String(decoding: errData, as: UTF8.self))")
        return String(decoding: data, as: UTF8.self)
    }
}
