import EctoConfig
import EctoHostKeys
import EctoTunnel
import Testing

@testable import EctoOperator

/// Keys from Tests/EctoHostKeysTests/Fixtures (ssh-keygen output).
enum Keys {
    static let ed1 = try! HostKey(
        openSSHLine: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBSArfpy3brUKQ2MmMNEm8rr/ed2vZf5tm0i88cEH4cD")
    static let ed2 = try! HostKey(
        openSSHLine: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID8NvGR3NyPif5HjYqGW+BHcClO2e+cY9Ll15B9TmCIr")
    static let ec256 = try! HostKey(
        openSSHLine:
            "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEUfWD7diyRgDUTLFM7e829md1HfcnykgbYIWtL01jhjTMSXOZj7wDAfhrDMj4eua5eNvbrGsTdoV+vxHUXeE/Q="
    )

    static func knownHosts(_ lines: [String]) -> KnownHostsFile {
        KnownHostsFile.parse(lines.joined(separator: "\n") + "\n", path: "/k")
    }
}

/// `connect` decides with the daemon's policy: it records a key only where the daemon (with
/// accept-new) would record it too, and refuses what the daemon refuses.
@Suite struct HostKeyTrustTests {
    let host = "gw.example"
    let port: UInt16 = 2222

    func daemonDecision(_ key: HostKey, _ known: KnownHostsFile) -> HostKeyVerifier.Decision {
        HostKeyVerifier.decide(key: key, host: host, port: Int(port), pin: nil, policy: .acceptNew, knownHosts: known)
    }

    @Test func aKeyOfATypeTheHostDoesNotHaveIsRefusedNotAppended() {
        // Before: connect appended it as a new key, the daemon then refused the host.
        let known = Keys.knownHosts(["[gw.example]:2222 " + Keys.ec256.openSSHLine])
        let decision = HostKeyTrust.decide(key: Keys.ed1, host: host, port: port, knownHosts: known)
        guard case .refused(.changed(let others, let sameType)) = decision else {
            Issue.record("expected a refusal, got \(decision)")
            return
        }
        #expect(!sameType && others.map(\.line) == [1])
        #expect(decision == daemonDecision(Keys.ed1, known))
    }

    @Test func everyCaseAgreesWithTheDaemon() {
        let entry = "[gw.example]:2222 " + Keys.ed1.openSSHLine
        let cases: [(HostKey, KnownHostsFile, HostKeyVerifier.Decision)] = [
            (Keys.ed1, Keys.knownHosts([entry]), .known(line: 1)),
            (
                Keys.ed2, Keys.knownHosts(["# comment", entry]),
                .refused(.changed(known: [KnownKey(line: 2, key: Keys.ed1, sameAlgorithm: true)], sameType: true))
            ),
            (
                Keys.ed1, Keys.knownHosts(["@revoked [gw.example]:2222 " + Keys.ed1.openSSHLine]),
                .refused(.revoked(line: 1))
            ),
            (Keys.ed1, Keys.knownHosts(["other.example " + Keys.ed2.openSSHLine]), .recordNew),
            // A plain `host` entry is for port 22 only (OpenSSH's rule): unknown on 2222.
            (Keys.ed2, Keys.knownHosts(["gw.example " + Keys.ed1.openSSHLine]), .recordNew),
        ]
        for (key, known, expected) in cases {
            let decision = HostKeyTrust.decide(key: key, host: host, port: port, knownHosts: known)
            #expect(decision == expected)
            #expect(decision == daemonDecision(key, known), "connect and the daemon disagree")
        }
    }
}
