import EctoConfig
import EctoPlatform
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// A private key ready for authentication. The bytes are wiped when it goes away.
final class PrivateKeyMaterial {
    let path: String
    var bytes: [UInt8]
    var passphrase: String?

    init(path: String, bytes: [UInt8], passphrase: String?) {
        self.path = path
        self.bytes = bytes
        self.passphrase = passphrase
    }

    deinit {
        for index in bytes.indices { bytes[index] = 0 }
    }

    /// True for an OpenSSH-format key whose cipher is not "none" (it needs a passphrase).
    var isEncryptedOpenSSHKey: Bool {
        guard let text = String(bytes: bytes, encoding: .utf8), text.contains("BEGIN OPENSSH PRIVATE KEY") else {
            return String(bytes: bytes, encoding: .utf8)?.contains("ENCRYPTED") ?? false
        }
        let body = text.split(separator: "\n").filter { !$0.hasPrefix("-----") }.joined()
        guard let data = Data(base64Encoded: body), data.count > 19 else { return false }
        let blob = [UInt8](data)
        let magic = Array("openssh-key-v1\0".utf8)
        guard blob.starts(with: magic) else { return false }
        var offset = magic.count
        let length = Int(blob[offset]) << 24 | Int(blob[offset + 1]) << 16 | Int(blob[offset + 2]) << 8 | Int(blob[offset + 3])
        offset += 4
        guard offset + length <= blob.count else { return false }
        return String(decoding: blob[offset..<offset + length], as: UTF8.self) != "none"
    }
}

/// Reads identity files and passphrases with ssh's own rules: a private key (or passphrase file)
/// that group or others may read is refused, and nothing secret is ever put in an error message.
enum Credentials {
    static func loadPrivateKey(_ config: TunnelConfig, environment: [String: String]) throws(AttemptFailure) -> PrivateKeyMaterial? {
        guard let path = config.identityFile else { return nil }
        let bytes = try readSecretFile(path, what: "private key")
        var passphrase: String? = nil
        if let passphraseFile = config.identityPassphraseFile {
            passphrase = try passphraseText(readSecretFile(passphraseFile, what: "passphrase file"))
        } else if let credential = config.identityPassphraseCredential {
            guard let directory = environment["CREDENTIALS_DIRECTORY"] else {
                throw AttemptFailure(
                    .local,
                    "identity_passphrase_credential = \"\(credential)\" but $CREDENTIALS_DIRECTORY is not set "
                        + "(run under systemd with LoadCredential=\(credential):PATH)")
            }
            passphrase = try passphraseText(readSecretFile(directory + "/" + credential, what: "passphrase credential", checkMode: false))
        }
        return PrivateKeyMaterial(path: path, bytes: bytes, passphrase: passphrase)
    }

    private static func passphraseText(_ bytes: [UInt8]) -> String {
        var text = String(decoding: bytes, as: UTF8.self)
        while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
        return text
    }

    static func readSecretFile(_ path: String, what: String, checkMode: Bool = true) throws(AttemptFailure) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        if fd < 0 {
            let code = errno
            throw AttemptFailure(.local, "cannot open \(what) \(path): \(String(cString: strerror(code)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw AttemptFailure(.local, "\(what) \(path) is not a regular file")
        }
        if checkMode {
            let mode = info.st_mode & 0o777
            if mode & 0o077 != 0 {
                throw AttemptFailure(
                    .local,
                    "UNPROTECTED \(what.uppercased()): permissions \(zeroPadded(mode, width: 4, radix: 8)) for \(path) are too open; "
                        + "it must not be accessible by others (fix: chmod 600 \(path))")
            }
            if info.st_uid != getuid() && info.st_uid != 0 {
                throw AttemptFailure(.local, "\(what) \(path) is owned by uid \(info.st_uid), not by us (uid \(getuid()))")
            }
        }
        guard info.st_size < 1 << 20 else { throw AttemptFailure(.local, "\(what) \(path) is too large") }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            offset += n
        }
        return Array(bytes[0..<offset])
    }
}

/// Why a connection attempt failed, with what the retry policy needs to know.
struct AttemptFailure: Error {
    var kind: FailureKind
    var message: String
    init(_ kind: FailureKind, _ message: String) {
        self.kind = kind
        self.message = message
    }
}
