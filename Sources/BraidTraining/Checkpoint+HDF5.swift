import BraidHDF5
import BraidTensor
import CDataShim
@preconcurrency import CHDF5
import Foundation

/// HDF5 keeps at most 32 dimensions.
private let maxRank = 32

extension Checkpoint {
    /// The bytes of an HDF5 file holding the layout described on `Checkpoint`, built in
    /// memory (libhdf5's core driver); errors name `path`.
    func hdf5Image(reportedAs path: String) throws -> Data {
        do {
            let w = try HDF5Writer(inMemoryReportedAs: path)
            try w.attribute("format", Checkpoint.format)
            try w.attribute("format_version", Checkpoint.formatVersion)
            try w.group("facts")
            for key in facts.keys.sorted() { try w.attribute(key, facts[key]!, at: "facts") }
            try w.group("tensors")
            let paths = checkpointDatasetPaths(Array(tensors.keys))
            for name in tensors.keys.sorted() {
                let p = "tensors/" + paths[name]!
                try w.dataset(p, tensors[name]!, createParents: true)
                try w.attribute("name", name, at: p)
                try w.attribute("dtype", tensors[name]!.dtype.rawValue, at: p)
            }
            return try w.finish()
        } catch let e as HDF5WriteError {
            throw TrainingError("\(path): cannot write checkpoint (\(e.detail))")
        }
    }

    /// Reads the HDF5 layout described on `Checkpoint`.
    static func readHDF5(from path: String) throws -> Checkpoint {
        _ = H5open()
        H5Eset_auto2(0, nil, nil)
        let r = try CheckpointReader(path: path)
        guard let format = try r.string("format", at: "/"), format == Checkpoint.format else {
            throw r.bad("not a Braid checkpoint (no root attribute format = \(Checkpoint.format))")
        }
        let version = try r.string("format_version", at: "/") ?? "?"
        guard version == Checkpoint.formatVersion else {
            throw r.bad("checkpoint layout version \(version); this Braid reads version \(Checkpoint.formatVersion)")
        }
        var facts: [String: String] = [:]
        for key in try r.attributeNames(at: "facts") { facts[key] = try r.string(key, at: "facts") }
        var tensors: [String: Tensor] = [:]
        for p in try r.datasets(under: "tensors") {
            guard let name = try r.string("name", at: p) else { throw r.bad("dataset '\(p)' has no 'name' attribute") }
            guard let dt = try r.string("dtype", at: p).flatMap(DType.init(rawValue:)) else {
                throw r.bad("tensor '\(name)' has no valid 'dtype' attribute")
            }
            guard tensors[name] == nil else { throw r.bad("tensor '\(name)' is stored twice") }
            tensors[name] = try r.tensor(p, name: name, dtype: dt)
        }
        return Checkpoint(tensors: tensors, facts: facts)
    }
}

/// Where each tensor's dataset goes under `tensors/`: the name with `/` opening groups, or
/// one flat link ending in `%` (`/` written `%2F`) when a part of the name is empty, `.` or
/// `..`, or the name is also a group of another name. `%` is always written `%25` first, so
/// a lone trailing `%` marks the flat form and the two forms never collide; the exact name
/// is kept in the dataset's `name` attribute anyway.
func checkpointDatasetPaths(_ names: [String]) -> [String: String] {
    func escape(_ s: Substring) -> String { s.replacingOccurrences(of: "%", with: "%25") }
    var groups: Set<String> = []
    for n in names {
        let parts = n.split(separator: "/", omittingEmptySubsequences: false)
        for k in 1..<max(parts.count, 1) { groups.insert(parts[..<k].joined(separator: "/")) }
    }
    var result: [String: String] = [:]
    for n in names {
        let parts = n.split(separator: "/", omittingEmptySubsequences: false)
        let nested = !groups.contains(n) && parts.allSatisfy { !$0.isEmpty && $0 != "." && $0 != ".." }
        if nested {
            result[n] = parts.map(escape).joined(separator: "/")
        } else {
            result[n] = escape(n[...]).replacingOccurrences(of: "/", with: "%2F") + "%"
        }
    }
    return result
}

/// A checkpoint file opened read-only; every failure names the file.
private final class CheckpointReader {
    let path: String
    private let file: hid_t
    private let fileSize: Int

    init(path: String) throws {
        self.path = path
        guard let attrs = try? FileManager.default.attributesOfItem(atPath: path),
              let size = attrs[.size] as? Int else {
            throw TrainingError("\(path): cannot read checkpoint (no such file)")
        }
        fileSize = size
        // libhdf5 1.10 trusts global heap collections and variable-length string values
        // (which every checkpoint attribute is): refuse the ones it would crash on.
        var message = [CChar](repeating: 0, count: 512)
        guard braid_h5_preflight(path, &message, message.count) == 0 else {
            let reason = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw TrainingError("\(path): not a valid Braid checkpoint (\(reason))")
        }
        guard H5Fis_hdf5(path) > 0 else {
            if FileHandle(forReadingAtPath: path).flatMap({ try? $0.read(upToCount: 8) }) == Data("BRAIDCK1".utf8) {
                throw TrainingError("\(path): a checkpoint in the BRAIDCK1 format of earlier Braid builds; this build reads HDF5 checkpoints (re-run the fine-tuning)")
            }
            throw TrainingError("\(path): not a valid Braid checkpoint (not an HDF5 file, or its superblock is truncated or corrupt)")
        }
        let f = H5Fopen(path, 0 /* H5F_ACC_RDONLY */, 0)
        guard f >= 0 else {
            throw TrainingError("\(path): not a valid Braid checkpoint (libhdf5 cannot open it: truncated or corrupt)")
        }
        file = f
    }

    deinit { H5Fclose(file) }

    func bad(_ m: String) -> TrainingError { TrainingError("\(path): not a valid Braid checkpoint (\(m))") }

    private func open(_ p: String) throws -> hid_t {
        let o = H5Oopen(file, p, 0)
        guard o >= 0 else { throw bad("no object '\(p)'") }
        return o
    }

    /// A scalar string attribute, or nil when the object has none of that name.
    func string(_ name: String, at p: String) throws -> String? {
        let o = try open(p)
        defer { H5Oclose(o) }
        guard H5Aexists(o, name) > 0 else { return nil }
        let a = H5Aopen(o, name, 0)
        guard a >= 0 else { throw bad("\(p): cannot open attribute '\(name)'") }
        defer { H5Aclose(a) }
        let type = H5Aget_type(a)
        defer { H5Tclose(type) }
        let space = H5Aget_space(a)
        defer { H5Sclose(space) }
        guard H5Tget_class(type) == H5T_STRING, H5Tis_variable_str(type) > 0,
              H5Sget_simple_extent_npoints(space) == 1 else {
            throw bad("\(p): attribute '\(name)' is not one variable-length string")
        }
        let mem = H5Tcopy(H5T_C_S1_g)
        defer { H5Tclose(mem) }
        H5Tset_size(mem, -1 /* H5T_VARIABLE */)
        H5Tset_cset(mem, H5T_CSET_UTF8)
        var ptr: UnsafeMutablePointer<CChar>?
        guard H5Aread(a, mem, &ptr) >= 0 else { throw bad("\(p): cannot read attribute '\(name)'") }
        defer { H5free_memory(ptr) }
        return ptr.map { String(decoding: UnsafeRawBufferPointer(start: $0, count: strlen($0)), as: UTF8.self) } ?? ""
    }

    /// Names of the attributes on the object at `p`, in name order.
    func attributeNames(at p: String) throws -> [String] {
        let o = try open(p)
        defer { H5Oclose(o) }
        var names: [String] = []
        var i: hsize_t = 0
        while true {
            let n = H5Aget_name_by_idx(o, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, 0)
            guard n >= 0 else { break }
            var buf = [CChar](repeating: 0, count: Int(n) + 1)
            H5Aget_name_by_idx(o, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buf, buf.count, 0)
            names.append(String(decoding: buf.prefix(Int(n)).map { UInt8(bitPattern: $0) }, as: UTF8.self))
            i += 1
        }
        return names
    }

    /// Paths of every dataset below the group `p`.
    func datasets(under p: String, depth: Int = 0) throws -> [String] {
        guard depth < 256 else { throw bad("\(p): groups nested too deeply") }
        let g = H5Gopen2(file, p, 0)
        guard g >= 0 else { throw bad("no group '\(p)'") }
        defer { H5Gclose(g) }
        var info = H5G_info_t()
        guard H5Gget_info(g, &info) >= 0 else { throw bad("\(p): cannot list group") }
        var found: [String] = []
        for i in 0..<info.nlinks {
            let n = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nil, 0, 0)
            guard n >= 0 else { throw bad("\(p): cannot read link \(i)") }
            var buf = [CChar](repeating: 0, count: Int(n) + 1)
            H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, &buf, buf.count, 0)
            let child = p + "/" + String(decoding: buf.prefix(Int(n)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let o = try open(child)
            let type = H5Iget_type(o)
            H5Oclose(o)
            switch type {
            case H5I_GROUP: found += try datasets(under: child, depth: depth + 1)
            case H5I_DATASET: found.append(child)
            default: throw bad("\(child): neither a group nor a dataset")
            }
        }
        return found
    }

    /// The dataset at `p` as a tensor of `dtype`, its shape and size checked against the
    /// file before anything is allocated.
    func tensor(_ p: String, name: String, dtype: DType) throws -> Tensor {
        let d = H5Dopen2(file, p, 0)
        guard d >= 0 else { throw bad("tensor '\(name)': cannot open dataset") }
        defer { H5Dclose(d) }
        let type = H5Dget_type(d)
        defer { H5Tclose(type) }
        let (cls, size) = (H5Tget_class(type), H5Tget_size(type))
        let matches = dtype.isFloat ? cls == H5T_FLOAT && size == 4 : cls == H5T_INTEGER && size == 8
        guard matches else { throw bad("tensor '\(name)': stored type does not hold \(dtype.rawValue)") }
        let space = H5Dget_space(d)
        defer { H5Sclose(space) }
        let rank = Int(H5Sget_simple_extent_ndims(space))
        guard (0...maxRank).contains(rank) else { throw bad("tensor '\(name)': rank \(rank)") }
        var dims = [hsize_t](repeating: 0, count: rank)
        H5Sget_simple_extent_dims(space, &dims, nil)
        var count = 1
        for v in dims {
            guard v < 1 << 31 else { throw bad("tensor '\(name)': dimension \(v) out of range") }
            let (c, overflow) = count.multipliedReportingOverflow(by: Int(v))
            guard !overflow else { throw bad("tensor '\(name)': shape \(dims) overflows") }
            count = c
        }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: dtype.storageStride)
        guard !overflow, bytes <= fileSize, Int(clamping: H5Dget_storage_size(d)) >= bytes else {
            throw bad("tensor '\(name)': shape \(dims) needs \(bytes) bytes, more than the file stores")
        }
        let t = Tensor(zeros: dims.map { Int($0) }, dtype: dtype)
        let memType = dtype.isFloat ? H5T_NATIVE_FLOAT_g : H5T_NATIVE_INT64_g
        if count > 0, H5Dread(d, memType, 0, 0, 0, t.buffer.raw) < 0 {
            throw bad("tensor '\(name)': cannot read its data (truncated file?)")
        }
        return t
    }
}
