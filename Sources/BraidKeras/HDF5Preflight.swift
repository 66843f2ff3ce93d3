import CDataShim
import Foundation

/// Checks, before libhdf5 sees a file, the structures on which libhdf5 (1.10, as shipped by
/// Debian) loops for ever, allocates without bound or reads out of bounds when they are
/// corrupt: global heap collections, and every variable-length attribute value that refers
/// to one (its object must exist and hold exactly the bytes libhdf5 will copy).
///
/// The check parses the file (superblock, object headers, groups, attribute messages) in C,
/// `braid_h5_preflight` in `Sources/CDataShim/hdf5_preflight.c`, which says what is parsed and
/// what is refused; the same check runs before checkpoints and HDF5 datasets are opened.
enum HDF5Preflight {
    static func check(path: String) throws {
        var message = [CChar](repeating: 0, count: 512)
        guard braid_h5_preflight(path, &message, message.count) == 0 else {
            throw KerasError(file: path, String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
    }
}
