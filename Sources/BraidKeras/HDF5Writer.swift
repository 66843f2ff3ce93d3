import BraidTensor
@preconcurrency import CHDF5
import Foundation

/// A new HDF5 file written through the C library: groups, float32 datasets and the string
/// attributes Keras reads (variable-length UTF-8, as h5py writes them). Paths are relative
/// to the root ("model_weights/conv2d"). Call `close()` before using the file; callers hold
/// `hdf5Lock` for the writer's whole life.
final class HDF5Writer {
    let path: String
    private var file: hid_t

    init(path: String) throws {
        self.path = path
        _ = H5open()
        H5Eset_auto2(0, nil, nil)
        let f = H5Fcreate(path, 2 /* H5F_ACC_TRUNC */, 0, 0)
        guard f >= 0 else { throw KerasError(file: path, "libhdf5 cannot create the file") }
        file = f
    }

    deinit { if file >= 0 { H5Fclose(file) } }

    /// Flushes and closes the file; the writer cannot be used afterwards.
    func close() throws {
        guard file >= 0 else { return }
        let status = H5Fclose(file)
        file = -1
        guard status >= 0 else { throw KerasError(file: path, "libhdf5 cannot close the file") }
    }

    /// Creates a group (its parent must exist).
    func group(_ p: String) throws {
        let g = H5Gcreate2(file, p, 0, 0, 0)
        guard g >= 0 else { throw fail(p, "cannot create group") }
        H5Gclose(g)
    }

    /// Writes a float32 dataset of `t.shape` (a scalar for rank 0).
    func dataset(_ p: String, _ t: Tensor) throws {
        let dims = t.shape.map { hsize_t($0) }
        let space = dims.isEmpty ? H5Screate(H5S_SCALAR) : H5Screate_simple(Int32(dims.count), dims, nil)
        guard space >= 0 else { throw fail(p, "cannot create dataspace") }
        defer { H5Sclose(space) }
        let d = H5Dcreate2(file, p, H5T_IEEE_F32LE_g, space, 0, 0, 0)
        guard d >= 0 else { throw fail(p, "cannot create dataset") }
        defer { H5Dclose(d) }
        if t.count > 0, H5Dwrite(d, H5T_NATIVE_FLOAT_g, 0, 0, 0, t.buffer.raw) < 0 {
            throw fail(p, "cannot write dataset")
        }
    }

    /// A scalar variable-length UTF-8 string attribute on the object at `p`.
    func attribute(_ name: String, _ value: String, at p: String = "/") throws {
        try writeStrings(name, [value], at: p, scalar: true)
    }

    /// A 1-D string-array attribute; an empty list is written as h5py writes `[]` (an empty
    /// float64 array), which Keras reads as no names.
    func attribute(_ name: String, _ values: [String], at p: String = "/") throws {
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

    private func fail(_ p: String, _ m: String) -> KerasError {
        KerasError(file: path, "\(p.isEmpty ? "/" : p): \(m)")
    }
}
