import BraidHDF5
import BraidTensor
@preconcurrency import CHDF5
import Foundation

/// A read-only HDF5 file opened through the C library.
///
/// Paths are HDF5 paths relative to the root ("model_weights/conv2d_1"). Every call that
/// cannot find what it needs throws `KerasError` naming the file and the path; HDF5's own
/// error printing is switched off so that a bad file produces one message, not a stack dump.
final class HDF5File {
    let path: String
    private let file: hid_t
    /// The file's size on disk: uncompressed data and attribute values cannot exceed it.
    private let byteCount: Int

    init(path: String) throws {
        self.path = path
        _ = H5open()
        H5Eset_auto2(0, nil, nil)
        guard FileManager.default.fileExists(atPath: path) else {
            throw KerasError(file: path, "no such file")
        }
        try HDF5Preflight.check(path: path)
        guard H5Fis_hdf5(path) > 0 else {
            throw KerasError(file: path, "not an HDF5 file (or truncated/corrupt: libhdf5 cannot read its superblock)")
        }
        let f = H5Fopen(path, 0 /* H5F_ACC_RDONLY */, 0 /* H5P_DEFAULT */)
        guard f >= 0 else {
            throw KerasError(file: path, "libhdf5 cannot open the file (truncated or corrupt)")
        }
        file = f
        byteCount = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
    }

    deinit { H5Fclose(file) }

    /// True when a link exists at `path` (every intermediate group must exist too).
    func exists(_ path: String) -> Bool {
        if path.isEmpty || path == "/" { return true }
        var prefix = ""
        for part in path.split(separator: "/") {
            prefix += prefix.isEmpty ? String(part) : "/" + part
            if H5Lexists(file, prefix, 0) <= 0 { return false }
        }
        return true
    }

    func isGroup(_ path: String) -> Bool { objectType(path) == H5I_GROUP }

    private func objectType(_ path: String) -> H5I_type_t? {
        guard exists(path) else { return nil }
        let o = H5Oopen(file, path.isEmpty ? "/" : path, 0)
        guard o >= 0 else { return nil }
        defer { H5Oclose(o) }
        return H5Iget_type(o)
    }

    /// Names of the links in a group, in name order.
    func children(_ path: String) throws -> [String] {
        let g = try openGroup(path)
        defer { H5Gclose(g) }
        var info = H5G_info_t()
        guard H5Gget_info(g, &info) >= 0 else { throw fail(path, "cannot list group") }
        var names: [String] = []
        for i in 0..<info.nlinks {
            let n = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, 0)
            guard n >= 0 else { throw fail(path, "cannot read link name \(i)") }
            var buf = [CChar](repeating: 0, count: Int(n) + 1)
            H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buf, buf.count, 0)
            names.append(String(decoding: buf.prefix(Int(n)).map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return names
    }

    private func openGroup(_ path: String) throws -> hid_t {
        guard exists(path) else { throw fail(path, "no such group") }
        let g = H5Gopen2(file, path.isEmpty ? "/" : path, 0)
        guard g >= 0 else { throw fail(path, "not a group") }
        return g
    }

    private func openObject(_ path: String) throws -> hid_t {
        guard exists(path) else { throw fail(path, "no such object") }
        let o = H5Oopen(file, path.isEmpty ? "/" : path, 0)
        guard o >= 0 else { throw fail(path, "cannot open object") }
        return o
    }

    func hasAttribute(_ name: String, at path: String = "/") -> Bool {
        guard let o = try? openObject(path) else { return false }
        defer { H5Oclose(o) }
        return H5Aexists(o, name) > 0
    }

    /// A string attribute (scalar or 1-element array), variable- or fixed-length.
    /// Keras 2 splits attributes larger than HDF5's header limit into `name0`, `name1`, ...;
    /// those chunks are joined.
    func stringAttribute(_ name: String, at path: String = "/") throws -> String? {
        guard let list = try stringsAttribute(name, at: path) else { return nil }
        return list.joined()
    }

    /// A string-array attribute, variable- or fixed-length, joined across Keras 2 chunks.
    func stringsAttribute(_ name: String, at path: String = "/") throws -> [String]? {
        let o = try openObject(path)
        defer { H5Oclose(o) }
        if H5Aexists(o, name) > 0 { return try readStrings(o, name, path) }
        var result: [String] = []
        var chunk = 0
        while H5Aexists(o, "\(name)\(chunk)") > 0 {
            result += try readStrings(o, "\(name)\(chunk)", path)
            chunk += 1
        }
        return chunk == 0 ? nil : result
    }

    private func readStrings(_ o: hid_t, _ name: String, _ path: String) throws -> [String] {
        let a = H5Aopen(o, name, 0)
        guard a >= 0 else { throw fail(path, "cannot open attribute '\(name)'") }
        defer { H5Aclose(a) }
        let type = H5Aget_type(a), space = H5Aget_space(a)
        defer { H5Sclose(space); H5Tclose(type) }
        let count = Int(H5Sget_simple_extent_npoints(space))
        guard H5Tget_class(type) == H5T_STRING else {
            throw fail(path, "attribute '\(name)' is not a string")
        }
        if count == 0 { return [] }
        // A stored variable-length string reference takes 16 bytes, a fixed-length one its size.
        let stored = H5Tis_variable_str(type) > 0 ? 16 : max(H5Tget_size(type), 1)
        guard count > 0, count <= byteCount / stored else {
            throw fail(path, "attribute '\(name)' declares \(count) strings of \(stored) bytes; the file has \(byteCount) bytes")
        }
        let mem = H5Tcopy(H5T_C_S1_g)
        defer { H5Tclose(mem) }
        if H5Tis_variable_str(type) > 0 {
            H5Tset_size(mem, -1 /* H5T_VARIABLE */)
            H5Tset_cset(mem, H5Tget_cset(type))
            var ptrs = [UnsafeMutablePointer<CChar>?](repeating: nil, count: count)
            guard H5Aread(a, mem, &ptrs) >= 0 else { throw fail(path, "cannot read attribute '\(name)'") }
            defer { for p in ptrs { H5free_memory(p) } }
            return ptrs.map { p in p.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: strlen($0)), as: UTF8.self) } ?? "" }
        }
        let size = H5Tget_size(type)
        H5Tset_size(mem, size)
        H5Tset_strpad(mem, H5T_STR_NULLPAD)
        var bytes = [UInt8](repeating: 0, count: count * size)
        guard H5Aread(a, mem, &bytes) >= 0 else { throw fail(path, "cannot read attribute '\(name)'") }
        return (0..<count).map { i in
            let slice = bytes[(i * size)..<((i + 1) * size)]
            let end = slice.firstIndex(of: 0) ?? slice.endIndex
            return String(decoding: slice[slice.startIndex..<end], as: UTF8.self)
        }
    }

    /// A numeric dataset read as float32 (HDF5 converts float64/float16/ints on the way).
    func floatDataset(_ path: String) throws -> Tensor {
        guard exists(path) else { throw fail(path, "no such dataset") }
        let d = H5Dopen2(file, path, 0)
        guard d >= 0 else { throw fail(path, "not a dataset") }
        defer { H5Dclose(d) }
        let type = H5Dget_type(d)
        defer { H5Tclose(type) }
        let cls = H5Tget_class(type)
        guard cls == H5T_FLOAT || cls == H5T_INTEGER else {
            throw fail(path, "dataset is not numeric")
        }
        let space = H5Dget_space(d)
        defer { H5Sclose(space) }
        let rank = Int(H5Sget_simple_extent_ndims(space))
        guard rank >= 0 else { throw fail(path, "cannot read dataset shape") }
        var dims = [hsize_t](repeating: 0, count: rank)
        H5Sget_simple_extent_dims(space, &dims, nil)
        try checkStorage(d, type: type, dims: dims, path: path)
        let t = Tensor(zeros: dims.map { Int($0) })
        if t.count > 0 {
            guard H5Dread(d, H5T_NATIVE_FLOAT_g, 0, 0, 0, t.buffer.raw) >= 0 else {
                throw fail(path, "cannot read dataset (truncated file?)")
            }
        }
        return t
    }

    /// Throws unless the dataset's declared size is backed by bytes in the file: its raw size
    /// must be stored in full (or, compressed, within deflate's 1032:1 ratio of what is stored),
    /// so a few bytes cannot declare gigabytes.
    private func checkStorage(_ d: hid_t, type: hid_t, dims: [hsize_t], path: String) throws {
        var count = 1
        for n in dims {
            let (p, overflow) = count.multipliedReportingOverflow(by: Int(clamping: n))
            guard !overflow, p <= Int.max / 16 else { throw fail(path, "dataset shape \(dims) is too large") }
            count = p
        }
        if count == 0 { return }
        let raw = count * max(H5Tget_size(type), 1)
        let stored = Int(clamping: H5Dget_storage_size(d))
        let plist = H5Dget_create_plist(d)
        let filters = plist >= 0 ? Int(H5Pget_nfilters(plist)) : 0
        if plist >= 0 { H5Pclose(plist) }
        let backed = filters > 0 ? stored <= byteCount && raw / 1032 <= stored : stored >= raw && stored <= byteCount
        guard backed else {
            throw fail(path, "dataset of shape \(dims) needs \(raw) bytes but the file stores \(stored) for it (truncated or corrupt)")
        }
    }

    private func fail(_ p: String, _ m: String) -> KerasError {
        KerasError(file: path, "\(p.isEmpty ? "/" : p): \(m)")
    }
}
