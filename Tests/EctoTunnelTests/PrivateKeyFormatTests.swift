@testable import EctoTunnel
import Foundation
import Testing

/// `PrivateKeyFormat.inspect` on hand-built files: what `check` says about keys libssh2 cannot use.
@Suite("Private key formats")
struct PrivateKeyFormatTests {
    /// An openssh-key-v1 file whose public key has `type`, with `cipher`.
    static func openSSH(type: String, cipher: String = "none") -> [UInt8] {
        func string(_ bytes: [UInt8]) -> [UInt8] {
            let n = UInt32(bytes.count)
            return [UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)] + bytes
        }
        let publicBlob = string(Array(type.utf8)) + string([UInt8](repeating: 7, count: 32))
        let blob = Array("openssh-key-v1\0".utf8) + string(Array(cipher.utf8)) + string(Array("none".utf8)) + string([])
            + [0, 0, 0, 1] + string(publicBlob) + string([1, 2, 3])
        let text = "-----BEGIN OPENSSH PRIVATE KEY-----\n" + Data(blob).base64EncodedString() + "\n-----END OPENSSH PRIVATE KEY-----\n"
        return Array(text.utf8)
    }

    @Test("ed25519, ecdsa and RSA are usable (encrypted is seen); FIDO and unknown types are not")
    func types() {
        #expect(PrivateKeyFormat.inspect(Self.openSSH(type: "ssh-ed25519")) == .usable(type: "ssh-ed25519", encrypted: false))
        #expect(
            PrivateKeyFormat.inspect(Self.openSSH(type: "ecdsa-sha2-nistp384", cipher: "aes256-ctr"))
                == .usable(type: "ecdsa-sha2-nistp384", encrypted: true))
        #expect(PrivateKeyFormat.inspect(Self.openSSH(type: "ssh-rsa")) == .usable(type: "ssh-rsa", encrypted: false))
        guard case .unusable(let fido) = PrivateKeyFormat.inspect(Self.openSSH(type: "sk-ssh-ed25519@openssh.com")) else {
            Issue.record("a FIDO key must be unusable")
            return
        }
        #expect(fido.contains("security-key"))
        guard case .unusable(let other) = PrivateKeyFormat.inspect(Self.openSSH(type: "ssh-xmss@openssh.com")) else {
            Issue.record("an unknown type must be unusable")
            return
        }
        #expect(other.contains("ssh-xmss@openssh.com"))
    }

    @Test("PEM, PuTTY, public keys, garbage and damaged files")
    func formats() {
        let pemRSA = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"
        #expect(PrivateKeyFormat.inspect(Array(pemRSA.utf8)) == .usable(type: "ssh-rsa", encrypted: true))
        #expect(PrivateKeyFormat.inspect(Array("-----BEGIN EC PRIVATE KEY-----\nAAAA\n".utf8)) == .usable(type: "ecdsa", encrypted: false))
        for (text, expected) in [
            ("PuTTY-User-Key-File-3: ssh-ed25519\n", "PuTTY"),
            ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI me@host\n", "public key"),
            ("hello\n", "not a private key"),
            ("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAAAAA\n-----END OPENSSH PRIVATE KEY-----\n", "damaged"),
        ] {
            guard case .unusable(let reason) = PrivateKeyFormat.inspect(Array(text.utf8)) else {
                Issue.record("\(text) must be unusable")
                continue
            }
            #expect(reason.contains(expected), "\(reason)")
        }
    }
}
