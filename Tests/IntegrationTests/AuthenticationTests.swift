import EctoTestSupport
import Foundation
import Testing
import EctoStatus

@Suite("Host keys and authentication against a real sshd")
struct HostKeyTests {
    @Test("an unknown host key is refused with its fingerprint and how to trust it")
    func unknownHostRefused() async throws {
        let fixture = try TunnelFixture(trustHost: false)
        defer { fixture.cleanup() }
        let (echo, localPort) = try fixture.writeEchoTunnel()
        defer { echo.stop() }  // keeps it alive to the end of the test
        try fixture.startDaemon()
        try await fixture.waitForState(.failed)
        let log = fixture.daemonLog
        #expect(log.contains("HOST KEY UNKNOWN for [127.0.0.1]:\(fixture.server.port)"))
        #expect(log.contains(fixture.server.hostKeyFingerprint), "the fingerprint must be shown: \(log)")
        #expect(
            log.contains(
                "echo '[127.0.0.1]:\(fixture.server.port) \(fixture.server.hostPublicKey)' >> \(fixture.knownHosts)"))
        #expect(!fixture.server.log().contains("Accepted publickey"), "nothing may be sent to an untrusted host")
        // Exactly one attempt: failed states do not retry.
        try await Task.sleep(for: .milliseconds(700))
        #expect(fixture.daemonLog.components(separatedBy: "connection attempt failed").count - 1 == 1)
        // A client is refused at once rather than held.
        let closed = try await offload { () -> Bool in
            let client: TCPClient
            do {
                client = try TCPClient.connect(port: localPort)
            } catch let error as TestSupportError where error.isConnectionReset {
                return true  // reset right away: exactly what we want
            }
            defer { client.close() }
            return client.waitForClose(timeout: .seconds(2))
        }
        #expect(closed)
    }

    @Test("a changed host key is refused loudly with the old and new fingerprints")
    func changedHostKeyRefused() async throws {
        let fixture = try TunnelFixture(trustHost: false)
        defer { fixture.cleanup() }
        let impostor = try KeyPair.generate(type: "ed25519", in: fixture.directory, name: "old_host_key")
        _ = try fixture.directory.write(
            "known_hosts", "[127.0.0.1]:\(fixture.server.port) \(impostor.algorithm) \(impostor.base64Blob)\n")
        let localPort = try FreePort.probe()
        try fixture.writeConfig(fixture.tunnel(localPort: localPort, remotePort: 9))
        try fixture.startDaemon()
        try await fixture.waitForState(.failed)
        let log = fixture.daemonLog
        #expect(log.contains("HOST KEY CHANGED for [127.0.0.1]:\(fixture.server.port)"))
        #expect(log.contains(impostor.fingerprint), "old fingerprint missing: \(log)")
        #expect(log.contains(fixture.server.hostKeyFingerprint), "new fingerprint missing: \(log)")
        #expect(log.contains("\(fixture.knownHosts):1"))
        #expect(!fixture.server.log().contains("Accepted publickey"))
    }

    @Test("a known key under another port does not count for this port")
    func plainEntryDoesNotMatchOtherPort() async throws {
        let fixture = try TunnelFixture(trustHost: false)
        defer { fixture.cleanup() }
        _ = try fixture.directory.write("known_hosts", "127.0.0.1 \(fixture.server.hostPublicKey)\n")
        try fixture.writeConfig(fixture.tunnel(localPort: try FreePort.probe(), remotePort: 9))
        try fixture.startDaemon()
        try await fixture.waitForState(.failed)
        #expect(fixture.daemonLog.contains("HOST KEY UNKNOWN"))
    }

    @Test("a pinned fingerprint is accepted without known_hosts")
    func pinnedAccepted() async throws {
        let fixture = try TunnelFixture(trustHost: false)
        defer { fixture.cleanup() }
        let (echo, localPort) = try await fixture.startEchoTunnel(extra: [
            "host_key_fingerprint = \"\(fixture.server.hostKeyFingerprint)\""
        ])
        defer { echo.stop() }  // keeps it alive to the end of the test
        #expect(try await offload { try echoRoundTrip(port: localPort, seed: 3, count: 10_000) })
    }

    @Test("a wrong pinned fingerprint is refused even when known_hosts trusts the key")
    func pinnedRefused() async throws {
        let fixture = try TunnelFixture(trustHost: true)
        defer { fixture.cleanup() }
        let other = try KeyPair.generate(type: "ed25519", in: fixture.directory, name: "other")
        try fixture.writeConfig(
            fixture.tunnel(
                localPort: try FreePort.probe(), remotePort: 9,
                extra: ["host_key_fingerprint = \"\(other.fingerprint)\""]))
        try fixture.startDaemon()
        try await fixture.waitForState(.failed)
        let log = fixture.daemonLog
        #expect(log.contains("HOST KEY MISMATCH"))
        #expect(log.contains(other.fingerprint) && log.contains(fixture.server.hostKeyFingerprint))
    }

    @Test("accept-new records an unknown host, then connects")
    func acceptNewRecords() async throws {
        let fixture = try TunnelFixture(trustHost: false)
        defer { fixture.cleanup() }
        let (echo, localPort) = try await fixture.startEchoTunnel(extra: ["host_key_policy = \"accept-new\""])
        defer { echo.stop() }  // keeps it alive to the end of the test
        let recorded = fixture.directory.read("known_hosts") ?? ""
        #expect(recorded.contains("[127.0.0.1]:\(fixture.server.port) \(fixture.server.hostPublicKey)"))
        #expect(fixture.daemonLog.contains("permanently added"))
        #expect(try await offload { try echoRoundTrip(port: localPort, seed: 4, count: 1000) })
    }
}

@Suite("Client authentication")
struct ClientAuthenticationTests {
    @Test("a key the server does not accept: bounded retries, then failed")
    func wrongClientKeyRefused() async throws {
        let fixture = try TunnelFixture(authorize: false)
        defer { fixture.cleanup() }
        try fixture.writeConfig(fixture.tunnel(localPort: try FreePort.probe(), remotePort: 9))
        try fixture.startDaemon()
        try await fixture.waitForState(.failed)
        let log = fixture.daemonLog
        #expect(log.contains("the server refused authentication as \(fixture.server.user)"))
        #expect(log.contains("identity file \(fixture.clientKey.privatePath)"))
        #expect(log.components(separatedBy: "connection attempt failed").count - 1 == 3, "exactly three tries: \(log)")
        try await Task.sleep(for: .seconds(1))
        #expect(
            log.components(separatedBy: "connection attempt failed").count
                == fixture.daemonLog.components(separatedBy: "connection attempt failed").count,
            "no retries after failed")
    }

    @Test("ssh-agent authentication (no identity file)")
    func agentAuthentication() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let agent = try SSHAgent()
        defer { agent.stop() }
        try agent.add(fixture.clientKey)
        let (echo, localPort) = try fixture.writeEchoTunnel(identity: false)
        defer { echo.stop() }  // keeps it alive to the end of the test
        try fixture.startDaemon(environment: agent.environment)
        // The log, not an event: which credential was accepted is in no status field.
        try await fixture.waitForLog("authenticated with an ssh-agent key")
        try await fixture.waitForUp()
        #expect(fixture.daemonLog.contains(fixture.clientKey.fingerprint))
        #expect(try await offload { try echoRoundTrip(port: localPort, seed: 8, count: 50_000) })
    }

    @Test("the agent's keys are tried first, then the identity file")
    func agentThenIdentityFile() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let agent = try SSHAgent()
        defer { agent.stop() }
        let stranger = try KeyPair.generate(type: "ed25519", in: fixture.directory, name: "stranger")
        try agent.add(stranger)
        let (echo, localPort) = try fixture.writeEchoTunnel()
        defer { echo.stop() }  // keeps it alive to the end of the test
        try fixture.startDaemon(environment: agent.environment)
        // The log, not an event: which credential was accepted is in no status field.
        try await fixture.waitForLog("authenticated with identity file")
        #expect(try await offload { try echoRoundTrip(port: localPort, seed: 9, count: 1000) })
    }

    @Test("an encrypted key with a passphrase file", arguments: ["ed25519", "ecdsa"])
    func encryptedKeyWithPassphraseFile(type: String) async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let key = try KeyPair.generate(
            type: type, in: fixture.directory, name: "id_locked", passphrase: "correct horse battery")
        try fixture.server.authorize(key)
        let passphraseFile = try fixture.directory.write("passphrase", "correct horse battery\n", mode: 0o600)
        let (echo, localPort) = try await fixture.startEchoTunnel(extra: [
            "identity_file = \"\(key.privatePath)\"", "identity_passphrase_file = \"\(passphraseFile)\"",
        ])
        defer { echo.stop() }  // keeps it alive to the end of the test
        #expect(try await offload { try echoRoundTrip(port: localPort, seed: 10, count: 1000) })
        #expect(!fixture.daemonLog.contains("correct horse"), "the passphrase must never be logged")
    }

    @Test("a wrong passphrase fails at once and says so")
    func wrongPassphrase() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let key = try KeyPair.generate(type: "ed25519", in: fixture.directory, name: "id_locked", passphrase: "right")
        try fixture.server.authorize(key)
        let passphraseFile = try fixture.directory.write("passphrase", "wrong-secret", mode: 0o600)
        try fixture.writeConfig(
            fixture.tunnel(
                localPort: try FreePort.probe(), remotePort: 9,
                extra: ["identity_file = \"\(key.privatePath)\"", "identity_passphrase_file = \"\(passphraseFile)\""]))
        try fixture.startDaemon()
        try await fixture.waitForState(.failed)
        #expect(fixture.daemonLog.contains("cannot use private key \(key.privatePath): wrong passphrase"))
        #expect(!fixture.daemonLog.contains("wrong-secret"))
    }

    @Test("an encrypted key without a passphrase says which setting is missing")
    func encryptedKeyWithoutPassphrase() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let key = try KeyPair.generate(type: "ed25519", in: fixture.directory, name: "id_locked", passphrase: "secret")
        try fixture.server.authorize(key)
        try fixture.writeConfig(
            fixture.tunnel(
                localPort: try FreePort.probe(), remotePort: 9, extra: ["identity_file = \"\(key.privatePath)\""]))
        try fixture.startDaemon()
        try await fixture.waitForState(.failed)
        #expect(fixture.daemonLog.contains("the key is encrypted: set identity_passphrase_file"))
    }

    @Test("a private key readable by others is refused, as ssh does")
    func unprotectedKeyRefused() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        chmod(fixture.clientKey.privatePath, 0o644)
        try fixture.writeConfig(fixture.tunnel(localPort: try FreePort.probe(), remotePort: 9))
        try fixture.startDaemon()
        try await fixture.waitForState(.failed)
        #expect(
            fixture.daemonLog.contains(
                "UNPROTECTED PRIVATE KEY: permissions 0644 for \(fixture.clientKey.privatePath) are too open"))
        #expect(!fixture.server.log().contains("Accepted publickey"))
    }

    @Test("ecdsa client and host keys work")
    func ecdsaKeys() async throws {
        let fixture = try TunnelFixture(hostKeyType: "ecdsa", clientKeyType: "ecdsa")
        defer { fixture.cleanup() }
        let (echo, localPort) = try await fixture.startEchoTunnel()
        defer { echo.stop() }  // keeps it alive to the end of the test
        #expect(fixture.daemonLog.contains("ecdsa-sha2-nistp256"))
        #expect(try await offload { try echoRoundTrip(port: localPort, seed: 12, count: 1000) })
    }
}
