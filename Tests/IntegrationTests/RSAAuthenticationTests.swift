import EctoTestSupport
import Foundation
import Testing
import EctoStatus

/// RSA keys made once for the whole suite (4096-bit generation is slow).
final class SharedRSAKeys: @unchecked Sendable {
    static let shared = try! SharedRSAKeys()
    let directory: TestDirectory
    let keys: [Int: KeyPair]

    init() throws {
        directory = try TestDirectory(prefix: "ecto-rsa")
        var keys: [Int: KeyPair] = [:]
        for bits in [2048, 3072, 4096] {
            keys[bits] = try KeyPair.generate(
                type: "rsa", in: directory, name: "id_rsa_\(bits)", comment: "rsa-\(bits)", bits: bits)
        }
        self.keys = keys
    }

    /// A copy of the `bits` key in `directory` (as `name`), in `format` ("RFC4716": OpenSSH,
    /// "PEM": PKCS#1, "PKCS8"), with `passphrase`.
    func copy(
        _ bits: Int, to directory: TestDirectory, name: String, format: String = "RFC4716", passphrase: String? = nil
    ) throws -> KeyPair {
        try keys[bits]!.converted(to: directory.file(name), format: format, passphrase: passphrase)
    }
}

extension TunnelFixture {
    /// Tunnel t to nowhere (port 9) that may offer only `identityFile` (and what `extra` and
    /// `environment` add), the daemon started until an attempt has failed; returns the daemon log.
    fileprivate func logOfFailedAttempt(
        identityFile: String, extra: [String] = [], environment: [String: String] = [:]
    ) async throws -> String {
        try writeConfig(
            tunnel(
                localPort: try FreePort.probe(), remotePort: 9, identity: false,
                extra: ["identity_file = \"\(identityFile)\""] + extra))
        try startDaemon(environment: environment)
        try await waitForAttemptFailed()
        return daemonLog
    }
}

@Suite("RSA user keys against OpenSSH (default PubkeyAcceptedAlgorithms) and dropbear", .serialized)
struct RSAAuthenticationTests {
    let rsa = SharedRSAKeys.shared

    /// Starts a tunnel with `extra` config lines and waits until it is up, then checks bytes
    /// go through. Returns the daemon log.
    private func connect(
        _ fixture: TunnelFixture, extra: [String], environment: [String: String] = [:], seed: UInt64
    ) async throws -> String {
        let (echo, localPort) = try await fixture.startEchoTunnel(
            identity: false, extra: extra, environment: environment)
        defer { echo.stop() }
        #expect(try await offload { try echoRoundTrip(port: localPort, seed: seed, count: 20_000) })
        return fixture.daemonLog
    }

    @Test(
        "by OpenSSH-format file, 2048/3072/4096 bits: accepted as rsa-sha2-512 on the first attempt",
        arguments: [2048, 3072, 4096])
    func openSSHFormatFile(bits: Int) async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let key = try rsa.copy(bits, to: fixture.directory, name: "id_rsa")
        try fixture.server.authorize(key)
        let log = try await connect(fixture, extra: ["identity_file = \"\(key.privatePath)\""], seed: UInt64(bits))
        #expect(log.contains("ssh.auth=rsa-sha2-512 ssh.auth_attempts=1"), "\(log)")
        let sshd = fixture.server.log()
        #expect(
            sshd.contains("Accepted publickey for \(fixture.server.user)") && sshd.contains("RSA \(key.fingerprint)"),
            "\(sshd)")
        #expect(!sshd.contains("not in PubkeyAcceptedAlgorithms"))
    }

    @Test(
        "by PEM (PKCS#1, PKCS#8) and OpenSSH-format file, with and without a passphrase",
        arguments: [
            ("PEM", nil), ("PEM", "pem secret"), ("PKCS8", nil), ("PKCS8", "p8 secret"), ("RFC4716", "bcrypt secret"),
        ] as [(String, String?)])
    func keyFormats(format: String, passphrase: String?) async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let key = try rsa.copy(3072, to: fixture.directory, name: "id_rsa_key", format: format, passphrase: passphrase)
        try fixture.server.authorize(key)
        var extra = ["identity_file = \"\(key.privatePath)\""]
        if let passphrase {
            let file = try fixture.directory.write("passphrase", passphrase + "\n", mode: 0o600)
            extra.append("identity_passphrase_file = \"\(file)\"")
        }
        let log = try await connect(fixture, extra: extra, seed: 7)
        #expect(log.contains("ssh.auth=rsa-sha2-512"), "\(log)")
        if let passphrase { #expect(!log.contains(passphrase), "the passphrase must never be logged") }
        #expect(!log.contains("PRIVATE KEY"), "no key material in the log")
    }

    @Test("through a real ssh-agent: signed by the agent with the SHA-2 flag")
    func agentHeldKey() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let key = try rsa.copy(3072, to: fixture.directory, name: "id_agent_rsa", passphrase: "agent secret")
        try fixture.server.authorize(key)
        let agent = try SSHAgent()
        defer { agent.stop() }
        try agent.add(key)
        let log = try await connect(fixture, extra: [], environment: agent.environment, seed: 8)
        #expect(log.contains("ssh.auth=rsa-sha2-512") && log.contains("authenticated with an ssh-agent key"), "\(log)")
        #expect(log.contains(key.fingerprint))
        #expect(fixture.server.log().contains("RSA \(key.fingerprint)"))
    }

    @Test("a refused RSA key names each algorithm tried")
    func refusedNamesAlgorithms() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let key = try rsa.copy(2048, to: fixture.directory, name: "id_stranger")
        let log = try await fixture.logOfFailedAttempt(identityFile: key.privatePath)
        #expect(
            log.contains(
                "identity file \(key.privatePath): refused by server (rsa-sha2-512), refused by server (rsa-sha2-256), refused by server (ssh-rsa) (3 attempts)"
            ), "\(log)")
    }

    // MARK: dropbear: ssh-rsa only

    private func dropbearFixture(_ authorized: KeyPair) throws -> (TunnelFixture, DropbearServer, [String]) {
        let fixture = try TunnelFixture()
        let dropbear = try DropbearServer(authorized: [authorized])
        let knownHosts = try fixture.directory.write("known_hosts_dropbear", dropbear.knownHostsLine)
        return (
            fixture, dropbear,
            ["target = \"\(dropbear.user)@127.0.0.1:\(dropbear.port)\"", "known_hosts = \"\(knownHosts)\""]
        )
    }

    @Test("dropbear by file: rsa-sha2-512 and rsa-sha2-256 refused, ssh-rsa accepted, in one session")
    func dropbearFallbackByFile() async throws {
        let key = try rsa.copy(3072, to: rsa.directory, name: "id_dropbear_file")
        let (fixture, dropbear, target) = try dropbearFixture(key)
        defer {
            fixture.cleanup()
            dropbear.stop()
        }
        let log = try await connect(fixture, extra: target + ["identity_file = \"\(key.privatePath)\""], seed: 9)
        #expect(log.contains("ssh.auth=ssh-rsa ssh.auth_attempts=3"), "\(log)")
        #expect(
            dropbear.log().contains("Pubkey auth succeeded for '\(dropbear.user)' with ssh-rsa key"),
            "\(dropbear.log())")
    }

    @Test("dropbear through the agent: the same fallback, the last step through libssh2's agent path")
    func dropbearFallbackByAgent() async throws {
        let key = try rsa.copy(3072, to: rsa.directory, name: "id_dropbear_agent")
        let (fixture, dropbear, target) = try dropbearFixture(key)
        defer {
            fixture.cleanup()
            dropbear.stop()
        }
        let agent = try SSHAgent()
        defer { agent.stop() }
        try agent.add(key)
        let log = try await connect(fixture, extra: target, environment: agent.environment, seed: 10)
        #expect(
            log.contains("ssh.auth=ssh-rsa ssh.auth_attempts=3") && log.contains("authenticated with an ssh-agent key"),
            "\(log)")
    }
}

@Suite("Identities as ssh finds them", .serialized)
struct DefaultIdentityTests {
    /// A key sshd accepts, held only by a running agent (the caller stops it), and a key it does
    /// not accept, as a file to list in identity_file.
    private func agentKeyAndListedKey(
        _ fixture: TunnelFixture
    ) throws -> (
        agentKey: KeyPair, listed: KeyPair, agent: SSHAgent
    ) {
        let agentKey = try KeyPair.generate(type: "ed25519", in: fixture.directory, name: "id_in_agent")
        try fixture.server.authorize(agentKey)
        let listed = try KeyPair.generate(type: "ed25519", in: fixture.directory, name: "id_listed")
        let agent = try SSHAgent()
        do {
            try agent.add(agentKey)
        } catch {
            agent.stop()
            throw error
        }
        return (agentKey, listed, agent)
    }

    let rsa = SharedRSAKeys.shared

    @Test("no identity_file, no agent: ~/.ssh/id_ed25519, id_ecdsa, id_rsa in that order; the refusals are named")
    func defaultFiles() async throws {
        let fixture = try TunnelFixture(authorize: false)
        defer { fixture.cleanup() }
        let home = try fixture.directory.makeSubdirectory("home")
        let ssh = try fixture.directory.makeSubdirectory("home/.ssh")
        let ed = try KeyPair.generate(type: "ed25519", at: ssh + "/id_ed25519")
        let key = try rsa.keys[2048]!.converted(to: ssh + "/id_rsa", format: "RFC4716", passphrase: nil)
        try fixture.server.authorize(key)
        let (echo, localPort) = try await fixture.startEchoTunnel(identity: false, environment: ["HOME": home])
        defer { echo.stop() }
        let log = fixture.daemonLog
        #expect(
            log.contains("identity_file=\(ssh)/id_rsa") && log.contains("authenticated with identity file"), "\(log)")
        #expect(log.contains("ssh.auth_attempts=2"), "id_ed25519 first, then id_rsa: \(log)")
        let sshd = fixture.server.log()
        let edOffered = sshd.range(of: "ED25519 \(ed.fingerprint)")
        let rsaAccepted = sshd.range(of: "Accepted publickey")
        #expect(edOffered != nil && rsaAccepted != nil && edOffered!.lowerBound < rsaAccepted!.lowerBound, "\(sshd)")
        #expect(try await offload { try echoRoundTrip(port: localPort, seed: 11, count: 1000) })
    }

    @Test("no identity_file, no agent, no default keys: says where it looked")
    func noCredentials() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        try fixture.writeConfig(fixture.tunnel(localPort: try FreePort.probe(), remotePort: 9, identity: false))
        try fixture.startDaemon()
        try await fixture.waitForState(.failed)
        #expect(
            fixture.daemonLog.contains(
                "no credentials: SSH_AUTH_SOCK is not set (no ssh-agent) and no identity_file is configured and none of ~/.ssh/id_ed25519"
            ))
    }

    @Test("identity_file as a list: each tried in order, each failure named")
    func identityList() async throws {
        let fixture = try TunnelFixture(authorize: false)
        defer { fixture.cleanup() }
        let stranger = try KeyPair.generate(type: "ed25519", in: fixture.directory, name: "id_stranger")
        let key = try rsa.copy(3072, to: fixture.directory, name: "id_listed_rsa")
        try fixture.server.authorize(key)
        let log = try await {
            let (echo, localPort) = try await fixture.startEchoTunnel(
                identity: false, extra: ["identity_file = [\"\(stranger.privatePath)\", \"\(key.privatePath)\"]"])
            defer { echo.stop() }
            #expect(try await offload { try echoRoundTrip(port: localPort, seed: 12, count: 1000) })
            return fixture.daemonLog
        }()
        #expect(log.contains("identity_file=\(key.privatePath)") && log.contains("ssh.auth_attempts=2"), "\(log)")
    }

    @Test("identities_only: agent keys not listed are not offered")
    func identitiesOnly() async throws {
        let fixture = try TunnelFixture(authorize: false)
        defer { fixture.cleanup() }
        let (agentKey, listed, agent) = try agentKeyAndListedKey(fixture)
        defer { agent.stop() }
        let log = try await fixture.logOfFailedAttempt(
            identityFile: listed.privatePath, extra: ["identities_only = true"], environment: agent.environment)
        #expect(log.contains("identity file \(listed.privatePath): refused by server"), "\(log)")
        #expect(!log.contains(agentKey.fingerprint), "the agent key was offered: \(log)")
        #expect(!fixture.server.log().contains(agentKey.fingerprint), "sshd saw the agent key")
    }

    @Test("MaxAuthTries: too many agent keys end the session, and the message says so; identities_only fixes it")
    func maxAuthTries() async throws {
        let fixture = try TunnelFixture(authorize: false, sshdOptions: ["MaxAuthTries 2"])
        defer { fixture.cleanup() }
        let agent = try SSHAgent()
        defer { agent.stop() }
        for index in 0..<2 {
            try agent.add(try KeyPair.generate(type: "ed25519", in: fixture.directory, name: "id_stranger\(index)"))
        }
        let key = try rsa.copy(2048, to: fixture.directory, name: "id_right")
        try fixture.server.authorize(key)
        let localPort = try FreePort.probe()
        try fixture.writeConfig(
            fixture.tunnel(
                localPort: localPort, remotePort: 9, identity: false, extra: ["identity_file = \"\(key.privatePath)\""])
        )
        try fixture.startDaemon(environment: agent.environment)
        try await fixture.waitForAttemptFailed()
        #expect(
            fixture.daemonLog.contains(
                "the server ended the session (Too many authentication failures) at authentication attempt 2 (its MaxAuthTries"
            ),
            "\(fixture.daemonLog)")
        #expect(fixture.daemonLog.contains("offer fewer keys: identities_only = true"))
        _ = fixture.daemon?.terminate(grace: .seconds(3))
        let echo = try EchoServer()
        defer { echo.stop() }
        try fixture.writeConfig(
            fixture.tunnel(
                localPort: localPort, remotePort: echo.port, identity: false,
                extra: ["identity_file = \"\(key.privatePath)\"", "identities_only = true"]))
        try fixture.startDaemon(environment: agent.environment)
        try await fixture.waitForUp()
        #expect(fixture.daemonLog.contains("ssh.auth=rsa-sha2-512 ssh.auth_attempts=1"), "\(fixture.daemonLog)")
    }

    @Test("without identities_only the same agent key logs in")
    func agentKeyWithoutIdentitiesOnly() async throws {
        let fixture = try TunnelFixture(authorize: false)
        defer { fixture.cleanup() }
        let (_, listed, agent) = try agentKeyAndListedKey(fixture)
        defer { agent.stop() }
        let (echo, _) = try await fixture.startEchoTunnel(
            identity: false, extra: ["identity_file = \"\(listed.privatePath)\""], environment: agent.environment)
        defer { echo.stop() }
        #expect(fixture.daemonLog.contains("authenticated with an ssh-agent key"))
    }
}

@Suite("OpenSSH user certificates against TrustedUserCAKeys", .serialized)
struct CertificateTests {
    /// A fixture whose sshd trusts a fresh user CA (kept in `ca`, which outlives the server).
    private func fixtureWithCA() throws -> (TunnelFixture, TestDirectory) {
        let ca = try TestDirectory(prefix: "ecto-ca")
        let key = try KeyPair.generate(type: "ed25519", in: ca, name: "user_ca")
        let fixture = try TunnelFixture(authorize: false, sshdOptions: ["TrustedUserCAKeys \(key.publicPath)"])
        return (fixture, ca)
    }

    private func certified(
        _ type: String, _ fixture: TunnelFixture, ca: TestDirectory, name: String
    ) throws -> (key: KeyPair, certificate: String) {
        let key = try KeyPair.generate(type: type, in: fixture.directory, name: name)
        try Subprocess.run(
            "ssh-keygen",
            ["-q", "-s", ca.file("user_ca"), "-I", "ecto-test", "-n", fixture.server.user, key.publicPath]
        ).check()
        return (key, key.privatePath + "-cert.pub")
    }

    @Test("an ECDSA certificate beside the key (KEY-cert.pub), the key itself not authorized")
    func certificateBesideKey() async throws {
        let (fixture, ca) = try fixtureWithCA()
        defer {
            fixture.cleanup()
            ca.cleanup()
        }
        let (key, certificate) = try certified("ecdsa", fixture, ca: ca, name: "id_cert_ecdsa")
        let (echo, localPort) = try await fixture.startEchoTunnel(
            identity: false, extra: ["identity_file = \"\(key.privatePath)\""])
        defer { echo.stop() }
        #expect(try await offload { try echoRoundTrip(port: localPort, seed: 13, count: 1000) })
        #expect(
            fixture.daemonLog.contains("ssh.auth=certificate \(certificate) ssh.auth_attempts=1"),
            "\(fixture.daemonLog)")
        let sshd = fixture.server.log()
        #expect(
            sshd.contains("Accepted publickey for \(fixture.server.user)") && sshd.contains("ECDSA-CERT")
                && sshd.contains("ID ecto-test"), "\(sshd)")
    }

    @Test("certificate_file names the certificate explicitly")
    func certificateFile() async throws {
        let (fixture, ca) = try fixtureWithCA()
        defer {
            fixture.cleanup()
            ca.cleanup()
        }
        let (key, certificate) = try certified("ecdsa", fixture, ca: ca, name: "id_c")
        let moved = fixture.directory.file("elsewhere-cert.pub")
        try Subprocess.run("mv", [certificate, moved]).check()
        let (echo, _) = try await fixture.startEchoTunnel(
            identity: false, extra: ["identity_file = \"\(key.privatePath)\"", "certificate_file = \"\(moved)\""])
        defer { echo.stop() }
        #expect(fixture.daemonLog.contains("ssh.auth=certificate \(moved)"), "\(fixture.daemonLog)")
    }

    @Test(
        "an Ed25519 certificate (libssh2 1.10 cannot sign for it) is named and not offered; check refuses it as certificate_file"
    )
    func ed25519CertificateRefused() async throws {
        let (fixture, ca) = try fixtureWithCA()
        defer {
            fixture.cleanup()
            ca.cleanup()
        }
        let (key, certificate) = try certified("ed25519", fixture, ca: ca, name: "id_cert_ed")
        let log = try await fixture.logOfFailedAttempt(identityFile: key.privatePath)
        #expect(
            log.contains(
                "certificate \(certificate) not offered (ssh-ed25519-cert-v01@openssh.com certificates cannot be used with libssh2 1.10"
            ), "\(log)")
        #expect(log.contains("use an ECDSA key and certificate"))
        #expect(!fixture.server.log().contains("ED25519-CERT"), "the certificate must not be offered")
        // As certificate_file: an error with file:line and key.
        try fixture.writeConfig(
            fixture.tunnel(
                localPort: try FreePort.probe(), remotePort: 9, identity: false,
                extra: ["identity_file = \"\(key.privatePath)\"", "certificate_file = \"\(certificate)\""]))
        let check = try fixture.runCLI(["check", "--config", fixture.configPath])
        #expect(check.status == 1)
        #expect(
            check.stderr.contains(
                "\(fixture.configPath):10: tunnels.t.certificate_file: ssh-ed25519-cert-v01@openssh.com certificates cannot be used"
            ), "\(check.stderr)")
    }
}
