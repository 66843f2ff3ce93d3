import BraidTensor
@preconcurrency import CHDF5
import Foundation

/// Serialises every use of libhdf5 in Braid (Keras files, checkpoints, HDF5 datasets): the
/// Debian build is not thread-safe.
public let hdf5Lock = NSLock()

/// A failure writing an HDF5 file: the file (as the caller reports it), the object inside
/// it and what went wrong. Callers turn it into their own error type.
public struct HDF5WriteError: Error, CustomStringConvertible, Sendable {
    public var path: String
    /// `object: what went wrong`, e.g. `model_weights/dense: cannot create group`.
    public var detail: String
    public var description: String { "\(path): \(detail)" }
}

/// A new HDF5 file written through the C library, on disk or in memory (libhdf5's core
/// driver, for files whose bytes go elsewhere, like checkpoints written atomically): groups,
/// float32 and int64 datasets, and string attributes as h5py writes them (variable-length
/// UTF-8). Paths are relative to the root ("model_weights/conv2d"). Callers hold `hdf5Lock`
/// for the writer's whole life and call `close()` or `finish()` before using the file.
public final class HDF5Writer {
    public let path: String
    private var file: hid_t

    /// Creates (truncates) the file at `path`.
    public init(path: String) throws {
        self.path = path
        _ = H5open()
        H5Eset_auto2(0, nil, nil)
        let f = H5Fcreate(path, 2 /* H5F_ACC_TRUNC */, 0, 0)
        guard f >= 0 else { throw HDF5WriteError(path: path, detail: "libhdf5 cannot create the file") }
        file = f
    }

    /// An in-memory file; `reportedAs` names it in errors. `finish()` returns its bytes.
    public init(inMemoryReportedAs path: String) throws {
        self.path = path
        _ = H5open()
        H5Eset_auto2(0, nil, nil)
        let fapl = H5Pcreate(H5P_CLS_FILE_ACCESS_ID_g)
        defer { H5Pclose(fapl) }
        guard fapl >= 0, H5Pset_fapl_core(fapl, 1 << 20, false /* no backing store */) >= 0 else {
            throw HDF5WriteError(path: path, detail: "libhdf5 has no in-memory file driver")
        }
        // The name only identifies the in-memory file; nothing is written under it.
        let f = H5Fcreate("braid-memory-\(UUID().uuidString)", 2 /* H5F_ACC_TRUNC */, 0, fapl)
        guard f >= 0 else { throw HDF5WriteError(path: path, detail: "libhdf5 cannot create an in-memory file") }
        file = f
    }

    deinit { if file >= 0 { H5Fclose(file) } }

    /// Flushes and closes the file; the writer cannot be used afterwards.
    public func close() throws {
        guard file >= 0 else { return }
        let status = H5Fclose(file)
        file = -1
        guard status >= 0 else { throw HDF5WriteError(path: path, detail: "libhdf5 cannot close the file") }
    }

    /// Flushes an in-memory file and returns its bytes; the writer cannot be used afterwards.
    public func finish() throws -> Data {
        defer { H5Fclose(file); file = -1 }
        guard H5Fflush(file, H5F_SCOPE_GLOBAL) >= 0 else { throw fail("/", "cannot flush the file") }
        let size = H5Fget_file_image(file, nil, 0)
        guard size > 0 else { throw fail("/", "cannot read back the file image") }
        var image = Data(count: size)
        let got = image.withUnsafeMutableBytes { H5Fget_file_image(file, $0.baseAddress, size) }
        guard got == size else { throw fail("/", "cannot read back the file image") }
        return image
    }

    /// Creates a group (its parent must exist).
    public func group(_ p: String) throws {
        let g = H5Gcreate2(file, p, 0, 0, 0)
        guard g >= 0 else { throw fail(p, "cannot create group") }
        H5Gclose(g)
    }

    /// Writes a dataset of `t.shape` (a scalar for rank 0) in Braid's storage type: float32,
    /// or int64 for every integer and bool dtype. `createParents` makes missing groups.
    public func dataset(_ p: String, _ t: Tensor, createParents: Bool = false) throws {
        let dims = t.shape.map { hsize_t($0) }
        let space = dims.isEmpty ? H5Screate(H5S_SCALAR) : H5Screate_simple(Int32(dims.count), dims, nil)
        guard space >= 0 else { throw fail(p, "cannot create dataspace \(t.shape)") }
        defer { H5Sclose(space) }
        let lcpl = H5Pcreate(H5P_CLS_LINK_CREATE_ID_g)
        defer { H5Pclose(lcpl) }
        if createParents { H5Pset_create_intermediate_group(lcpl, 1) }
        let fileType = t.dtype.isFloat ? H5T_IEEE_F32LE_g : H5T_STD_I64LE_g
        let memType = t.dtype.isFloat ? H5T_NATIVE_FLOAT_g : H5T_NATIVE_INT64_g
        let d = H5Dcreate2(file, p, fileType, space, lcpl, 0, 0)
        guard d >= 0 else { throw fail(p, "cannot create dataset") }
        defer { H5Dclose(d) }
        if t.count > 0, H5Dwrite(d, memType, 0, 0, 0, t.buffer.raw) < 0 {
            throw fail(p, "cannot write dataset")
        }
    }

    /// A scalar variable-length UTF-8 string attribute on the object at `p`.
    public func attribute(_ name: String, _ value: String, at p: String = "/") throws {
        try writeStrings(name, [value], at: p, scalar: true)
    }

    /// A 1-D string-array attribute; an empty list is written as h5py writes `[]` (an empty
    /// float64 array), which Keras reads as no names.
    public func attribute(_ name: String, _ values: [String], at p: String = "/") throws {
        if values.isEmpty {
            var zero: hsize_t = 0
            let space = H5Screate_simple(1, &zero, nil)
            defer { H5Sclose(space) }
            try withObject(p) { o in
                let a = H5Acreate2(o, name, H5T_IEEE_F64LE_g, space, 0, 0)
                guard a >= 0 else { throw fail(p, "cannot create attribute '\(name)'") }
                H5Aclose(a)
            }
            return
        }
        try writeStrings(name, values, at: p, scalar: false)
    }

    private func writeStrings(_ name: String, _ values: [String], at p: String, scalar: Bool) throws {
        let type = H5Tcopy(H5T_C_S1_g)
        defer { H5Tclose(type) }
        H5Tset_size(type, -1 /* H5T_VARIABLE */)
        H5Tset_cset(type, H5T_CSET_UTF8)
        var dim = hsize_t(values.count)
        let space = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dim, nil)
        defer { H5Sclose(space) }
        let cstrings = values.map { strdup($0) }
        defer { for c in cstrings { free(c) } }
        var ptrs: [UnsafePointer<CChar>?] = cstrings.map { UnsafePointer($0) }
        try withObject(p) { o in
            let a = H5Acreate2(o, name, type, space, 0, 0)
            guard a >= 0 else { throw fail(p, "cannot create attribute '\(name)'") }
            defer { H5Aclose(a) }
            guard H5Awrite(a, type, &ptrs) >= 0 else { throw fail(p, "cannot write attribute '\(name)'") }
        }
    }

    private func withObject(_ p: String, _ body: (hid_t) throws -> Void) throws {
        let o = H5Oopen(file, p.isEmpty ? "/" : p, 0)
        guard o >= 0 else { throw fail(p, "no such object") }
        defer { H5Oclose(o) }
        try body(o)
    }

    private func fail(_ p: String, _ m: String) -> HDF5WriteError {
        HDF5WriteError(path: path, detail: "\(p.isEmpty ? "/" : p): \(m)")
    }
}
