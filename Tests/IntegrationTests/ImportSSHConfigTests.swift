import EctoControl
import EctoTestSupport
import Foundation
import Testing

/// `import ssh-config HOST` against a real sshd: what an operator's ~/.ssh/config says becomes a
/// tunnel that passes `check` and connects, or the import refuses and writes nothing.
@Suite("import ssh-config round trips", .serialized)
struct ImportSSHConfigTests {
    /// The CLI with HOME = the fixture's directory (its ~/.ssh), like the daemon the fixture starts.
    func cli(_ fixture: TunnelFixture, _ arguments: [String]) throws -> CommandResult {
        try Subprocess.run(
            try ProductLocator.binary("ecto-tunnel"), arguments,
            extraEnvironment: [
                "HOME": fixture.directory.path, "ECTO_TUNNEL_SOCKET": fixture.socketPath, "SSH_AUTH_SOCK": "",
            ],
            timeout: .seconds(60))
    }

    @Test(
        "a Host with three LocalForwards, Include, IdentitiesOnly, CertificateFile, HostKeyAlias: written, checked, connected"
    )
    func roundTrip() async throws {
        let ca = try TestDirectory(prefix: "ecto-ca")
        defer { ca.cleanup() }
        let caKey = try KeyPair.generate(type: "ed25519", in: ca, name: "user_ca")
        let fixture = try TunnelFixture(
            trustHost: false, authorize: false, sshdOptions: ["TrustedUserCAKeys \(caKey.publicPath)"])
        defer { fixture.cleanup() }
        // An ECDSA key whose certificate sshd trusts; the key itself is not authorized.
        let ssh = fixture.directory.file(".ssh")
        try FileManager.default.createDirectory(atPath: ssh + "/hosts", withIntermediateDirectories: true)
        let key = try KeyPair.generate(type: "ecdsa", in: fixture.directory, name: ".ssh/id_gw")
        try Subprocess.run(
            "ssh-keygen",
            ["-q", "-s", ca.file("user_ca"), "-I", "ecto-import", "-n", fixture.server.user, key.publicPath]
        ).check()
        let certificate = ssh + "/gw-certificate.pub"
        try Subprocess.run("mv", [key.privatePath + "-cert.pub", certificate]).check()
        // known_hosts lists the server only under its HostKeyAlias.
        _ = try fixture.directory.write(".ssh/known_hosts_gw", "gw-alias \(fixture.server.hostPublicKey)\n")
        let echoes = try (0..<3).map { _ in try EchoServer() }
        defer { for echo in echoes { echo.stop() } }
        let ports = try (0..<3).map { _ in try FreePort.probe() }
        _ = try fixture.directory.write(
            ".ssh/config",
            """
            Include hosts/*.conf

            Host *
                AddKeysToAgent yes
                ServerAliveCountMax 2
            """)
        _ = try fixture.directory.write(
            ".ssh/hosts/gw.conf",
            """
            Host gw
                HostName 127.0.0.1
                Port \(fixture.server.port)
                User \(fixture.server.user)
                IdentityFile ~/.ssh/id_gw
                IdentitiesOnly yes
                CertificateFile ~/.ssh/gw-certificate.pub
                HostKeyAlias gw-alias
                UserKnownHostsFile ~/.ssh/known_hosts_gw
                LocalForward \(ports[0]) 127.0.0.1:\(echoes[0].port)
                LocalForward 127.0.0.1:\(ports[1]) localhost:\(echoes[1].port)
                LocalForward localhost:\(ports[2]) 127.0.0.1:\(echoes[2].port)
                ServerAliveInterval 5
                Compression yes
            """)

        let imported = try cli(fixture, ["import", "ssh-config", "gw", "--write", "--config", fixture.configPath])
        #expect(imported.status == 0, "\(imported)")
        let written = try String(contentsOfFile: fixture.configPath, encoding: .utf8)
        #expect(
            written.contains(
                "forwards = [\"127.0.0.1:\(ports[0]):127.0.0.1:\(echoes[0].port)\", \"127.0.0.1:\(ports[1]):localhost:\(echoes[1].port)\", \"localhost:\(ports[2]):127.0.0.1:\(echoes[2].port)\"]"
            ), "\(written)")
        for line in [
            "identity_file = \"~/.ssh/id_gw\"", "identities_only = true",
            "certificate_file = \"~/.ssh/gw-certificate.pub\"",
            "known_hosts = \"~/.ssh/known_hosts_gw\"", "host_key_alias = \"gw-alias\"", "keepalive_interval = 5",
            "keepalive_count_max = 2",
        ] {
            #expect(written.contains(line + "\n"), "\(line) missing from:\n\(written)")
        }
        let check = try cli(fixture, ["check", "--config", fixture.configPath])
        #expect(check.status == 0, "\(check)")

        try fixture.startDaemon()
        try await fixture.waitForUp()
        for (index, port) in ports.enumerated() {
            #expect(
                try await offload { try echoRoundTrip(port: port, seed: UInt64(40 + index), count: 30_000) },
                "forward \(index + 1)")
        }
        #expect(echoes.map(\.connectionsAccepted) == [1, 1, 1])
        #expect(fixture.daemonLog.contains("ssh.auth=certificate \(certificate)"), "\(fixture.daemonLog)")
        let sshd = fixture.server.log()
        #expect(sshd.components(separatedBy: "Accepted publickey").count - 1 == 1, "one session for three forwards")
        #expect(sshd.contains("ECDSA-CERT") && sshd.contains("ID ecto-import"))
    }

    @Test("a Match block or a RemoteForward: exit 1, nothing written, the option and its file:line named")
    func refusals() throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        try FileManager.default.createDirectory(
            atPath: fixture.directory.file(".ssh"), withIntermediateDirectories: true)
        _ = try fixture.directory.write(
            ".ssh/config",
            """
            Host gw
                HostName 127.0.0.1
                LocalForward 18789 127.0.0.1:18789
                RemoteForward 9000 localhost:9000
            Host other
                HostName 127.0.0.1
                LocalForward 18790 127.0.0.1:18789
            Match user root
                ProxyJump bastion
            """)
        let sshConfig = fixture.directory.file(".ssh/config")
        let before = "# untouched\n"
        try fixture.writeConfig(before)

        let gw = try cli(fixture, ["import", "ssh-config", "gw", "--write", "--config", fixture.configPath])
        #expect(gw.status == 1, "\(gw)")
        #expect(
            gw.stderr.contains(
                "~/.ssh/config:4: RemoteForward 9000 localhost:9000: remote forwards (-R) are not supported"),
            "\(gw.stderr)")
        #expect(gw.stderr.contains("~/.ssh/config:8: Match user root: Match blocks are not evaluated"), "\(gw.stderr)")
        #expect(gw.stderr.contains("nothing written"))
        #expect(!gw.stdout.contains("[tunnels."), "no table printed: \(gw.stdout)")

        let other = try cli(fixture, ["import", "ssh-config", "other", "--write", "--config", fixture.configPath])
        #expect(other.status == 1, "\(other)")
        #expect(
            other.stderr.contains(
                "\(sshConfig.replacingOccurrences(of: fixture.directory.path, with: "~")):8: Match user root"),
            "\(other.stderr)")
        #expect(
            try String(contentsOfFile: fixture.configPath, encoding: .utf8) == before, "the config file is untouched")
    }
}
