import Foundation
import Glibc

/// An SSH key pair made by `ssh-keygen` (OpenSSH private key format unless `pemFormat`).
public struct KeyPair: Sendable, Hashable {
    /// The type asked for: "ed25519", "ecdsa" (P-256), "ecdsa-384", "ecdsa-521" or "rsa".
    public let type: String
    /// Private key file, mode 0600.
    public let privatePath: String
    /// `privatePath + ".pub"`.
    public let publicPath: String
    /// The public key line: "ssh-ed25519 AAAA… comment".
    public let publicLine: String
    /// "SHA256:…" as printed by `ssh-keygen -l -E sha256`.
    public let fingerprint: String
    /// The passphrase the private key is encrypted with, if any.
    public let passphrase: String?

    /// The algorithm name, e.g. "ssh-ed25519" or "ecdsa-sha2-nistp256".
    public var algorithm: String { String(publicLine.split(separator: " ")[0]) }
    /// The base64 public key blob.
    public var base64Blob: String { String(publicLine.split(separator: " ")[1]) }

    /// Generates a key pair at `directory/name` (and `.pub`), replacing any previous one.
    public static func generate(
        type: String = "ed25519",
        in directory: TestDirectory,
        name: String,
        passphrase: String? = nil,
        comment: String? = nil,
        pemFormat: Bool = false,
        bits: Int? = nil,
        rounds: Int? = nil,
        pemEncoding: String = "PEM"
    ) throws -> KeyPair {
        try generate(
            type: type, at: directory.file(name), passphrase: passphrase, comment: comment, pemFormat: pemFormat,
            bits: bits, rounds: rounds, pemEncoding: pemEncoding)
    }

    /// Generates a key pair at `privatePath` (and `privatePath.pub`), replacing any previous one.
    /// `bits`: RSA modulus size (default 3072); `rounds`: bcrypt KDF rounds of an encrypted
    /// OpenSSH-format key (`-a`); `pemEncoding` with `pemFormat`: "PEM" (PKCS#1/SEC1) or "PKCS8".
    public static func generate(
        type: String = "ed25519",
        at privatePath: String,
        passphrase: String? = nil,
        comment: String? = nil,
        pemFormat: Bool = false,
        bits: Int? = nil,
        rounds: Int? = nil,
        pemEncoding: String = "PEM"
    ) throws -> KeyPair {
        let publicPath = privatePath + ".pub"
        unlink(privatePath)
        unlink(publicPath)
        var arguments = ["-q", "-f", privatePath, "-N", passphrase ?? "", "-C", comment ?? "ecto-test-\(type)"]
        switch type {
        case "ed25519": arguments += ["-t", "ed25519"]
        case "ecdsa", "ecdsa-256": arguments += ["-t", "ecdsa", "-b", "256"]
        case "ecdsa-384": arguments += ["-t", "ecdsa", "-b", "384"]
        case "ecdsa-521": arguments += ["-t", "ecdsa", "-b", "521"]
        case "rsa": arguments += ["-t", "rsa", "-b", String(bits ?? 3072)]
        default: arguments += ["-t", type]
        }
        if pemFormat { arguments += ["-m", pemEncoding] }
        if let rounds { arguments += ["-a", String(rounds)] }
        try Subprocess.run("ssh-keygen", arguments).check()
        chmod(privatePath, 0o600)
        guard let line = readFileString(publicPath)?.trimmingCharacters(in: .whitespacesAndNewlines), !line.isEmpty
        else { throw TestSupportError(.notFound, "ssh-keygen wrote no public key at \(publicPath)") }
        return KeyPair(
            type: type, privatePath: privatePath, publicPath: publicPath, publicLine: line,
            fingerprint: try fingerprint(ofPublicKeyFile: publicPath), passphrase: passphrase)
    }

    /// Loads an existing pair (e.g. an sshd host key) from `privatePath` and `privatePath.pub`.
    public static func load(privatePath: String, type: String, passphrase: String? = nil) throws -> KeyPair {
        let publicPath = privatePath + ".pub"
        guard let line = readFileString(publicPath)?.trimmingCharacters(in: .whitespacesAndNewlines), !line.isEmpty
        else { throw TestSupportError(.notFound, "no public key at \(publicPath)") }
        return KeyPair(
            type: type, privatePath: privatePath, publicPath: publicPath, publicLine: line,
            fingerprint: try fingerprint(ofPublicKeyFile: publicPath), passphrase: passphrase)
    }

    /// "SHA256:…" of a public key file, from `ssh-keygen -l -E sha256 -f FILE`.
    public static func fingerprint(ofPublicKeyFile path: String) throws -> String {
        let result = try Subprocess.run("ssh-keygen", ["-l", "-E", "sha256", "-f", path]).check()
        // "256 SHA256:abc… comment (ED25519)"
        let fields = result.stdout.split(separator: " ")
        guard fields.count >= 2, fields[1].hasPrefix("SHA256:") else {
            throw TestSupportError(.notFound, "unexpected ssh-keygen -l output: \(result.stdout)")
        }
        return String(fields[1])
    }
}

extension KeyPair {
    /// A copy of this key pair at `privatePath` (and `.pub`), converted by `ssh-keygen -p` to
    /// another format and/or passphrase: `format` "RFC4716" (OpenSSH format), "PEM" or "PKCS8".
    public func converted(to privatePath: String, format: String, passphrase newPassphrase: String?) throws -> KeyPair {
        unlink(privatePath)
        unlink(privatePath + ".pub")
        guard let privateText = readFileString(self.privatePath) else {
            throw TestSupportError(.notFound, "cannot read \(self.privatePath)")
        }
        FileManager.default.createFile(
            atPath: privatePath, contents: Data(privateText.utf8), attributes: [.posixPermissions: 0o600])
        FileManager.default.createFile(
            atPath: privatePath + ".pub", contents: Data((publicLine + "\n").utf8),
            attributes: [.posixPermissions: 0o644])
        try Subprocess.run(
            "ssh-keygen",
            ["-q", "-p", "-f", privatePath, "-m", format, "-P", passphrase ?? "", "-N", newPassphrase ?? ""]
        ).check()
        return KeyPair(
            type: type, privatePath: privatePath, publicPath: privatePath + ".pub", publicLine: publicLine,
            fingerprint: fingerprint, passphrase: newPassphrase)
    }
}
