// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "ecto-tunnel",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "ecto-tunnel", targets: ["EctoTunnelCLI"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // libssh2 from the system (Debian: libssh2-1-dev), plus a shim for its function-like macros.
        .systemLibrary(
            name: "CLibSSH2",
            pkgConfig: "libssh2",
            providers: [.apt(["libssh2-1-dev"])]
        ),
        // OpenSSL's libcrypto (Debian: libssl-dev), for user keys libssh2 1.10 cannot sign with:
        // PEM keys, RSA from OpenSSH-format components, rsa-sha2 signatures, AES-CTR, SHA-512.
        .systemLibrary(
            name: "CLibCrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        // Linux syscalls Swift's Glibc module lacks (accept4, eventfd).
        .target(name: "CEctoLinux"),
        // What the production modules would otherwise take from Foundation beyond FoundationEssentials:
        // threads (pthread), printf-style number formatting, whitespace trimming, path arithmetic.
        .target(name: "EctoPlatform", dependencies: ["CEctoLinux"]),
        // Pure Swift: digests, SSH key blobs, fingerprints, OpenSSH known_hosts.
        .target(name: "EctoHostKeys", dependencies: ["EctoPlatform"]),
        // The only module that touches libssh2 pointers.
        .target(name: "EctoSSH", dependencies: ["CLibSSH2", "CLibCrypto", "EctoHostKeys", "EctoPlatform"]),
        // Config value types, TOML parser with line-numbered errors, ~/.ssh/config lookup.
        .target(name: "EctoConfig", dependencies: ["EctoHostKeys", "EctoPlatform"]),
        // The status of a tunnel, one value type on both sides of the control socket (the status contract).
        .target(name: "EctoStatus"),
        // Session driver threads, event loop, forwarding, reconnect state machine, backoff.
        .target(
            name: "EctoTunnel",
            dependencies: [
                "EctoSSH", "EctoConfig", "EctoHostKeys", "EctoPlatform", "EctoStatus", "CEctoLinux",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The control protocol (HTTP/1.1 + JSON on a Unix socket): types, server, client.
        .target(
            name: "EctoControl",
            dependencies: ["CEctoLinux", "EctoPlatform", "EctoStatus", .product(name: "Logging", package: "swift-log")]
        ),
        // Composition root: supervisor, control socket, signals.
        .target(
            name: "EctoDaemon",
            dependencies: [
                "EctoTunnel", "EctoConfig", "EctoControl", "EctoProbe", "EctoPlatform", "EctoStatus", "CEctoLinux",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Operator workflows the CLI drives: host key fetch and trust (the daemon's policy), the
        // background daemon, the systemd installer, waiting until a tunnel is up.
        .target(
            name: "EctoOperator",
            dependencies: [
                "EctoTunnel", "EctoSSH", "EctoHostKeys", "EctoConfig", "EctoControl", "EctoStatus", "EctoProbe",
                "EctoPlatform",
                "CEctoLinux",
            ]
        ),
        .executableTarget(
            name: "EctoTunnelCLI",
            dependencies: [
                "EctoDaemon", "EctoOperator", "EctoConfig", "EctoControl", "EctoProbe", "EctoSSH", "EctoHostKeys",
                "EctoPlatform", "EctoStatus",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // End-to-end probes through a tunnel's local end (tcp, http, websocket); plain POSIX sockets.
        .target(name: "EctoProbe", dependencies: ["EctoConfig", "EctoHostKeys", "EctoPlatform", "EctoStatus"]),
        // Test-only helpers: throwaway sshd, echo servers, stand-in gateway, free ports, subprocesses.
        .target(name: "EctoTestSupport", dependencies: ["EctoHostKeys"]),
        .testTarget(name: "EctoPlatformTests", dependencies: ["EctoPlatform"]),
        .testTarget(name: "EctoConfigTests", dependencies: ["EctoConfig", "EctoHostKeys"]),
        .testTarget(name: "EctoHostKeysTests", dependencies: ["EctoHostKeys"]),
        .testTarget(name: "EctoSSHTests", dependencies: ["EctoSSH", "EctoHostKeys", "EctoTestSupport"]),
        .testTarget(name: "EctoTunnelTests", dependencies: ["EctoTunnel", "EctoStatus"]),
        .testTarget(name: "EctoControlTests", dependencies: ["EctoControl", "EctoStatus"]),
        .testTarget(name: "EctoStatusTests", dependencies: ["EctoStatus", "EctoControl"]),
        .testTarget(name: "EctoDaemonTests", dependencies: ["EctoDaemon", "EctoStatus", "EctoControl", "EctoConfig"]),
        .testTarget(name: "EctoTunnelCLITests", dependencies: ["EctoTunnelCLI", "EctoStatus"]),
        .testTarget(
            name: "EctoOperatorTests", dependencies: ["EctoOperator", "EctoTunnel", "EctoHostKeys", "EctoPlatform"]),
        .testTarget(name: "EctoProbeTests", dependencies: ["EctoProbe", "EctoTestSupport", "EctoConfig"]),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["EctoTestSupport", "EctoConfig", "EctoControl", "EctoStatus", "EctoTunnelCLI"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
