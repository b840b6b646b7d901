import EctoTestSupport
import Foundation
import Testing

/// `check` and `connect --identity` judge key files the way the daemon will use them.
@Suite("check and connect judge identity files truthfully")
struct KeyCheckTests {
    private func check(_ fixture: TunnelFixture, _ extra: [String]) throws -> CommandResult {
        try fixture.writeConfig(fixture.tunnel(localPort: 18789, remotePort: 9, identity: false, extra: extra))
        return try fixture.runCLI(["check", "--config", fixture.configPath])
    }

    @Test("RSA keys the daemon can use pass; a wrong passphrase, an open mode, a public key do not (file:line: key)")
    func checkRSAKeys() throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let pem = try SharedRSAKeys.shared.copy(
            2048, to: fixture.directory, name: "id_pem", format: "PEM", passphrase: "right")
        let right = try fixture.directory.write("right", "right\n")
        let wrong = try fixture.directory.write("wrong", "wrong\n")
        let ok = try check(
            fixture, ["identity_file = \"\(pem.privatePath)\"", "identity_passphrase_file = \"\(right)\""])
        #expect(ok.status == 0, "\(ok.stderr)")
        let bad = try check(
            fixture, ["identity_file = \"\(pem.privatePath)\"", "identity_passphrase_file = \"\(wrong)\""])
        #expect(bad.status == 1)
        #expect(
            bad.stderr.contains(
                "\(fixture.configPath):9: tunnels.t.identity_file: \"\(pem.privatePath)\": wrong passphrase"),
            "\(bad.stderr)")
        let openSSH = try SharedRSAKeys.shared.copy(2048, to: fixture.directory, name: "id_open")
        chmod(openSSH.privatePath, 0o640)
        let open = try check(fixture, ["identity_file = \"\(openSSH.privatePath)\""])
        #expect(open.status == 1 && open.stderr.contains("permissions 0640"), "\(open.stderr)")
        let pub = try check(fixture, ["identity_file = \"\(openSSH.publicPath)\""])
        #expect(pub.status == 1 && pub.stderr.contains("this is a public key, not a private key"), "\(pub.stderr)")
    }

    @Test("connect --identity refuses a key the daemon cannot use before touching anything")
    func connectRefusesUnusableKey() throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let key = try SharedRSAKeys.shared.copy(2048, to: fixture.directory, name: "id_c")
        var env = ProcessInfo.processInfo.environment
        env["SSH_AUTH_SOCK"] = nil
        env["HOME"] = fixture.directory.path
        let result = try Subprocess.run(
            try ProductLocator.binary("ecto-tunnel"),
            ["connect", fixture.target, "--identity", key.publicPath, "--yes", "--config", fixture.configPath],
            environment: env)
        #expect(result.status != 0)
        #expect(
            result.stderr.contains("cannot use \(key.publicPath): \"\(key.publicPath)\": this is a public key"),
            "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: fixture.configPath), "nothing may be written")
    }
}
