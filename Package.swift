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
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/vapor/sqlite-nio", from: "1.13.2"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        // The call-centre console: HTTP server, metrics in Prometheus format.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
        // YAML settings files for `telematics run` and `telematics config check`.
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
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
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),

        // The pipeline: RULES.md applied to every record, lanes, durable fan-out.
        .target(
            name: "TelematicsPipeline",
            dependencies: [
                "TelematicsWire", "TelematicsKafka", "TelematicsStores",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // Privacy by design: retention, a vehicle's export and erasure, key rotation.
        .target(
            name: "TelematicsPrivacy",
            dependencies: [
                "TelematicsStores", "TelematicsPipeline", "TelematicsWire",
                // Answers the console's privacy API.
                "CallCentre",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // The call centre: alert desk (dedup, acknowledgement, escalation) and
        // the agents' web console with its JSON API, SSE feed and /metrics.
        .target(
            name: "CallCentre",
            dependencies: [
                "TelematicsStores",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),

        // The `telematics` command.
        .executableTarget(
            name: "telematics",
            dependencies: [
                "TelematicsWire",
                "TelematicsKafka",
                "FleetSimulator",
                "TelematicsStores",
                "TelematicsPipeline",
                "TelematicsPrivacy",
                "CallCentre",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),

        // What several test suites share: running the built `telematics` binary,
        // and a throwaway PostgreSQL server with a fresh database per test.
        .target(
            name: "TelematicsTestSupport",
            dependencies: [
                "TelematicsStores", "TelematicsKafka",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/TelematicsTestSupport"
        ),
        .testTarget(
            name: "TelematicsWireTests",
            dependencies: ["TelematicsWire", "TelematicsTestSupport"]
        ),
        .testTarget(
            name: "TelematicsPipelineTests",
            dependencies: [
                "TelematicsPipeline", "TelematicsStores", "TelematicsKafka", "FleetSimulator", "TelematicsWire", "TelematicsTestSupport",
                // The emergency lane's tests run it with a real alert desk.
                "CallCentre",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                // The SIGKILL loop reads the store beside the running pipeline.
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                // The deployment tests parse every YAML file under Deploy/.
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .testTarget(
            name: "TelematicsKafkaTests",
            dependencies: ["TelematicsKafka", "FleetSimulator", "TelematicsWire", "TelematicsTestSupport"]
        ),

        .testTarget(
            name: "TelematicsStoresTests",
            dependencies: [
                "TelematicsStores", "TelematicsWire", "TelematicsTestSupport",
                // The schema-upgrade tests write version-1 databases directly.
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
            ]
        ),

        .testTarget(
            name: "TelematicsPrivacyTests",
            dependencies: [
                "TelematicsPrivacy", "TelematicsStores", "TelematicsPipeline", "TelematicsWire", "TelematicsTestSupport",
                "CallCentre",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),

        .testTarget(
            name: "CallCentreTests",
            dependencies: [
                "CallCentre", "TelematicsStores", "TelematicsTestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                // A raw HTTP client for the server-sent events stream.
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
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
        // Our decoder timed like the zstd-only C peer (capture in memory, one
        // loop): the decode ratios of the CI gate, and instructions per record
        // under callgrind. Needs only TelematicsWire, so the gate builds little.
        .executableTarget(
            name: "decode-loop",
            dependencies: ["TelematicsWire"],
            path: "Benchmarks/DecodeLoop"
        ),
    ]
)
