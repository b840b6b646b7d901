import EctoConfig
@testable import EctoTunnel
import Foundation
import Testing

/// What `check` (through `TunnelValidation` and `IdentityCheck`) says about hand-built key files
/// the daemon cannot use, without a passphrase or a network.
@Suite("Private key formats")
struct PrivateKeyFormatTests {
    /// An openssh-key-v1 file whose public key has `type`, with `cipher`.
    static func openSSH(type: String, cipher: String = "none") -> String {
        func string(_ bytes: [UInt8]) -> [UInt8] {
            let n = UInt32(bytes.count)
            return [UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)] + bytes
        }
        let publicBlob = string(Array(type.utf8)) + string([UInt8](repeating: 7, count: 32))
        let blob =
            Array("openssh-key-v1\0".utf8) + string(Array(cipher.utf8)) + string(Array("none".utf8)) + string([])
            + [0, 0, 0, 1] + string(publicBlob) + string([1, 2, 3])
        return "-----BEGIN OPENSSH PRIVATE KEY-----\n" + Data(blob).base64EncodedString()
            + "\n-----END OPENSSH PRIVATE KEY-----\n"
    }

    /// The problem `IdentityCheck` finds with `text` written as a 0600 key file (nil: none).
    func problem(_ text: String, passphrase: Bool = false) throws -> String? {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "ecto-keyformat-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("id_test").path
        #expect(
            FileManager.default.createFile(
                atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600]))
        return IdentityCheck.problem(privateKey: path, passphraseConfigured: passphrase, environment: .current)
    }

    @Test("FIDO and unknown key types are refused by name; an encrypted key needs a passphrase setting")
    func types() throws {
        let fido = try #require(try problem(Self.openSSH(type: "sk-ssh-ed25519@openssh.com")))
        #expect(fido.contains("sk-ssh-ed25519@openssh.com"), "\(fido)")
        let other = try #require(try problem(Self.openSSH(type: "ssh-xmss@openssh.com")))
        #expect(other.contains("ssh-xmss@openssh.com"), "\(other)")
    }

    @Test("PuTTY files, public keys, garbage and damaged files are refused")
    func formats() throws {
        for (text, expected) in [
            ("PuTTY-User-Key-File-3: ssh-ed25519\n", "PuTTY"),
            ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI me@host\n", "public key"),
            ("hello\n", nil),
            ("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAAAAA\n-----END OPENSSH PRIVATE KEY-----\n", nil),
        ] as [(String, String?)] {
            let found = try problem(text)
            #expect(found != nil, "\(text) must be refused")
            if let expected, let found { #expect(found.contains(expected), "\(found)") }
        }
    }
}
