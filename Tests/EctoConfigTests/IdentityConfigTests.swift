import EctoHostKeys
import Foundation
import Testing
@testable import EctoConfig

/// Throwaway test keys made by ssh-keygen (ed25519, plain and with passphrase "pw", -a 2).
private let plainKey = """
    -----BEGIN OPENSSH PRIVATE KEY-----
    b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
    QyNTUxOQAAACCh4bLm2IjJZ38TpZEa9cCpHh5Y2gKgROwu/vQoeKS8WAAAAIgB0Ea8AdBG
    vAAAAAtzc2gtZWQyNTUxOQAAACCh4bLm2IjJZ38TpZEa9cCpHh5Y2gKgROwu/vQoeKS8WA
    AAAEBUEB4yVzzErUViSGL9kpBzuJr3kSpMuk4NYIViaSbQEKHhsubYiMlnfxOlkRr1wKke
    HljaAqBE7C7+9Ch4pLxYAAAABHRlc3QB
    -----END OPENSSH PRIVATE KEY-----
    """
private let encryptedKey = """
    -----BEGIN OPENSSH PRIVATE KEY-----
    b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABAnLwdjRK
    eGf1CNeoFI7r5CAAAAAgAAAAEAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIGbNCRSoHljTWskZ
    T+faDrJ/PiviqVv1DDt/ot5Ta2T2AAAAkORDMkIH0mrnmtgQZu3ry+AlKoBuXYDZewLoZ2
    nguo7kRi21utUWo35akyjilFgveXWk//On+bdBmqBZ0enGe1gcClPyGJ8+B1n78gy05X2n
    YQQoVxjrxejtSnximC+fHdJlkDOTSyA+Gr2ohqjVOol2Fd7WPTgwwO3+Mq4eW+HHkbM6EX
    RcGpqDPKPunpQ10w==
    -----END OPENSSH PRIVATE KEY-----
    """
private let publicLine = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKHhsubYiMlnfxOlkRr1wKkeHljaAqBE7C7+9Ch4pLxY test"

/// An openssh-key-v1 file holding `publicBlob` (private section not meaningful: the checks here
/// do not decrypt).
private func openSSHContainer(publicBlob: [UInt8]) -> String {
    var blob = Array("openssh-key-v1\0".utf8)
    blob += SSHWire.string(Array("none".utf8)) + SSHWire.string(Array("none".utf8)) + SSHWire.string([])
    blob += [0, 0, 0, 1] + SSHWire.string(publicBlob) + SSHWire.string([0, 0, 0, 1, 0, 0, 0, 1])
    return
        "-----BEGIN OPENSSH PRIVATE KEY-----\n\(Data(blob).base64EncodedString())\n-----END OPENSSH PRIVATE KEY-----\n"
}

/// FakeSystem with modes and key judging on.
private func judging(
    _ system: FakeSystem, modes: [String: UInt32] = [:], verifier: (@Sendable ([UInt8], [UInt8]?) -> String?)? = nil
) -> ConfigEnvironment {
    var environment = system.environment
    environment.judgeKeyFiles = true
    environment.uid = 1000
    environment.fileOwnerAndMode = { path in system.files[path] == nil ? nil : (1000, modes[path] ?? 0o600) }
    environment.keyVerifier = verifier
    return environment
}

private func errors(_ text: String, _ environment: ConfigEnvironment) -> [ConfigError] {
    do {
        _ = try ConfigLoader.parse(text: text, path: configPath, environment: environment)
        return []
    } catch {
        return error.errors
    }
}

@Suite struct IdentityKeys {
    @Test func identityFileList() throws {
        var sys = FakeSystem()
        sys.files["/k/a"] = "KEY\n"
        sys.files["/k/b"] = "KEY\n"
        let config = try parseConfig(
            "[tunnels.a]\n\(validBody)\nidentity_file = [\"/k/a\", \"/k/b\", \"/k/a\"]\nidentities_only = true\n", sys)
        #expect(config.tunnels[0].identityFiles == ["/k/a", "/k/b"])
        #expect(config.tunnels[0].identityFile == "/k/a")
        #expect(config.tunnels[0].identitiesOnly)
        let single = try parseConfig("[tunnels.a]\n\(validBody)\nidentity_file = \"/k/b\"\n", sys)
        #expect(single.tunnels[0].identityFiles == ["/k/b"] && !single.tunnels[0].identitiesOnly)
        let none = try parseConfig("[tunnels.a]\n\(validBody)\n", sys)
        #expect(none.tunnels[0].identityFiles.isEmpty, "empty: ssh's defaults at run time")
    }

    @Test func identityFileListErrors() {
        var sys = FakeSystem()
        sys.files["/k/a"] = "KEY\n"
        expectSingleError(
            "[tunnels.a]\n\(validBody)\nidentity_file = [\"/k/a\", 3]\n", sys, line: 5, key: "tunnels.a.identity_file",
            contains: "got an array holding integer 3")
        expectSingleError(
            "[tunnels.a]\n\(validBody)\nidentity_file = []\n", sys, line: 5, key: "tunnels.a.identity_file",
            contains: "empty list")
        expectSingleError(
            "[tunnels.a]\n\(validBody)\nidentity_file = [\"/k/a\", \"/k/missing\"]\n", sys, line: 5,
            key: "tunnels.a.identity_file",
            contains: "\"/k/missing\" does not exist")
        expectSingleError(
            "[tunnels.a]\n\(validBody)\nidentities_only = \"yes\"\n", sys, line: 5, key: "tunnels.a.identities_only",
            contains: "expected true or false")
    }

    @Test func certificateFile() throws {
        var sys = FakeSystem()
        sys.files["/k/id_ecdsa"] = "KEY\n"
        sys.files["/k/not-a-cert.pub"] = publicLine + "\n"
        expectSingleError(
            "[tunnels.a]\n\(validBody)\ncertificate_file = \"/k/not-a-cert.pub\"\n", sys, line: 5,
            key: "tunnels.a.certificate_file",
            contains: "is not an OpenSSH certificate")
        expectSingleError(
            "[tunnels.a]\n\(validBody)\ncertificate_file = \"/k/missing-cert.pub\"\n", sys, line: 5,
            key: "tunnels.a.certificate_file",
            contains: "does not exist")
        // An Ed25519 certificate: refused by name, with what to do instead.
        let certBlob =
            SSHWire.string(Array("ssh-ed25519-cert-v01@openssh.com".utf8)) + SSHWire.string([1, 2])
            + SSHWire.string([UInt8](repeating: 7, count: 32))
        sys.files["/k/id-cert.pub"] = "ssh-ed25519-cert-v01@openssh.com \(Data(certBlob).base64EncodedString()) c\n"
        expectSingleError(
            "[tunnels.a]\n\(validBody)\ncertificate_file = \"/k/id-cert.pub\"\n", sys, line: 5,
            key: "tunnels.a.certificate_file",
            contains: "ssh-ed25519-cert-v01@openssh.com certificates cannot be used with libssh2 1.10")
        // An ECDSA one is accepted.
        let ecdsaBlob =
            SSHWire.string(Array("ecdsa-sha2-nistp256-cert-v01@openssh.com".utf8)) + SSHWire.string([1])
            + SSHWire.string(Array("nistp256".utf8))
        sys.files["/k/ec-cert.pub"] =
            "ecdsa-sha2-nistp256-cert-v01@openssh.com \(Data(ecdsaBlob).base64EncodedString())\n"
        let config = try parseConfig("[tunnels.a]\n\(validBody)\ncertificate_file = \"/k/ec-cert.pub\"\n", sys)
        #expect(config.tunnels[0].certificateFile == "/k/ec-cert.pub")
    }

    @Test func keyFilesJudgedLikeTheDaemon() {
        var sys = FakeSystem()
        sys.files["/k/plain"] = plainKey
        sys.files["/k/locked"] = encryptedKey
        sys.files["/k/open"] = plainKey
        sys.files["/k/id.pub"] = publicLine + "\n"
        sys.files["/k/putty.ppk"] = "PuTTY-User-Key-File-3: ssh-ed25519\n"
        sys.files["/k/pass"] = "pw\n"
        sys.files["/k/dsa"] = "-----BEGIN DSA PRIVATE KEY-----\nAAAA\n-----END DSA PRIVATE KEY-----\n"
        var rsa768 = [UInt8](repeating: 0xAB, count: 96)
        rsa768[0] = 0xC1
        sys.files["/k/rsa768"] = openSSHContainer(
            publicBlob: SSHWire.string(Array("ssh-rsa".utf8)) + SSHWire.mpint([1, 0, 1]) + SSHWire.mpint(rsa768))
        let env = judging(sys, modes: ["/k/open": 0o644])
        func judged(_ line: String) -> [ConfigError] { errors("[tunnels.a]\n\(validBody)\n\(line)\n", env) }
        #expect(judged("identity_file = \"/k/plain\"").isEmpty)
        #expect(judged("identity_file = \"/k/locked\"\nidentity_passphrase_file = \"/k/pass\"").isEmpty)
        let cases: [(String, String)] = [
            ("identity_file = \"/k/open\"", "permissions 0644 for \"/k/open\" are too open"),
            ("identity_file = \"/k/locked\"", "is encrypted: set identity_passphrase_file"),
            ("identity_file = \"/k/id.pub\"", "this is a public key, not a private key"),
            ("identity_file = \"/k/putty.ppk\"", "PuTTY key (.ppk) is not supported"),
            ("identity_file = \"/k/dsa\"", "DSA (ssh-dss) key"),
            ("identity_file = \"/k/rsa768\"", "768-bit RSA key"),
        ]
        for (line, fragment) in cases {
            let found = judged(line)
            #expect(
                found.count == 1 && found[0].line == 5 && found[0].key == "tunnels.a.identity_file", "\(line): \(found)"
            )
            #expect(found.first?.message.contains(fragment) == true, "\(line): \(found)")
        }
        // Without judging (the daemon), only existence is checked.
        #expect(
            (try? ConfigLoader.parse(
                text: "[tunnels.a]\n\(validBody)\nidentity_file = \"/k/id.pub\"\n", path: configPath,
                environment: sys.environment)) != nil)
    }

    @Test func keyVerifierGetsThePassphraseFileAndItsVerdictIsReported() {
        var sys = FakeSystem()
        sys.files["/k/locked"] = encryptedKey
        sys.files["/k/pass"] = "wrong\n"
        let env = judging(sys) { _, passphrase in passphrase == Array("pw".utf8) ? nil : "wrong passphrase" }
        let found = errors(
            "[tunnels.a]\n\(validBody)\nidentity_file = \"/k/locked\"\nidentity_passphrase_file = \"/k/pass\"\n", env)
        #expect(found.count == 1 && found.first?.message == "\"/k/locked\": wrong passphrase", "\(found)")
    }
}
