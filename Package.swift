// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Braid",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "braid", targets: ["braid"]),
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
        .target(name: "BraidKernels", dependencies: ["BraidTensor", "CBLAS"],
                swiftSettings: [.unsafeFlags(["-Ounchecked", "-target-cpu", "haswell"])]),
        .target(name: "BraidGraph", dependencies: ["BraidTensor", "BraidKernels"]),
        .target(name: "BraidONNX", dependencies: ["BraidGraph", "BraidTensor", "CONNXProto"]),
        .target(name: "BraidKeras", dependencies: [
            "BraidGraph", "BraidTensor", "CHDF5", "CDataShim",
            .product(name: "ZIPFoundation", package: "ZIPFoundation"),
        ]),
        .target(name: "CDataShim", dependencies: ["CPNG", "CJPEG", "CHDF5"],
                linkerSettings: [.linkedLibrary("z")]),
        .target(name: "BraidData", dependencies: ["BraidTensor", "CPNG", "CJPEG", "CHDF5", "CDataShim"]),
        .target(name: "BraidTraining", dependencies: ["BraidGraph", "BraidTensor", "BraidKernels", "CHDF5", "CDataShim"]),
        .target(name: "BraidTransfer", dependencies: [
            "BraidTraining", "BraidData", "BraidONNX", "BraidKeras", "BraidGraph", "BraidTensor",
        ]),
        .executableTarget(name: "braid", dependencies: [
            "BraidTransfer", "BraidTraining", "BraidData", "BraidMPI",
            "BraidONNX", "BraidKeras", "BraidGraph", "BraidKernels", "BraidTensor",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "BraidTensorTests", dependencies: ["BraidTensor"]),
        .testTarget(name: "BraidKernelsTests", dependencies: ["BraidKernels", "BraidTensor"]),
        .testTarget(name: "BraidGraphTests", dependencies: ["BraidGraph", "BraidTensor"]),
        .testTarget(name: "BraidONNXTests", dependencies: ["BraidONNX", "BraidKeras", "BraidGraph", "BraidTensor"]),
        .testTarget(name: "BraidKerasTests", dependencies: ["BraidKeras", "BraidONNX", "BraidGraph", "BraidTensor"], exclude: ["Fixtures"]),
        .testTarget(name: "BraidTrainingTests", dependencies: ["BraidTraining", "BraidONNX", "BraidGraph", "BraidTensor"], exclude: ["Fixtures"]),
        .testTarget(name: "BraidDataTests", dependencies: ["BraidData", "BraidTensor"], exclude: ["Fixtures"]),
        .testTarget(name: "BraidTransferTests", dependencies: ["BraidTransfer", "BraidTraining", "BraidData", "BraidONNX", "BraidGraph", "BraidTensor"]),
        .testTarget(name: "CLITests", dependencies: ["BraidONNX", "BraidTensor"]),
        .testTarget(name: "BraidMPITests", dependencies: ["BraidMPI"]),
        .testTarget(name: "ConformanceTests", dependencies: ["BraidONNX", "BraidGraph", "BraidTensor"]),
        .testTarget(name: "RealModelTests", dependencies: ["BraidONNX", "BraidGraph", "BraidTensor"]),
    ]
)
