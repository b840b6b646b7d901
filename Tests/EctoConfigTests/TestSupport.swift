import Testing
@testable import EctoConfig

/// An in-memory file system and user for the loader.
struct FakeSystem {
    var home = "/home/alice"
    var user = "alice"
    var files: [String: String] = [
        "/home/alice/.ssh/known_hosts": "gw.example.net ssh-ed25519 AAAA\n",
        "/home/alice/.ssh/id_ed25519": "KEY\n",
    ]
    var extraDirectories: Set<String> = []
    var others: Set<String> = []
    var variables: [String: String] = [:]
    var resolvable: Set<String> = []

    var environment: ConfigEnvironment {
        let files = self.files
        let dirs = extraDirectories
        let others = self.others
        let resolvable = self.resolvable
        @Sendable func isDirectory(_ p: String) -> Bool {
            let prefix = p.hasSuffix("/") ? p : p + "/"
            return dirs.contains(p) || files.keys.contains { $0.hasPrefix(prefix) }
                || dirs.contains { $0.hasPrefix(prefix) }
        }
        return ConfigEnvironment(
            home: home,
            user: user,
            variables: variables,
            fileExists: { p in
                if files[p] != nil { return .regular }
                if others.contains(p) { return .other }
                return isDirectory(p) ? .directory : .missing
            },
            readFile: { files[$0] },
            listDirectory: { dir in
                guard isDirectory(dir) else { return nil }
                let prefix = dir.hasSuffix("/") ? dir : dir + "/"
                var names: Set<String> = []
                for p in Array(files.keys) + Array(dirs) where p.hasPrefix(prefix) {
                    if let first = p.dropFirst(prefix.count).split(separator: "/").first { names.insert(String(first)) }
                }
                return Array(names)
            },
            resolveHost: { resolvable.contains($0) }
        )
    }
}

let configPath = "/cfg/config.toml"

func parseConfig(_ text: String, _ system: FakeSystem = FakeSystem()) throws(ConfigErrors) -> Config {
    try ConfigLoader.parse(text: text, path: configPath, environment: system.environment)
}

/// The errors for `text`; records an issue if it parses cleanly.
func configErrors(
    _ text: String, _ system: FakeSystem = FakeSystem(), sourceLocation: SourceLocation = #_sourceLocation
) -> [ConfigError] {
    do {
        let config = try parseConfig(text, system)
        Issue.record("expected errors, got \(config)", sourceLocation: sourceLocation)
        return []
    } catch {
        return error.errors
    }
}

/// Checks that exactly one error was reported and it has this line, key and message fragment.
func expectSingleError(
    _ text: String, _ system: FakeSystem = FakeSystem(), line: Int, key: String?, contains fragment: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    let errors = configErrors(text, system, sourceLocation: sourceLocation)
    #expect(errors.count == 1, "errors: \(errors.map(\.description))", sourceLocation: sourceLocation)
    guard let e = errors.first else { return }
    #expect(e.file == configPath, sourceLocation: sourceLocation)
    #expect(e.line == line, "\(e)", sourceLocation: sourceLocation)
    #expect(e.key == key, "\(e)", sourceLocation: sourceLocation)
    #expect(e.message.contains(fragment), "\(e)", sourceLocation: sourceLocation)
}

/// A minimal valid tunnel table body.
let validBody = """
    target = "ops@gw.example.net"
    local = "127.0.0.1:18789"
    remote = "127.0.0.1:18789"
    """

let goodFingerprint = "SHA256:" + String(repeating: "x", count: 42) + "A"
