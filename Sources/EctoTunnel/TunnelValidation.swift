import EctoConfig
import EctoHostKeys
import EctoPlatform
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The files a tunnel needs, checked with the rules the driver applies when it connects, so that
/// `check`, `install`, `connect` and the daemon's start all say the same thing before any
/// connection is tried: the private key (ssh's permission rules, `Credentials.readSecretFile`; a
/// format and key type the linked libssh2 can use; encrypted only with a passphrase setting), the
/// passphrase file, and a `known_hosts` entry for the target when the policy is strict.
///
/// Every problem names file:line and the key (the line of the key in the tunnel's table, else in
/// `[defaults]`, else the table's header).
public enum TunnelValidation {
    public struct Report: Sendable {
        /// What the daemon refuses when the tunnel connects (it goes to `failed`).
        public var errors: [ConfigError] = []
        /// What will probably not work (an RSA key against a modern OpenSSH server, an unknown host).
        public var warnings: [ConfigError] = []
    }

    /// Checks every tunnel of `config`. Problems of disabled tunnels are warnings.
    /// `environment`: the process environment (`SSH_AUTH_SOCK`, `CREDENTIALS_DIRECTORY`).
    /// `text`: the config's text when it is not (yet) what the file holds, for line numbers.
    public static func check(_ config: Config, environment: [String: String], text: String? = nil) -> Report {
        let lines = (text ?? (try? String(contentsOfFile: config.path, encoding: .utf8)))?.split(separator: "\n", omittingEmptySubsequences: false)
            .map(String.init) ?? []
        var report = Report()
        for tunnel in config.tunnels {
            var errors: [ConfigError] = []
            func problem(_ key: String, _ message: String, warning: Bool = false) {
                let error = ConfigError(
                    file: config.path, line: line(of: key, in: tunnel, lines: lines), key: "tunnels.\(tunnel.name).\(key)", message: message)
                if warning { report.warnings.append(error) } else { errors.append(error) }
            }
            checkKey(tunnel, environment: environment, problem: problem)
            checkKnownHosts(tunnel, problem: problem)
            if tunnel.enabled {
                report.errors += errors
            } else {
                report.warnings += errors.map { var e = $0; e.message += " (the tunnel is disabled)"; return e }
            }
        }
        return report
    }

    /// `ConfigLoader.load` plus `check`: errors of both are thrown together; warnings of both are
    /// in the config.
    public static func load(path: String, environment: [String: String]) throws(ConfigErrors) -> Config {
        var config = try ConfigLoader.load(path: path)
        let report = check(config, environment: environment)
        if !report.errors.isEmpty { throw ConfigErrors(report.errors) }
        config.warnings += report.warnings
        return config
    }

    private static func checkKey(_ tunnel: TunnelConfig, environment: [String: String], problem: (String, String, Bool) -> Void) {
        guard let path = tunnel.identityFile else {
            if (environment["SSH_AUTH_SOCK"] ?? "").isEmpty {
                problem(
                    "identity_file",
                    "no identity_file, and SSH_AUTH_SOCK is not set here: the daemon needs an identity file or an ssh-agent", true)
            }
            return
        }
        // What the file is first (a public key or a PuTTY file is better named than its mode),
        // then ssh's permission rules, exactly as the driver applies them.
        let bytes: [UInt8]
        do {
            bytes = try Credentials.readSecretFile(path, what: "private key", checkMode: false)
        } catch {
            problem("identity_file", error.message, false)
            return
        }
        let format = PrivateKeyFormat.inspect(bytes)
        if case .usable = format {
            do {
                _ = try Credentials.readSecretFile(path, what: "private key")
            } catch {
                problem("identity_file", error.message, false)
            }
        }
        let hasPassphrase = tunnel.identityPassphraseFile != nil || tunnel.identityPassphraseCredential != nil
        switch format {
        case .usable(let type, let encrypted):
            if encrypted && !hasPassphrase {
                problem(
                    "identity_file",
                    "\(path) is encrypted: set identity_passphrase_file or identity_passphrase_credential (the daemon cannot ask for a passphrase)",
                    false)
            }
            if type == "ssh-rsa" {
                problem(
                    "identity_file",
                    "\(path) is an RSA key: the linked libssh2 (1.10) signs with ssh-rsa (SHA-1) only, which OpenSSH 8.8 and later refuse; use an ed25519 or ecdsa key (ssh-keygen -t ed25519)",
                    true)
            } else if type == "ssh-dss" {
                problem("identity_file", "\(path) is a DSA key, which OpenSSH no longer accepts; use an ed25519 or ecdsa key", true)
            }
        case .unusable(let reason):
            problem("identity_file", "\(path): \(reason)", false)
        }
        if let passphraseFile = tunnel.identityPassphraseFile {
            do {
                _ = try Credentials.readSecretFile(passphraseFile, what: "passphrase file")
            } catch {
                problem("identity_passphrase_file", error.message, false)
            }
        }
    }

    private static func checkKnownHosts(_ tunnel: TunnelConfig, problem: (String, String, Bool) -> Void) {
        guard tunnel.hostKeyPolicy == .strict, tunnel.hostKeyFingerprint == nil,
            FileManager.default.fileExists(atPath: tunnel.knownHosts)
        else { return }
        guard let known = try? KnownHostsFile.load(path: tunnel.knownHosts) else {
            problem("known_hosts", "cannot read \(tunnel.knownHosts)", false)
            return
        }
        let name = KnownHostsFile.lookupName(host: tunnel.target.host, port: Int(tunnel.target.port))
        if known.entries(forHost: tunnel.target.host, port: Int(tunnel.target.port)).isEmpty {
            let port = tunnel.target.port == 22 ? "" : "-p \(tunnel.target.port) "
            problem(
                "known_hosts",
                "\(tunnel.knownHosts) has no entry for \(name): the daemon will refuse the server's key (host_key_policy = \"strict\"). "
                    + "Add it after checking its fingerprint (ssh-keyscan \(port)\(tunnel.target.host) | ssh-keygen -lf -), or let `ecto-tunnel connect` do it",
                true)
        }
    }

    /// The line of `key` in the tunnel's table, else in `[defaults]`, else the table's header.
    static func line(of key: String, in tunnel: TunnelConfig, lines: [String]) -> Int {
        func find(fromHeader header: Int) -> Int? {
            guard header > 0 else { return nil }
            var index = header  // 0-based index of the line after the header
            while index < lines.count {
                let text = lines[index].trimmed(.whitespaces)
                if text.hasPrefix("[") { return nil }
                if text.hasPrefix(key) {
                    let rest = text.dropFirst(key.count).trimmed(.whitespaces)
                    if rest.hasPrefix("=") { return index + 1 }
                }
                index += 1
            }
            return nil
        }
        if let found = find(fromHeader: tunnel.line) { return found }
        if let defaults = lines.firstIndex(where: { $0.trimmed(.whitespaces).hasPrefix("[defaults]") }),
            let found = find(fromHeader: defaults + 1)
        {
            return found
        }
        return tunnel.line
    }
}

/// What kind of private key a file holds, as far as libssh2 1.10 (OpenSSL backend) can use it.
enum PrivateKeyFormat: Equatable {
    /// `type` is the SSH key type (`ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`, …), nil for
    /// PKCS#8, whose type is not visible without decrypting.
    case usable(type: String?, encrypted: Bool)
    case unusable(String)

    static func inspect(_ bytes: [UInt8]) -> PrivateKeyFormat {
        let text = String(decoding: bytes.prefix(64 * 1024), as: UTF8.self)
        if text.hasPrefix("PuTTY-User-Key-File") {
            return .unusable("a PuTTY key, which libssh2 cannot read; convert it: puttygen KEY -O private-openssh -o KEY.openssh")
        }
        if text.hasPrefix("ssh-") || text.hasPrefix("ecdsa-") || text.hasPrefix("sk-") {
            return .unusable("this is a public key; identity_file must name the private key (without .pub)")
        }
        if text.contains("-----BEGIN OPENSSH PRIVATE KEY-----") { return openSSH(text) }
        let encrypted = text.contains("Proc-Type: 4,ENCRYPTED")
        if text.contains("-----BEGIN RSA PRIVATE KEY-----") { return .usable(type: "ssh-rsa", encrypted: encrypted) }
        if text.contains("-----BEGIN EC PRIVATE KEY-----") { return .usable(type: "ecdsa", encrypted: encrypted) }
        if text.contains("-----BEGIN DSA PRIVATE KEY-----") { return .usable(type: "ssh-dss", encrypted: encrypted) }
        if text.contains("-----BEGIN PRIVATE KEY-----") { return .usable(type: nil, encrypted: false) }
        if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") { return .usable(type: nil, encrypted: true) }
        return .unusable("not a private key libssh2 can read (expected an OpenSSH or PEM private key, e.g. from ssh-keygen -t ed25519)")
    }

    private static func openSSH(_ text: String) -> PrivateKeyFormat {
        let body = text.split(separator: "\n").map { $0.trimmed(.whitespaces) }
            .filter { !$0.hasPrefix("-----") && !$0.isEmpty }.joined()
        guard let data = Data(base64Encoded: body) else { return .unusable("a damaged OpenSSH private key (bad base64)") }
        var reader = Reader(bytes: [UInt8](data))
        let magic = Array("openssh-key-v1\0".utf8)
        guard reader.bytes.starts(with: magic) else { return .unusable("a damaged OpenSSH private key (no openssh-key-v1 header)") }
        reader.offset = magic.count
        guard let cipher = reader.string(), reader.string() != nil, reader.string() != nil, let count = reader.uint32(), count >= 1,
            let publicBlob = reader.data()
        else { return .unusable("a damaged OpenSSH private key") }
        var blob = Reader(bytes: publicBlob)
        guard let type = blob.string() else { return .unusable("a damaged OpenSSH private key (no key type)") }
        let supported = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa", "ssh-dss"]
        guard supported.contains(type) else {
            if type.hasPrefix("sk-") {
                return .unusable("a security-key (FIDO, \(type)) key, which libssh2 cannot use; use an ed25519 or ecdsa key file")
            }
            return .unusable("a \(type) key, which libssh2 cannot use; use an ed25519 or ecdsa key")
        }
        return .usable(type: type, encrypted: cipher != "none")
    }

    private struct Reader {
        var bytes: [UInt8]
        var offset = 0
        mutating func uint32() -> Int? {
            guard offset + 4 <= bytes.count else { return nil }
            defer { offset += 4 }
            return Int(bytes[offset]) << 24 | Int(bytes[offset + 1]) << 16 | Int(bytes[offset + 2]) << 8 | Int(bytes[offset + 3])
        }
        mutating func data() -> [UInt8]? {
            guard let length = uint32(), offset + length <= bytes.count else { return nil }
            defer { offset += length }
            return Array(bytes[offset..<offset + length])
        }
        mutating func string() -> String? { data().map { String(decoding: $0, as: UTF8.self) } }
    }
}
