import EctoConfig
import EctoHostKeys
import Testing

@testable import EctoTunnel

/// The daemon's host key policy: pin, then known_hosts, then the policy for unknown hosts.
@Suite struct HostKeyVerifierTests {
    static let ed1 = try! HostKey(
        openSSHLine: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBSArfpy3brUKQ2MmMNEm8rr/ed2vZf5tm0i88cEH4cD")
    static let ed2 = try! HostKey(
        openSSHLine: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID8NvGR3NyPif5HjYqGW+BHcClO2e+cY9Ll15B9TmCIr")
    static let ec256 = try! HostKey(
        openSSHLine:
            "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEUfWD7diyRgDUTLFM7e829md1HfcnykgbYIWtL01jhjTMSXOZj7wDAfhrDMj4eua5eNvbrGsTdoV+vxHUXeE/Q="
    )

    func config(pin: String? = nil, policy: HostKeyPolicy = .strict) throws -> TunnelConfig {
        var config = try #require(
            try ConfigLoader.parse(
                text:
                    "[tunnels.t]\ntarget = \"me@gw.example:2222\"\nlocal = \"127.0.0.1:1\"\nremote = \"127.0.0.1:2\"\nknown_hosts = \"/k\"\nhost_key_policy = \"accept-new\"\n",
                path: "/c"
            ).tunnels.first)
        config.hostKeyFingerprint = pin
        config.hostKeyPolicy = policy
        return config
    }

    func known(_ lines: String...) -> KnownHostsFile {
        KnownHostsFile.parse(lines.joined(separator: "\n") + "\n", path: "/k")
    }

    @Test func pinDecidesAloneAndKnownHostsIsNotConsulted() throws {
        let hosts = known("[gw.example]:2222 " + Self.ed2.openSSHLine)
        #expect(
            HostKeyVerifier.verify(
                key: Self.ed1, config: try config(pin: Self.ed1.fingerprintSHA256), knownHosts: hosts)
                == .trusted("pinned fingerprint \(Self.ed1.fingerprintSHA256)"))
        guard
            case .refused(let message) = HostKeyVerifier.verify(
                key: Self.ed2, config: try config(pin: Self.ed1.fingerprintSHA256), knownHosts: hosts)
        else {
            Issue.record("a key other than the pinned one must be refused")
            return
        }
        #expect(
            message.hasPrefix("HOST KEY MISMATCH for [gw.example]:2222")
                && message.contains("host_key_fingerprint = \"\(Self.ed2.fingerprintSHA256)\""))
    }

    @Test func knownHostsMatchChangeRevocationAndUnknown() throws {
        let strict = try config()
        #expect(
            HostKeyVerifier.verify(
                key: Self.ed1, config: strict, knownHosts: known("[gw.example]:2222 " + Self.ed1.openSSHLine))
                == .trusted("/k:1"))
        let changed = HostKeyVerifier.verify(
            key: Self.ed2, config: strict, knownHosts: known("[gw.example]:2222 " + Self.ed1.openSSHLine))
        #expect(
            changed
                == .refused(
                    HostKeyVerifier.message(
                        .changed(known: [KnownKey(line: 1, key: Self.ed1, sameAlgorithm: true)], sameType: true),
                        key: Self.ed2, config: strict,
                        knownHosts: known("[gw.example]:2222 " + Self.ed1.openSSHLine))))
        if case .refused(let message) = changed {
            #expect(
                message.hasPrefix("HOST KEY CHANGED") && message.contains("ssh-keygen -R '[gw.example]:2222' -f /k"))
        }
        if case .refused(let message) = HostKeyVerifier.verify(
            key: Self.ed1, config: strict, knownHosts: known("[gw.example]:2222 " + Self.ec256.openSSHLine))
        {
            #expect(message.hasPrefix("HOST KEY NOT MATCHING THE KNOWN KEY TYPES"))
        } else {
            Issue.record("a key of a type known_hosts does not have for the host must be refused")
        }
        if case .refused(let message) = HostKeyVerifier.verify(
            key: Self.ed1, config: strict, knownHosts: known("@revoked [gw.example]:2222 " + Self.ed1.openSSHLine))
        {
            #expect(message.hasPrefix("HOST KEY REVOKED") && message.contains("/k:1"))
        } else {
            Issue.record("a revoked key must be refused")
        }
        if case .refused(let message) = HostKeyVerifier.verify(key: Self.ed1, config: strict, knownHosts: known()) {
            #expect(message.hasPrefix("HOST KEY UNKNOWN") && message.contains("echo '[gw.example]:2222 ssh-ed25519 "))
        } else {
            Issue.record("an unknown host must be refused under the strict policy")
        }
        #expect(
            HostKeyVerifier.verify(key: Self.ed1, config: try config(policy: .acceptNew), knownHosts: known())
                == .recordNew)
        // accept-new records only unknown hosts: a changed key stays refused.
        #expect(
            HostKeyVerifier.decide(
                key: Self.ed2, host: "gw.example", port: 2222, pin: nil, policy: .acceptNew,
                knownHosts: known("[gw.example]:2222 " + Self.ed1.openSSHLine))
                == .refused(.changed(known: [KnownKey(line: 1, key: Self.ed1, sameAlgorithm: true)], sameType: true)))
    }

    @Test func knownAlgorithmsAreAskedForFirst() {
        let supported = ["ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512"]
        let hosts = known("[gw.example]:2222 " + Self.ec256.openSSHLine)
        #expect(
            HostKeyVerifier.algorithmPreference(
                host: "gw.example", port: 2222, pin: nil, knownHosts: hosts, supported: supported)
                == ["ecdsa-sha2-nistp256", "ssh-ed25519", "rsa-sha2-512"])
        #expect(
            HostKeyVerifier.algorithmPreference(
                host: "gw.example", port: 2222, pin: "SHA256:x", knownHosts: hosts, supported: supported) == nil)
        #expect(
            HostKeyVerifier.algorithmPreference(
                host: "other", port: 22, pin: nil, knownHosts: hosts, supported: supported) == nil)
    }
}
