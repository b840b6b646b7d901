import CLibCrypto
import EctoHostKeys
#if canImport(Glibc)
import Glibc
#endif

/// The RSA signature algorithms of RFC 8332 and RFC 4253, in the order they are tried.
public enum RSASignatureAlgorithm: String, CaseIterable, Sendable {
    case sha512 = "rsa-sha2-512"
    case sha256 = "rsa-sha2-256"
    case sha1 = "ssh-rsa"

    /// The hash for `ecto_rsa_sign` (512, 256 or 1).
    var hashBits: Int32 {
        switch self {
        case .sha512: 512
        case .sha256: 256
        case .sha1: 1
        }
    }

    /// SSH2_AGENTC_SIGN_REQUEST flags: SSH_AGENT_RSA_SHA2_512 = 4, SSH_AGENT_RSA_SHA2_256 = 2.
    public var agentFlags: UInt32 {
        switch self {
        case .sha512: 4
        case .sha256: 2
        case .sha1: 0
        }
    }

    /// An `ssh-rsa` public key blob with its first string replaced by this algorithm's name. libssh2
    /// 1.10 takes the userauth algorithm name from the blob's first string and sends the blob as
    /// is; OpenSSH maps "rsa-sha2-256"/"rsa-sha2-512" to an RSA key, so the server checks the
    /// signature with the named hash (see docs/security.md).
    public func blob(from plainBlob: [UInt8]) -> [UInt8]? {
        guard var strings = SSHWire.strings(plainBlob), strings.count == 3, strings[0] == Array("ssh-rsa".utf8) else {
            return nil
        }
        strings[0] = Array(rawValue.utf8)
        return strings.flatMap { SSHWire.string($0) }
    }
}

/// A user's private key, decrypted, ready to sign. Not `Sendable`: used on one thread.
///
/// RSA keys are held by OpenSSL (an `EVP_PKEY` in OpenSSL's memory, freed and cleansed by
/// `EVP_PKEY_free`) and signed here, because libssh2 1.10 signs RSA with SHA-1 only. Other key
/// types (ed25519, ECDSA) are checked here (format, passphrase) and then given to libssh2 as the
/// file's bytes. No key material or passphrase ever goes into an error message.
public final class SSHPrivateKey {
    /// "ssh-rsa", "ssh-ed25519", "ecdsa-sha2-nistp256", … (for PEM EC keys: "ecdsa").
    public let keyType: String
    /// The public key blob, when known (always for RSA and for OpenSSH-format files).
    public let publicKeyBlob: [UInt8]?
    /// Key size in bits (RSA: modulus size), 0 when unknown.
    public let bits: Int
    private let rsa: OpaquePointer?

    private init(keyType: String, publicKeyBlob: [UInt8]?, bits: Int, rsa: OpaquePointer?) {
        self.keyType = keyType
        self.publicKeyBlob = publicKeyBlob
        self.bits = bits
        self.rsa = rsa
    }

    deinit {
        if let rsa { EVP_PKEY_free(rsa) }
    }

    public var isRSA: Bool { rsa != nil }

    /// Decrypts and checks a private key file's bytes. `passphrase` is used only when the key is
    /// encrypted. Throws `PrivateKeyFileError` naming what is wrong (never the key's bytes).
    public static func load(_ bytes: [UInt8], passphrase: [UInt8]?) throws(PrivateKeyFileError) -> SSHPrivateKey {
        let file = try PrivateKeyFile.parse(bytes)
        if file.keyType == "ssh-dss" {
            throw PrivateKeyFileError(
                .unsupportedType, "DSA (ssh-dss) keys are refused by OpenSSH since 7.0: use an ed25519 key")
        }
        if file.isEncrypted && (passphrase ?? []).isEmpty {
            throw PrivateKeyFileError(
                .needsPassphrase, "the key is encrypted: set identity_passphrase_file or identity_passphrase_credential"
            )
        }
        switch file.format {
        case .openSSH: return try loadOpenSSH(file, passphrase: passphrase ?? [])
        case .pem: return try loadPEM(bytes, isEncrypted: file.isEncrypted, passphrase: passphrase)
        }
    }

    private static func loadOpenSSH(
        _ file: PrivateKeyFile, passphrase: [UInt8]
    ) throws(PrivateKeyFileError) -> SSHPrivateKey {
        var plain = file.privateSection
        defer { wipe(&plain) }
        if file.isEncrypted {
            guard file.cipherName == "aes256-ctr" else {
                throw PrivateKeyFileError(
                    .unsupportedFormat,
                    "OpenSSH private key encrypted with \(file.cipherName), which ecto-tunnel cannot decrypt (ssh-keygen's default is aes256-ctr): re-encrypt it with ssh-keygen -p -Z aes256-ctr -f KEY"
                )
            }
            guard plain.count % 16 == 0,
                var keyAndIV = BcryptPBKDF.derive(
                    password: passphrase, salt: file.salt, rounds: file.rounds, keyLength: 48)
            else { throw PrivateKeyFileError(.malformed, "OpenSSH private key: bad encrypted section") }
            defer { wipe(&keyAndIV) }
            let ok = keyAndIV.withUnsafeBufferPointer { k in
                plain.withUnsafeMutableBufferPointer {
                    ecto_aes256_ctr(k.baseAddress, k.baseAddress! + 32, $0.baseAddress, $0.count)
                }
            }
            guard ok == 1 else { throw PrivateKeyFileError(.malformed, "OpenSSH private key: decryption failed") }
        }
        var section: OpenSSHPrivateSection
        do {
            section = try OpenSSHPrivateSection.parse(plain)
        } catch let error where error.kind == .wrongPassphrase && !file.isEncrypted {
            throw PrivateKeyFileError(.malformed, "OpenSSH private key: damaged (check integers differ)")
        }
        defer { section.wipe() }
        switch section.keyType {
        case "ssh-rsa":
            let f = section.fields  // n, e, d, iqmp, p, q
            let key = f[0].withUnsafeBufferPointer { n in
                f[1].withUnsafeBufferPointer { e in
                    f[2].withUnsafeBufferPointer { d in
                        f[4].withUnsafeBufferPointer { p in
                            f[5].withUnsafeBufferPointer { q in
                                f[3].withUnsafeBufferPointer { iqmp in
                                    ecto_rsa_from_components(
                                        n.baseAddress, n.count, e.baseAddress, e.count, d.baseAddress, d.count,
                                        p.baseAddress, p.count,
                                        q.baseAddress, q.count, iqmp.baseAddress, iqmp.count)
                                }
                            }
                        }
                    }
                }
            }
            guard let key else {
                throw PrivateKeyFileError(.malformed, "OpenSSH private key: the RSA key is not valid")
            }
            return SSHPrivateKey(
                keyType: "ssh-rsa", publicKeyBlob: rsaBlob(n: f[0], e: f[1]), bits: Int(ecto_pkey_bits(key)), rsa: key)
        case "ssh-ed25519":
            return SSHPrivateKey(keyType: "ssh-ed25519", publicKeyBlob: file.publicKeyBlob, bits: 256, rsa: nil)
        case let type where type.hasPrefix("ecdsa-sha2-"):
            let bits = Int(type.dropFirst("ecdsa-sha2-nistp".count)) ?? 0
            return SSHPrivateKey(keyType: type, publicKeyBlob: file.publicKeyBlob, bits: bits, rsa: nil)
        default:
            throw PrivateKeyFileError(.unsupportedType, "key type \(section.keyType) is not supported")
        }
    }

    private static func loadPEM(
        _ bytes: [UInt8], isEncrypted: Bool, passphrase: [UInt8]?
    ) throws(PrivateKeyFileError) -> SSHPrivateKey {
        var reason: Int32 = 0
        var secret = (passphrase ?? []) + [0]
        defer { wipe(&secret) }
        let key = bytes.withUnsafeBufferPointer { pem in
            secret.withUnsafeBufferPointer { pass in
                pass.baseAddress!.withMemoryRebound(to: CChar.self, capacity: pass.count) {
                    ecto_pem_read_private_key(pem.baseAddress, pem.count, $0, &reason)
                }
            }
        }
        guard let key else {
            if isEncrypted || reason == 1 { throw PrivateKeyFileError(.wrongPassphrase, "wrong passphrase") }
            throw PrivateKeyFileError(
                .malformed, "OpenSSL cannot read this PEM key (damaged, or an unsupported key type)")
        }
        let type = String(cString: ecto_pkey_type_name(key))
        let bits = Int(ecto_pkey_bits(key))
        switch type {
        case "RSA":
            var n = [UInt8](repeating: 0, count: 1024)
            var e = [UInt8](repeating: 0, count: 1024)
            var nLength = 0
            var eLength = 0
            guard ecto_rsa_public(key, &n, &nLength, &e, &eLength) == 1 else {
                EVP_PKEY_free(key)
                throw PrivateKeyFileError(.malformed, "cannot read the RSA public key")
            }
            return SSHPrivateKey(
                keyType: "ssh-rsa", publicKeyBlob: rsaBlob(n: Array(n[0..<nLength]), e: Array(e[0..<eLength])),
                bits: bits, rsa: key)
        case "ED25519":
            EVP_PKEY_free(key)
            return SSHPrivateKey(keyType: "ssh-ed25519", publicKeyBlob: nil, bits: 256, rsa: nil)
        case "EC":
            EVP_PKEY_free(key)
            return SSHPrivateKey(keyType: "ecdsa", publicKeyBlob: nil, bits: bits, rsa: nil)
        default:
            EVP_PKEY_free(key)
            throw PrivateKeyFileError(.unsupportedType, "key type \(type) is not supported (use ed25519, ECDSA or RSA)")
        }
    }

    /// What is wrong with a private key file's bytes for authentication (the passphrase used only
    /// when the key is encrypted), or nil when it loads and can sign. For `check` and `connect`.
    public static func problem(_ bytes: [UInt8], passphrase: [UInt8]?) -> String? {
        do {
            let key = try load(bytes, passphrase: passphrase)
            if key.isRSA && key.bits < 1024 {
                return "a \(key.bits)-bit RSA key: OpenSSH refuses RSA keys shorter than 1024 bits (RequiredRSASize)"
            }
            return nil
        } catch {
            return error.kind == .wrongPassphrase
                ? "wrong passphrase (identity_passphrase_file does not decrypt it)" : error.message
        }
    }

    /// `string("ssh-rsa") + mpint(e) + mpint(n)`.
    static func rsaBlob(n: [UInt8], e: [UInt8]) -> [UInt8] {
        SSHWire.string(Array("ssh-rsa".utf8)) + SSHWire.mpint(e) + SSHWire.mpint(n)
    }

    /// An RSASSA-PKCS1-v1_5 signature over `data` with `algorithm`'s hash, in memory allocated with
    /// `malloc` (what libssh2 frees a sign callback's result with). nil when this is not an RSA key
    /// or OpenSSL failed.
    public func signRSARaw(
        _ data: UnsafeRawBufferPointer, algorithm: RSASignatureAlgorithm
    ) -> (UnsafeMutablePointer<UInt8>, Int)? {
        guard let rsa else { return nil }
        var length = 0
        guard
            let signature = ecto_rsa_sign(
                rsa, algorithm.hashBits, data.baseAddress?.assumingMemoryBound(to: UInt8.self), data.count, &length)
        else { return nil }
        return (signature, length)
    }

    /// A signature as bytes (tests: checked with `verifyRSA` and against OpenSSL).
    public func signRSA(_ data: [UInt8], algorithm: RSASignatureAlgorithm) -> [UInt8]? {
        guard let (pointer, length) = data.withUnsafeBytes({ signRSARaw($0, algorithm: algorithm) }) else { return nil }
        defer { free(pointer) }
        return Array(UnsafeBufferPointer(start: pointer, count: length))
    }

    /// Verifies an RSASSA-PKCS1-v1_5 signature with this key (tests).
    public func verifyRSA(_ data: [UInt8], signature: [UInt8], algorithm: RSASignatureAlgorithm) -> Bool {
        guard let rsa else { return false }
        return data.withUnsafeBufferPointer { d in
            signature.withUnsafeBufferPointer { s in
                ecto_rsa_verify(rsa, algorithm.hashBits, d.baseAddress, d.count, s.baseAddress, s.count) == 1
            }
        }
    }
}
