import EctoConfig
import EctoHostKeys

/// Decides whether to trust the key a server presented, from the tunnel's policy, its pin and
/// known_hosts: the one host key policy there is. The session drivers use it before they
/// authenticate, and `ecto-tunnel connect` (`EctoOperator.HostKeyTrust`) before it records a key,
/// so connect never trusts a key the daemon would then refuse. Pure: known_hosts is read (and, for
/// accept-new, appended to) by the caller.
public enum HostKeyVerifier {
    /// The decision, with the facts each case rests on.
    public enum Decision: Equatable, Sendable {
        /// The key is the one `host_key_fingerprint` pins.
        case pinned(String)
        /// known_hosts has this key for the host, on `line`.
        case known(line: Int)
        /// accept-new and the host is unknown: record the key, then trust it.
        case recordNew
        /// Refused.
        case refused(Refusal)
    }

    /// Why a key is refused.
    public enum Refusal: Equatable, Sendable {
        /// `host_key_fingerprint` pins another key.
        case pinMismatch(pin: String)
        /// known_hosts marks this key `@revoked` (on `line`).
        case revoked(line: Int)
        /// known_hosts has other keys for this host. `sameType`: one of them has the presented
        /// key's type (the key changed); else only other types are known (as OpenSSH, refused too:
        /// a server that suddenly shows a new key type is no safer than one with a new key).
        case changed(known: [KnownKey], sameType: Bool)
        /// Not in known_hosts, and the policy is strict.
        case unknown
    }

    /// What the session driver acts on: trust, record, or refuse with the message to log.
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

    /// The decision for `key`, presented by `host`:`port`.
    public static func decide(
        key: HostKey, host: String, port: Int, pin: String?, policy: HostKeyPolicy, knownHosts: KnownHostsFile
    ) -> Decision {
        if let pin {
            return key.fingerprintSHA256 == pin ? .pinned(pin) : .refused(.pinMismatch(pin: pin))
        }
        switch knownHosts.check(host: host, port: port, key: key) {
        case .match(let line):
            return .known(line: line)
        case .revoked(let line):
            return .refused(.revoked(line: line))
        case .mismatch(let known):
            return .refused(.changed(known: known, sameType: known.contains { $0.sameAlgorithm }))
        case .notFound:
            return policy == .acceptNew ? .recordNew : .refused(.unknown)
        }
    }

    /// The host key algorithms to ask the server for, in order: those known_hosts has for the
    /// host first (as ssh does), so a server with several host keys presents the one we can
    /// check; nil when there is nothing to prefer (a pin, or an unknown host).
    public static func algorithmPreference(
        host: String, port: Int, pin: String?, knownHosts: KnownHostsFile, supported: [String]
    ) -> [String]? {
        guard pin == nil else { return nil }
        let preferred = knownHosts.knownAlgorithms(host: host, port: port)
        guard !preferred.isEmpty else { return nil }
        return preferred.filter(supported.contains) + supported.filter { !preferred.contains($0) }
    }

    static func verify(key: HostKey, config: TunnelConfig, knownHosts: KnownHostsFile) -> Verdict {
        let (host, port) = config.knownHostsKey  // host_key_alias, else the target
        let decision = decide(
            key: key, host: host, port: port, pin: config.hostKeyFingerprint,
            policy: config.hostKeyPolicy, knownHosts: knownHosts)
        switch decision {
        case .pinned(let pin): return .trusted("pinned fingerprint \(pin)")
        case .known(let line): return .trusted("\(knownHosts.path):\(line)")
        case .recordNew: return .recordNew
        case .refused(let refusal): return .refused(message(refusal, key: key, config: config, knownHosts: knownHosts))
        }
    }

    /// The daemon's log message for a refusal: what happened and what to do.
    static func message(_ refusal: Refusal, key: HostKey, config: TunnelConfig, knownHosts: KnownHostsFile) -> String {
        let name = lookupName(config)
        let offered = "\(key.algorithm) \(key.fingerprintSHA256)"
        switch refusal {
        case .pinMismatch(let pin):
            return
                "HOST KEY MISMATCH for \(name): the server presented \(offered), but host_key_fingerprint pins \(pin). "
                + "Someone may be intercepting the connection, or the server's key was replaced. "
                + "If the new key is legitimate (verify out of band), set host_key_fingerprint = \"\(key.fingerprintSHA256)\"."
        case .revoked(let line):
            return "HOST KEY REVOKED for \(name): \(offered) is marked @revoked in \(knownHosts.path):\(line)"
        case .changed(let known, let sameType):
            let old = known.map { "\($0.key.algorithm) \($0.key.fingerprintSHA256) (\(knownHosts.path):\($0.line))" }
                .joined(separator: ", ")
            return (sameType ? "HOST KEY CHANGED" : "HOST KEY NOT MATCHING THE KNOWN KEY TYPES") + " for \(name): "
                + "known: \(old); the server now presents \(offered). "
                + "Someone could be eavesdropping (man-in-the-middle), or the host key was just replaced. "
                + "Nothing was sent. If the change is legitimate (verify the new fingerprint out of band), remove the old key with "
                + "`ssh-keygen -R '\(name)' -f \(knownHosts.path)` and trust the new one."
        case .unknown:
            return "HOST KEY UNKNOWN for \(name): the server presents \(offered), which is not in \(knownHosts.path). "
                + "Verify this fingerprint out of band (on the server: `ssh-keygen -lf /etc/ssh/ssh_host_\(shortType(key.algorithm))_key.pub`), then trust it with: "
                + "echo '\(KnownHostsFile.line(host: config.knownHostsKey.host, port: config.knownHostsKey.port, key: key))' >> \(knownHosts.path)"
                + " — or pin it with host_key_fingerprint = \"\(key.fingerprintSHA256)\", or set host_key_policy = \"accept-new\" to record it on first use."
        }
    }

    private static func shortType(_ algorithm: String) -> String {
        if algorithm == "ssh-ed25519" { return "ed25519" }
        if algorithm.hasPrefix("ecdsa") { return "ecdsa" }
        if algorithm == "ssh-rsa" { return "rsa" }
        return "*"
    }
}
