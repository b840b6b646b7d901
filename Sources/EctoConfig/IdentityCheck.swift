import EctoHostKeys

/// Judges identity files the way the daemon will use them, without decrypting anything: what
/// `check` (and `connect`, `install`) report about `identity_file` and `certificate_file`.
/// Small functions so every command that validates a config can call them.
public enum IdentityCheck {
    /// The problem with the private key at `path`, or nil when the daemon can use it (as far as
    /// can be told without the passphrase). `passphraseConfigured`: a passphrase file or credential
    /// is set for it.
    public static func problem(
        privateKey path: String, passphraseConfigured: Bool, passphrase: [UInt8]? = nil,
        environment env: ConfigEnvironment
    ) -> String? {
        switch env.fileExists(path) {
        case .regular: break
        case .missing: return "\(TOMLWriter.quote(path)) does not exist"
        case .directory: return "\(TOMLWriter.quote(path)) is a directory, not a file"
        case .other: return "\(TOMLWriter.quote(path)) is not a regular file"
        }
        // A public key given by mistake is named as such first (its mode is usually 0644).
        let bytes = env.readBytes(path)
        if let bytes,
            case .failure(let error) = Result(catching: { () throws(PrivateKeyFileError) in
                try PrivateKeyFile.parse(bytes)
            }),
            error.kind == .publicKey
        {
            return "\(TOMLWriter.quote(path)): \(error.message)"
        }
        if let status = env.fileOwnerAndMode(path) {
            if status.mode & 0o077 != 0 {
                let mode = String(status.mode & 0o777, radix: 8)
                return
                    "permissions 0\(mode) for \(TOMLWriter.quote(path)) are too open: a private key must not be accessible by others (ssh refuses it too); fix: chmod 600 \(path)"
            }
            if status.uid != env.uid && status.uid != 0 {
                return
                    "\(TOMLWriter.quote(path)) is owned by uid \(status.uid), not by the user the daemon runs as (uid \(env.uid))"
            }
        }
        guard let bytes else {
            // An environment that knows modes is the real file system: unreadable is a problem.
            // Injected test environments without contents cannot say more.
            return env.fileOwnerAndMode(path) == nil
                ? nil : "\(TOMLWriter.quote(path)) cannot be read (check its permissions)"
        }
        let file: PrivateKeyFile
        do {
            file = try PrivateKeyFile.parse(bytes)
        } catch {
            return "\(TOMLWriter.quote(path)): \(error.message)"
        }
        if file.keyType == "ssh-dss" {
            return
                "\(TOMLWriter.quote(path)) is a DSA (ssh-dss) key, which OpenSSH refuses since 7.0: use an ed25519 key"
        }
        if let type = file.keyType, !supportedKeyTypes.contains(type) {
            return
                "\(TOMLWriter.quote(path)) is a \(type) key, which ecto-tunnel cannot use (use ed25519, ECDSA or RSA)"
        }
        if file.isEncrypted && !passphraseConfigured {
            return
                "\(TOMLWriter.quote(path)) is encrypted: set identity_passphrase_file or identity_passphrase_credential (or load it into ssh-agent)"
        }
        if file.keyType == "ssh-rsa", let blob = file.publicKeyBlob, let strings = SSHWire.strings(blob),
            strings.count == 3
        {
            let modulus = strings[2].drop(while: { $0 == 0 })
            let bits = modulus.isEmpty ? 0 : modulus.count * 8 - modulus.first!.leadingZeroBitCount
            if bits < 1024 {
                return
                    "\(TOMLWriter.quote(path)) is a \(bits)-bit RSA key: OpenSSH refuses RSA keys shorter than 1024 bits (RequiredRSASize); make a new key (ssh-keygen -t ed25519)"
            }
        }
        // Decrypt when we can (the passphrase file is readable here; a systemd credential is not).
        if let verify = env.keyVerifier, !file.isEncrypted || passphrase != nil {
            if let problem = verify(bytes, file.isEncrypted ? passphrase : nil) {
                return "\(TOMLWriter.quote(path)): \(problem)"
            }
        }
        return nil
    }

    /// A passphrase file's bytes as the daemon uses them (trailing newlines removed).
    public static func passphraseBytes(_ bytes: [UInt8]) -> [UInt8] {
        var bytes = bytes
        while let last = bytes.last, last == 0x0A || last == 0x0D { bytes.removeLast() }
        return bytes
    }

    /// Key types the daemon authenticates with.
    public static let supportedKeyTypes: Set<String> = [
        "ssh-rsa", "ssh-ed25519", "ecdsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    ]

    /// True for certificate types that work through libssh2 1.10: ECDSA. libssh2 1.10 names a
    /// certificate request's signature after the certificate's algorithm, except for ECDSA
    /// certificates, whose signature it names after the plain key type as sshd requires. For
    /// Ed25519 and RSA certificates sshd answers "signature using ssh-ed25519-cert-v01@openssh.com
    /// unverified: key type does not match" (measured against OpenSSH 9.2, docs/troubleshooting.md).
    public static func certificateUsable(_ type: String) -> Bool { type.hasPrefix("ecdsa-sha2-") }

    /// Why a certificate of `type` cannot be used, and what to do instead.
    public static func certificateLimitation(_ type: String) -> String {
        "\(type) certificates cannot be used with libssh2 1.10: it signs with the certificate's algorithm name, which sshd refuses (\"key type does not match\"); "
            + "use an ECDSA key and certificate (ssh-keygen -t ecdsa, then ssh-keygen -s CA ...), or authorize the key itself (its .pub in authorized_keys)"
    }

    /// Why the certificate at `path` cannot be used, or nil when it can (or is not a certificate;
    /// `problem(certificate:)` says so).
    public static func certificateRefusal(_ path: String, environment env: ConfigEnvironment) -> String? {
        guard let text = env.readFile(path), let key = try? HostKey(openSSHLine: text) else { return nil }
        return certificateUsable(key.algorithm) ? nil : certificateLimitation(key.algorithm)
    }

    /// The problem with a user certificate file, or nil when it is an OpenSSH certificate.
    public static func problem(certificate path: String, environment env: ConfigEnvironment) -> String? {
        guard env.fileExists(path) == .regular else {
            return "\(TOMLWriter.quote(path)) does not exist or is not a regular file"
        }
        guard let text = env.readFile(path) else { return "\(TOMLWriter.quote(path)) cannot be read" }
        guard let key = try? HostKey(openSSHLine: text), key.algorithm.hasSuffix("-cert-v01@openssh.com") else {
            return
                "\(TOMLWriter.quote(path)) is not an OpenSSH certificate (expected a KEY-cert.pub line made by ssh-keygen -s)"
        }
        return nil
    }
}
