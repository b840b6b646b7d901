import EctoConfig
import EctoHostKeys
import EctoPlatform
import EctoSSH
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The files a tunnel needs, checked with the rules the driver applies when it connects, so that
/// `check`, `install`, `connect` and the daemon's start all say the same thing before any
/// connection is tried: every identity file (`IdentityCheck` with the signer's own decryption:
/// ssh's permission rules, a format and key type the authenticator can use, encrypted only with a
/// passphrase setting, decrypted with the passphrase file when there is one), the passphrase file,
/// and a `known_hosts` entry for the target when the policy is strict.
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
        let lines =
            (text ?? (try? String(contentsOfFile: config.path, encoding: .utf8)))?.split(
                separator: "\n", omittingEmptySubsequences: false
            )
            .map(String.init) ?? []
        var report = Report()
        for tunnel in config.tunnels {
            var errors: [ConfigError] = []
            func problem(_ key: String, _ message: String, warning: Bool = false) {
                let error = ConfigError(
                    file: config.path, line: line(of: key, in: tunnel, lines: lines),
                    key: "tunnels.\(tunnel.name).\(key)", message: message)
                if warning { report.warnings.append(error) } else { errors.append(error) }
            }
            checkKey(tunnel, environment: environment, problem: problem)
            checkKnownHosts(tunnel, problem: problem)
            if tunnel.enabled {
                report.errors += errors
            } else {
                report.warnings += errors.map {
                    var e = $0
                    e.message += " (the tunnel is disabled)"
                    return e
                }
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

    /// The environment that judges key files the way the authenticator will use them: mode and
    /// owner, format, key type, encryption, and (with a readable passphrase file) decryption by the
    /// same code that signs (`SSHPrivateKey`).
    public static var judgingKeys: ConfigEnvironment {
        var environment = ConfigEnvironment.current
        environment.judgeKeyFiles = true
        environment.keyVerifier = { bytes, passphrase in SSHPrivateKey.problem(bytes, passphrase: passphrase) }
        return environment
    }

    private static func checkKey(
        _ tunnel: TunnelConfig, environment: [String: String], problem: (String, String, Bool) -> Void
    ) {
        guard !tunnel.identityFiles.isEmpty else {
            // ssh's defaults are tried after the agent (Authenticator): only when none exists and
            // no agent is set is there nothing to authenticate with.
            let home = environment["HOME"] ?? ""
            let defaults = ["id_ed25519", "id_ecdsa", "id_rsa"].map { "\(home)/.ssh/\($0)" }
            if (environment["SSH_AUTH_SOCK"] ?? "").isEmpty
                && !defaults.contains(where: { FileManager.default.fileExists(atPath: $0) })
            {
                problem(
                    "identity_file",
                    "no identity_file, no ~/.ssh/id_ed25519, id_ecdsa or id_rsa, and SSH_AUTH_SOCK is not set here: the daemon needs a key file or an ssh-agent",
                    true)
            }
            return
        }
        let judging = judgingKeys
        let passphraseConfigured = tunnel.identityPassphraseFile != nil || tunnel.identityPassphraseCredential != nil
        let passphrase = tunnel.identityPassphraseFile.flatMap { judging.readBytes($0) }.map(
            IdentityCheck.passphraseBytes)
        for path in tunnel.identityFiles {
            if let message = IdentityCheck.problem(
                privateKey: path, passphraseConfigured: passphraseConfigured, passphrase: passphrase,
                environment: judging)
            {
                problem("identity_file", message, false)
            }
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
        // Every jump host's key is checked under its own name; host_key_fingerprint pins the target
        // only, which is looked up under host_key_alias when set (ssh-keyscan still asks the target).
        var hosts = tunnel.jump.map {
            (lookup: $0.host, lookupPort: Int($0.port), host: $0.host, port: Int($0.port), key: "jump")
        }
        if tunnel.hostKeyFingerprint == nil {
            let (alias, aliasPort) = tunnel.knownHostsKey
            hosts.append((alias, aliasPort, tunnel.target.host, Int(tunnel.target.port), "known_hosts"))
        }
        guard tunnel.hostKeyPolicy == .strict, !hosts.isEmpty, FileManager.default.fileExists(atPath: tunnel.knownHosts)
        else { return }
        guard let known = try? KnownHostsFile.load(path: tunnel.knownHosts) else {
            problem("known_hosts", "cannot read \(tunnel.knownHosts)", false)
            return
        }
        for (lookup, lookupPort, host, port, key) in hosts
        where known.entries(forHost: lookup, port: lookupPort).isEmpty {
            let name = KnownHostsFile.lookupName(host: lookup, port: lookupPort)
            let portOption = port == 22 ? "" : "-p \(port) "
            let what = key == "jump" ? "the jump host \(name)" : name
            problem(
                key,
                "\(tunnel.knownHosts) has no entry for \(what): the daemon will refuse the server's key (host_key_policy = \"strict\"). "
                    + "Add it after checking its fingerprint (ssh-keyscan \(portOption)\(host) | ssh-keygen -lf -)"
                    + (key == "jump" ? "" : ", or let `ecto-tunnel connect` do it"),
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
