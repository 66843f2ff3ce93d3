// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Braid",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "braid", targets: ["braid"]),
        .library(name: "BraidRuntime", targets: ["BraidRuntime"]),
        .library(name: "BraidTransfer", targets: ["BraidTransfer"]),
        .library(name: "BraidONNX", targets: ["BraidONNX"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.19"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5",
                       providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CProtobufC", pkgConfig: "libprotobuf-c",
                       providers: [.apt(["libprotobuf-c-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", pkgConfig: "libjpeg", providers: [.apt(["libjpeg62-turbo-dev"])]),
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .target(name: "BraidMPI", dependencies: ["CMPI"]),
        .target(name: "CONNXProto", dependencies: ["CProtobufC"]),
        .target(name: "BraidTensor"),
        // The hot inner loops in C, built once per instruction set and chosen at run time
        // (BRAID_CPU=portable|avx2|avx512|auto): no target carries a CPU-specific flag.
        .target(name: "CKernels"),
        .target(name: "BraidKernels", dependencies: ["BraidTensor", "CBLAS", "CKernels"]),
        .target(name: "BraidGraph", dependencies: ["BraidTensor", "BraidKernels"]),
        .target(name: "BraidONNX", dependencies: ["BraidGraph", "BraidTensor", "CONNXProto"]),
        // The HDF5 writer and the one lock every libhdf5 call in Braid takes.
        .target(name: "BraidHDF5", dependencies: ["BraidTensor", "CHDF5"]),
        .target(name: "BraidKeras", dependencies: [
            "BraidGraph", "BraidKernels", "BraidTensor", "BraidHDF5", "CHDF5", "CDataShim",
            .product(name: "ZIPFoundation", package: "ZIPFoundation"),
        ]),
        .target(name: "CDataShim", dependencies: ["CPNG", "CJPEG", "CHDF5"],
                linkerSettings: [.linkedLibrary("z")]),
        .target(name: "BraidData", dependencies: ["BraidTensor", "BraidHDF5", "CPNG", "CJPEG", "CHDF5", "CDataShim"]),
        .target(name: "BraidTraining", dependencies: ["BraidGraph", "BraidTensor", "BraidKernels", "BraidHDF5", "CHDF5", "CDataShim"]),
        .target(name: "BraidRuntime", dependencies: ["BraidONNX", "BraidKeras", "BraidData", "BraidGraph", "BraidTensor"]),
        .target(name: "BraidTransfer", dependencies: [
            "BraidRuntime", "BraidTraining", "BraidData", "BraidONNX", "BraidKeras", "BraidGraph", "BraidTensor",
        ]),
        .executableTarget(name: "braid", dependencies: [
            "BraidRuntime", "BraidTransfer", "BraidTraining", "BraidData", "BraidMPI",
            "BraidONNX", "BraidKeras", "BraidGraph", "BraidKernels", "BraidTensor",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Shared by every test target: NaN-aware, scale-relative comparisons, the cache and
        // fuzz-regression folders.
        .target(name: "BraidTestSupport", dependencies: ["BraidTensor"], path: "Tests/BraidTestSupport"),
        .testTarget(name: "BraidTensorTests", dependencies: ["BraidTestSupport", "BraidTensor"]),
        .testTarget(name: "BraidKernelsTests", dependencies: ["BraidTestSupport", "BraidKernels", "BraidTensor"]),
        .testTarget(name: "BraidGraphTests", dependencies: ["BraidTestSupport", "BraidGraph", "BraidTensor"]),
        .testTarget(name: "BraidONNXTests", dependencies: ["BraidTestSupport", "BraidONNX", "BraidKeras", "BraidGraph", "BraidTensor"]),
        .testTarget(name: "BraidKerasTests", dependencies: ["BraidTestSupport", "BraidKeras", "BraidONNX", "BraidGraph", "BraidTensor"], exclude: ["Fixtures"]),
        .testTarget(name: "BraidTrainingTests", dependencies: ["BraidTestSupport", "BraidTraining", "BraidONNX", "BraidGraph", "BraidTensor"], exclude: ["Fixtures"]),
        .testTarget(name: "BraidDataTests", dependencies: ["BraidTestSupport", "BraidData", "BraidTensor"], exclude: ["Fixtures"]),
        .testTarget(name: "BraidTransferTests", dependencies: ["BraidTestSupport", "BraidTransfer", "BraidRuntime", "BraidTraining", "BraidData", "BraidONNX", "BraidGraph", "BraidTensor"]),
        .testTarget(name: "CLITests", dependencies: ["BraidTestSupport", "BraidONNX", "BraidTensor"]),
        .testTarget(name: "BraidMPITests", dependencies: ["BraidMPI"]),
        .testTarget(name: "ConformanceTests", dependencies: ["BraidTestSupport", "BraidONNX", "BraidGraph", "BraidTensor"]),
        .testTarget(name: "RealModelTests", dependencies: ["BraidTestSupport", "BraidONNX", "BraidGraph", "BraidTensor"]),
    ]
)
