// swift-tools-version: 6.1
// The telematics ingestion pipeline: one package, modules laid out along the
// data flow (wire format -> Kafka -> pipeline -> stores / call centre).
import PackageDescription

let package = Package(
    name: "telematics",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "telematics", targets: ["telematics"]),
        .library(name: "TelematicsWire", targets: ["TelematicsWire"]),
        .library(name: "TelematicsKafka", targets: ["TelematicsKafka"]),
        .library(name: "FleetSimulator", targets: ["FleetSimulator"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/vapor/sqlite-nio", from: "1.13.2"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        // C libraries from Debian (libzstd-dev, librdkafka-dev), found through pkg-config.
        .systemLibrary(
            name: "CZstd",
            pkgConfig: "libzstd",
            providers: [.apt(["libzstd-dev"])]
        ),
        .systemLibrary(
            name: "CRdKafka",
            pkgConfig: "rdkafka",
            providers: [.apt(["librdkafka-dev"])]
        ),

        // The wire format of WIRE.md: envelope, zero-copy protobuf views, zstd,
        // encoder, capture files, canonical JSON.
        .target(
            name: "TelematicsWire",
            dependencies: ["CZstd"]
        ),

        // Kafka through librdkafka: consumer, producer, admin, embedded mock cluster.
        .target(
            name: "TelematicsKafka",
            dependencies: ["CRdKafka", "TelematicsWire"]
        ),

        // A deterministic fleet of simulated vehicles writing envelopes.
        .target(
            name: "FleetSimulator",
            dependencies: ["TelematicsWire"]
        ),

        // Storage of what the pipeline writes: one protocol, SQLite and PostgreSQL behind it.
        .target(
            name: "TelematicsStores",
            dependencies: [
                "TelematicsWire",
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),

        // The `telematics` command.
        .executableTarget(
            name: "telematics",
            dependencies: [
                "TelematicsWire",
                "TelematicsKafka",
                "FleetSimulator",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        .testTarget(
            name: "TelematicsWireTests",
            dependencies: ["TelematicsWire"]
        ),
        .testTarget(
            name: "TelematicsKafkaTests",
            dependencies: ["TelematicsKafka", "FleetSimulator", "TelematicsWire"]
        ),

        .testTarget(
            name: "TelematicsStoresTests",
            dependencies: [
                "TelematicsStores", "TelematicsWire",
                // The tests create a database per test on the throwaway server.
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),

        // Benchmarks (package-benchmark): `swift package benchmark`.
        .executableTarget(
            name: "WireDecode",
            dependencies: [
                "TelematicsWire",
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/WireDecode",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
