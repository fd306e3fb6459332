// swift-tools-version:6.1
import PackageDescription

/// Settings every Squall target shares: Swift 6 language mode (strict concurrency) and explicit `any`.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny")
]

let package = Package(
    name: "squall",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "squall-producer", targets: ["Producer"]),
        .executable(name: "squall-consumer", targets: ["Consumer"]),
        .executable(name: "squall-observer", targets: ["Observer"]),
        .executable(name: "squall-collector", targets: ["Collector"]),
        .executable(name: "squallctl", targets: ["SquallCtl"]),
        .library(name: "SquallCore", targets: ["SquallCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        // Tests only: an independent SHA-256 to check what the engine computes with OpenSSL.
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        // The health/readiness/metrics endpoint: HTTP server, metrics API, Prometheus exposition.
        // Default traits off: they pull in swift-configuration, which Squall does not use.
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // C shims: a module map and a header of typed wrappers, nothing else.
        .systemLibrary(
            name: "CRabbitMQ",
            pkgConfig: "librabbitmq",
            providers: [.apt(["librabbitmq-dev"])]
        ),
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        // CRC32C with the processor's instruction (header only: no library to link).
        .systemLibrary(name: "CChecksum"),
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),

        .target(
            name: "SquallCore",
            dependencies: [
                "CRabbitMQ",
                "CLibPQ",
                "CCurl",
                "COpenSSL",
                "CChecksum",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),

        .executableTarget(name: "Producer", dependencies: serviceDependencies, swiftSettings: swiftSettings),
        .executableTarget(name: "Consumer", dependencies: serviceDependencies, swiftSettings: swiftSettings),
        .executableTarget(name: "Observer", dependencies: serviceDependencies, swiftSettings: swiftSettings),
        .executableTarget(name: "Collector", dependencies: serviceDependencies, swiftSettings: swiftSettings),
        .executableTarget(name: "SquallCtl", dependencies: serviceDependencies, swiftSettings: swiftSettings),
        // bench/transport's measuring tool; not a product.
        .executableTarget(name: "TransportBench", dependencies: serviceDependencies, swiftSettings: swiftSettings),
        // bench/repository's measuring program; not a product, so no image ships it.
        .executableTarget(name: "RepositoryBench", dependencies: ["SquallCore"], swiftSettings: swiftSettings),

        // What the integration and end-to-end tests share: the real servers' settings, the Python
        // fixtures' launchers, and the built executables as child processes.
        .target(
            name: "SquallTestSupport",
            dependencies: ["SquallCore"],
            path: "Tests/SquallTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "SquallCoreTests",
            dependencies: [
                "SquallCore", "CChecksum",
                // An independent SHA-256 to check the engine's (OpenSSL's) against.
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "SquallCore", "SquallTestSupport", "CLibPQ", "CRabbitMQ", "CCurl", "CChecksum",
                // Hashing objects read back from the S3 emulator, which checks no checksum itself.
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "SquallCore", "SquallTestSupport", "CRabbitMQ", .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)

/// What every executable links: the core library, argument parsing, logging and lifecycle.
var serviceDependencies: [Target.Dependency] {
    [
        "SquallCore",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
        .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
    ]
}
