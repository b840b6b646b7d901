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

/// A private key file's bytes, for libssh2's own key path. Wiped when it goes away.
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
        wipeBytes(&bytes)
    }
}

/// Overwrites `bytes` with zeros (a volatile loop the optimiser keeps).
func wipeBytes(_ bytes: inout [UInt8]) {
    bytes.withUnsafeMutableBytes { raw in
        guard let base = raw.baseAddress else { return }
        let volatile = UnsafeMutablePointer<UInt8>(OpaquePointer(base))
        for index in 0..<raw.count { (volatile + index).pointee = 0 }
    }
}

/// Reads identity files and passphrases with ssh's own rules: a private key (or passphrase file)
/// that group or others may read is refused, and nothing secret is ever put in an error message.
enum Credentials {
    /// The passphrase for encrypted identity files, from `identity_passphrase_file` or the
    /// systemd credential `identity_passphrase_credential`; nil when neither is set.
    static func loadPassphrase(_ config: TunnelConfig, environment: [String: String]) throws(AttemptFailure) -> String?
    {
        if let passphraseFile = config.identityPassphraseFile {
            return passphraseText(try readSecretFile(passphraseFile, what: "passphrase file"))
        }
        if let credential = config.identityPassphraseCredential {
            guard let directory = environment["CREDENTIALS_DIRECTORY"] else {
                throw AttemptFailure(
                    .local,
                    "identity_passphrase_credential = \"\(credential)\" but $CREDENTIALS_DIRECTORY is not set "
                        + "(run under systemd with LoadCredential=\(credential):PATH)")
            }
            return passphraseText(
                try readSecretFile(directory + "/" + credential, what: "passphrase credential", checkMode: false))
        }
        return nil
    }

    private static func passphraseText(_ bytes: [UInt8]) -> String {
        var bytes = bytes
        defer { wipeBytes(&bytes) }
        var text = String(decoding: bytes, as: UTF8.self)
        while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
        return text
    }

    static func readSecretFile(_ path: String, what: String, checkMode: Bool = true) throws(AttemptFailure) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        if fd < 0 {
            let code = errno
            // Not there (yet): it may appear (a key being copied in), so a fixed retry; out of
            // descriptors or memory is this process's own trouble; anything else needs the operator.
            let kind: FailureKind =
                switch code {
                case ENOENT: .localTemporary
                case EMFILE, ENFILE, ENOMEM: .resources
                default: .local
                }
            throw AttemptFailure(kind, "cannot open \(what) \(path): \(String(cString: strerror(code)))")
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
                throw AttemptFailure(
                    .local, "\(what) \(path) is owned by uid \(info.st_uid), not by us (uid \(getuid()))")
            }
        }
        guard info.st_size < 1 << 20 else { throw AttemptFailure(.local, "\(what) \(path) is too large") }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var offset = 0
        while offset < bytes.count {
            guard
                let n = try? Syscall.blocking(
                    "read", { bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + offset, $0.count - offset) } }),
                n > 0
            else { break }
            offset += n
        }
        let result = Array(bytes[0..<offset])
        wipeBytes(&bytes)
        return result
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
