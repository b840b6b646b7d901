import EctoConfig
import EctoHostKeys

/// Decides whether to trust the key a server presented, from the tunnel's policy, its pin and
/// known_hosts. Pure apart from reading (and, for accept-new, appending to) known_hosts.
enum HostKeyVerifier {
    enum Verdict: Equatable {
        /// Known (or pinned) key.
        case trusted(String)
        /// accept-new and the host was unknown: record it, then trust it.
        case recordNew
        /// Refused: the message says why and what to do.
        case refused(String)
    }

    static func lookupName(_ config: TunnelConfig) -> String {
        KnownHostsFile.lookupName(host: config.knownHostsKey.host, port: config.knownHostsKey.port)
    }

    static func verify(key: HostKey, config: TunnelConfig, knownHosts: KnownHostsFile) -> Verdict {
        let name = lookupName(config)
        let offered = "\(key.algorithm) \(key.fingerprintSHA256)"
        if let pin = config.hostKeyFingerprint {
            if key.fingerprintSHA256 == pin { return .trusted("pinned fingerprint \(pin)") }
            return .refused(
                "HOST KEY MISMATCH for \(name): the server presented \(offered), but host_key_fingerprint pins \(pin). "
                    + "Someone may be intercepting the connection, or the server's key was replaced. "
                    + "If the new key is legitimate (verify out of band), set host_key_fingerprint = \"\(key.fingerprintSHA256)\".")
        }
        let (host, port) = config.knownHostsKey  // host_key_alias, else the target
        switch knownHosts.check(host: host, port: port, key: key) {
        case .match(let line):
            return .trusted("\(knownHosts.path):\(line)")
        case .revoked(let line):
            return .refused("HOST KEY REVOKED for \(name): \(offered) is marked @revoked in \(knownHosts.path):\(line)")
        case .mismatch(let known):
            let old = known.map { "\($0.key.algorithm) \($0.key.fingerprintSHA256) (\(knownHosts.path):\($0.line))" }
                .joined(separator: ", ")
            let sameType = known.contains { $0.sameAlgorithm }
            return .refused(
                (sameType ? "HOST KEY CHANGED" : "HOST KEY NOT MATCHING THE KNOWN KEY TYPES") + " for \(name): "
                    + "known: \(old); the server now presents \(offered). "
                    + "Someone could be eavesdropping (man-in-the-middle), or the host key was just replaced. "
                    + "Nothing was sent. If the change is legitimate (verify the new fingerprint out of band), remove the old key with "
                    + "`ssh-keygen -R '\(name)' -f \(knownHosts.path)` and trust the new one.")
        case .notFound:
            if config.hostKeyPolicy == .acceptNew { return .recordNew }
            return .refused(
                "HOST KEY UNKNOWN for \(name): the server presents \(offered), which is not in \(knownHosts.path). "
                    + "Verify this fingerprint out of band (on the server: `ssh-keygen -lf /etc/ssh/ssh_host_\(shortType(key.algorithm))_key.pub`), then trust it with: "
                    + "echo '\(KnownHostsFile.line(host: host, port: port, key: key))' >> \(knownHosts.path)"
                    + " — or pin it with host_key_fingerprint = \"\(key.fingerprintSHA256)\", or set host_key_policy = \"accept-new\" to record it on first use.")
        }
    }

    private static func shortType(_ algorithm: String) -> String {
        if algorithm == "ssh-ed25519" { return "ed25519" }
        if algorithm.hasPrefix("ecdsa") { return "ecdsa" }
        if algorithm == "ssh-rsa" { return "rsa" }
        return "*"
    }
}
