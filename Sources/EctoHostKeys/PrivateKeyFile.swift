/// What a private key file is, read without decrypting anything: its container format, whether it
/// is encrypted, and (OpenSSH format) the public key stored in the clear beside the private part.
///
/// Formats: OpenSSH's own (`-----BEGIN OPENSSH PRIVATE KEY-----`, "openssh-key-v1", ssh-keygen's
/// default) and PEM (`RSA`/`EC`/`DSA PRIVATE KEY` = PKCS#1 or SEC1, optionally encrypted with a
/// `Proc-Type: 4,ENCRYPTED` header; `PRIVATE KEY` = PKCS#8; `ENCRYPTED PRIVATE KEY` = encrypted PKCS#8).
/// Pure parsing: decryption and signing live in EctoSSH.
public struct PrivateKeyFile: Sendable, Equatable {
    public enum Format: Sendable, Equatable {
        /// openssh-key-v1.
        case openSSH
        /// A PEM block; the label, e.g. "RSA PRIVATE KEY" or "PRIVATE KEY".
        case pem(label: String)
    }

    public var format: Format
    /// True when a passphrase is needed to read the private part.
    public var isEncrypted: Bool
    /// The key type when it is known before decryption: "ssh-rsa", "ssh-ed25519",
    /// "ecdsa-sha2-nistp256", "ssh-dss", … (OpenSSH format, PEM PKCS#1/SEC1); nil for PKCS#8.
    public var keyType: String?
    /// OpenSSH format: the public key blob (stored unencrypted).
    public var publicKeyBlob: [UInt8]?
    /// OpenSSH format: "none" or a cipher name such as "aes256-ctr".
    public var cipherName: String = "none"
    /// OpenSSH format: "none" or "bcrypt".
    public var kdfName: String = "none"
    /// OpenSSH format, bcrypt: the salt and the number of rounds (`ssh-keygen -a`).
    public var salt: [UInt8] = []
    public var rounds: Int = 0
    /// OpenSSH format: the (possibly encrypted) private section.
    public var privateSection: [UInt8] = []

    /// Parses the armour and, for the OpenSSH format, the container around the private section.
    public static func parse(_ bytes: [UInt8]) throws(PrivateKeyFileError) -> PrivateKeyFile {
        let text = String(decoding: bytes.prefix(1 << 20), as: UTF8.self)
        let trimmed: Substring = text.drop(while: { $0 == " " || $0 == "\n" || $0 == "\r" || $0 == "\t" })
        if trimmed.hasPrefix("ssh-") || trimmed.hasPrefix("ecdsa-") || trimmed.hasPrefix("sk-")
            || trimmed.hasPrefix("---- BEGIN SSH2 PUBLIC KEY")
        {
            throw PrivateKeyFileError(.publicKey, "this is a public key, not a private key (use the file without .pub)")
        }
        if trimmed.hasPrefix("PuTTY-User-Key-File") {
            throw PrivateKeyFileError(
                .unsupportedFormat,
                "a PuTTY key (.ppk) is not supported: convert it with puttygen KEY -O private-openssh -o KEY")
        }
        // Lines, without trailing CR; the block starts at the first -----BEGIN line.
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> Substring in
            line.hasSuffix("\r") ? line.dropLast() : line
        }
        guard
            let beginIndex = lines.firstIndex(where: {
                $0.hasPrefix("-----BEGIN ") && $0.hasSuffix("-----") && $0.count > 16
            })
        else {
            throw PrivateKeyFileError(
                .unsupportedFormat, "not a private key file (no -----BEGIN ... PRIVATE KEY----- line)")
        }
        let label = String(lines[beginIndex].dropFirst("-----BEGIN ".count).dropLast(5))
        let endLine = "-----END \(label)-----"
        guard let endIndex = lines[(beginIndex + 1)...].firstIndex(where: { $0 == endLine }) else {
            throw PrivateKeyFileError(.malformed, "the -----BEGIN \(label)----- block has no matching END line")
        }
        let bodyLines = lines[(beginIndex + 1)..<endIndex]
        switch label {
        case "OPENSSH PRIVATE KEY":
            let base64: String = bodyLines.joined().filter { !($0 == " " || $0 == "\t") }
            guard let blob = Base64.decode(base64) else {
                throw PrivateKeyFileError(.malformed, "the OpenSSH private key is not valid base64")
            }
            return try parseOpenSSH(blob)
        case "RSA PRIVATE KEY", "EC PRIVATE KEY", "DSA PRIVATE KEY", "PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
            let encrypted =
                label == "ENCRYPTED PRIVATE KEY" || bodyLines.contains { $0.hasPrefix("Proc-Type: 4,ENCRYPTED") }
            let type: String? =
                switch label {
                case "RSA PRIVATE KEY": "ssh-rsa"
                case "DSA PRIVATE KEY": "ssh-dss"
                case "EC PRIVATE KEY": "ecdsa"
                default: nil
                }
            return PrivateKeyFile(format: .pem(label: label), isEncrypted: encrypted, keyType: type)
        default:
            throw PrivateKeyFileError(
                .unsupportedFormat, "a PEM block labelled \"\(label)\" is not a private key ecto-tunnel can read")
        }
    }

    private static func parseOpenSSH(_ blob: [UInt8]) throws(PrivateKeyFileError) -> PrivateKeyFile {
        let magic = Array("openssh-key-v1\0".utf8)
        guard blob.starts(with: magic) else {
            throw PrivateKeyFileError(.malformed, "not an openssh-key-v1 key (bad magic)")
        }
        var reader = WireReader(Array(blob[magic.count...]))
        func field(_ what: String) throws(PrivateKeyFileError) -> [UInt8] {
            guard let value = reader.string() else {
                throw PrivateKeyFileError(.malformed, "OpenSSH private key: truncated \(what)")
            }
            return value
        }
        let cipher = String(decoding: try field("cipher name"), as: UTF8.self)
        let kdf = String(decoding: try field("KDF name"), as: UTF8.self)
        let kdfOptions = try field("KDF options")
        guard let count = reader.uint32() else {
            throw PrivateKeyFileError(.malformed, "OpenSSH private key: truncated key count")
        }
        guard count == 1 else {
            throw PrivateKeyFileError(
                .unsupportedFormat,
                "OpenSSH private key file holds \(count) keys; only files with one key are supported")
        }
        let publicBlob = try field("public key")
        let section = try field("private section")
        var file = PrivateKeyFile(
            format: .openSSH, isEncrypted: cipher != "none", keyType: nil, publicKeyBlob: publicBlob)
        file.cipherName = cipher
        file.kdfName = kdf
        file.privateSection = section
        var keyReader = WireReader(publicBlob)
        file.keyType = keyReader.string().map { String(decoding: $0, as: UTF8.self) }
        switch (cipher, kdf) {
        case ("none", "none"):
            break
        case (_, "bcrypt"):
            var options = WireReader(kdfOptions)
            guard let salt = options.string(), let rounds = options.uint32(), rounds > 0 else {
                throw PrivateKeyFileError(.malformed, "OpenSSH private key: malformed bcrypt KDF options")
            }
            file.salt = salt
            file.rounds = Int(rounds)
            guard cipher == "aes256-ctr" || cipher == "aes256-cbc" || cipher == "aes128-ctr" || cipher == "aes192-ctr"
            else {
                throw PrivateKeyFileError(
                    .unsupportedFormat,
                    "OpenSSH private key encrypted with \(cipher), which ecto-tunnel cannot decrypt (aes256-ctr is ssh-keygen's default): re-encrypt it with ssh-keygen -p -Z aes256-ctr -f KEY"
                )
            }
        default:
            throw PrivateKeyFileError(
                .unsupportedFormat, "OpenSSH private key with cipher \(cipher) and KDF \(kdf) is not supported")
        }
        return file
    }
}

/// Why a private key file cannot be read.
public struct PrivateKeyFileError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// A public key (`.pub`) was given where the private key belongs.
        case publicKey
        /// A format we do not read (PuTTY, unknown PEM label, a cipher we lack).
        case unsupportedFormat
        /// Damaged or truncated.
        case malformed
        /// The key is encrypted and no passphrase was given.
        case needsPassphrase
        /// The passphrase does not decrypt the key.
        case wrongPassphrase
        /// A key type ecto-tunnel cannot authenticate with.
        case unsupportedType
    }

    public var kind: Kind
    public var message: String
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
    public var description: String { message }
}

/// The private section of an openssh-key-v1 file after decryption: two equal check integers (a
/// wrong passphrase makes them differ), then the key type and its private fields, then a comment.
public struct OpenSSHPrivateSection {
    public var keyType: String
    /// The key's fields in file order (ssh-rsa: n, e, d, iqmp, p, q; ssh-ed25519: public, private
    /// (64 bytes); ecdsa: curve, Q, d).
    public var fields: [[UInt8]]

    /// Parses `plain` (the decrypted section). Throws `.wrongPassphrase` when the check integers
    /// differ (for an encrypted key that is what a wrong passphrase gives).
    public static func parse(_ plain: [UInt8]) throws(PrivateKeyFileError) -> OpenSSHPrivateSection {
        var reader = WireReader(plain)
        guard let check1 = reader.uint32(), let check2 = reader.uint32() else {
            throw PrivateKeyFileError(.malformed, "OpenSSH private key: truncated private section")
        }
        guard check1 == check2 else { throw PrivateKeyFileError(.wrongPassphrase, "wrong passphrase") }
        guard let typeBytes = reader.string() else {
            throw PrivateKeyFileError(.malformed, "OpenSSH private key: no key type")
        }
        let type = String(decoding: typeBytes, as: UTF8.self)
        let count: Int
        switch type {
        case "ssh-rsa": count = 6
        case "ssh-ed25519": count = 2
        case "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521": count = 3
        case "ssh-dss": count = 5
        default: throw PrivateKeyFileError(.unsupportedType, "key type \(type) is not supported")
        }
        var fields: [[UInt8]] = []
        for _ in 0..<count {
            guard let value = reader.string() else {
                throw PrivateKeyFileError(.malformed, "OpenSSH private key: truncated \(type) key")
            }
            fields.append(value)
        }
        return OpenSSHPrivateSection(keyType: type, fields: fields)
    }

    /// Overwrites the fields (call when done with them).
    public mutating func wipe() {
        for index in fields.indices {
            for byte in fields[index].indices { fields[index][byte] = 0 }
        }
        fields = []
    }
}

/// SSH wire format helpers for building key blobs.
public enum SSHWire {
    /// `uint32` length, then the bytes.
    public static func string(_ bytes: some Collection<UInt8>) -> [UInt8] {
        let n = UInt32(bytes.count)
        return [UInt8(n >> 24), UInt8((n >> 16) & 0xFF), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF)] + Array(bytes)
    }

    /// An `mpint` from an unsigned big-endian magnitude: leading zeros dropped, a 0x00 prefix when
    /// the top bit is set.
    public static func mpint(_ magnitude: some Collection<UInt8>) -> [UInt8] {
        var bytes = Array(magnitude.drop(while: { $0 == 0 }))
        if let first = bytes.first, first & 0x80 != 0 { bytes.insert(0, at: 0) }
        return string(bytes)
    }

    /// The strings of `blob`, in order; nil when it is not a sequence of well-formed strings.
    public static func strings(_ blob: [UInt8]) -> [[UInt8]]? {
        var reader = WireReader(blob)
        var result: [[UInt8]] = []
        while !reader.isAtEnd {
            guard let value = reader.string() else { return nil }
            result.append(value)
        }
        return result
    }
}

extension WireReader {
    mutating func uint32() -> UInt32? {
        guard let bytes = take(4) else { return nil }
        return bytes.reduce(0) { $0 << 8 | UInt32($1) }
    }
}
