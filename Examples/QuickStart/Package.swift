// swift-tools-version:6.0
import PackageDescription

// An application that uses Braid as a library: it depends on the repository two folders up
// by path and on its two library products.
let package = Package(
    name: "QuickStart",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "Braid", path: "../.."),
    ],
    targets: [
        .executableTarget(name: "QuickStart", dependencies: [
            .product(name: "BraidRuntime", package: "Braid"),
            .product(name: "BraidTransfer", package: "Braid"),
        ]),
    ]
)
