/// An error about a host key, a known_hosts file or its parsing.
public struct HostKeyError: Error, CustomStringConvertible, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// An SSH public key blob as sent by the server (RFC 4253 §6.6 wire format:
/// `string` type name, then type-specific fields).
///
/// Equality and hashing are by blob bytes (OpenSSH key encodings are canonical,
/// so equal blobs ⇔ equal keys).
public struct HostKey: Hashable, Sendable {
    public let blob: [UInt8]
    private let typeName: String

    /// Validates that the blob starts with a well-formed type string (RFC 4251 §6:
    /// 1–64 printable US-ASCII characters, no comma). For the key types OpenSSH
    /// knows (ssh-ed25519, ecdsa-sha2-nistp256/384/521, ssh-rsa, ssh-dss and the
    /// sk- variants) the type-specific fields are checked too, and no trailing
    /// bytes are allowed. Other types (certificates, future algorithms) are
    /// accepted after the type string check.
    public init(blob: [UInt8]) throws(HostKeyError) {
        var reader = WireReader(blob)
        guard let nameBytes = reader.string() else {
            throw HostKeyError("key blob too short for its type name (\(blob.count) bytes)")
        }
        guard (1...64).contains(nameBytes.count),
            nameBytes.allSatisfy({ $0 >= 0x21 && $0 <= 0x7e && $0 != UInt8(ascii: ",") })
        else {
            throw HostKeyError("key blob has a malformed type name")
        }
        let name = String(decoding: nameBytes, as: UTF8.self)
        try Self.validateFields(type: name, reader: &reader)
        self.blob = blob
        self.typeName = name
    }

    /// The blob given as base64 (the second field of an OpenSSH public key line).
    /// Surrounding whitespace is ignored.
    public init(base64: String) throws(HostKeyError) {
        let trimmed = trimSpace(Array(base64.utf8))
        guard !trimmed.isEmpty, let blob = Base64.decode(trimmed) else {
            throw HostKeyError("key is not valid base64")
        }
        try self.init(blob: blob)
    }

    /// Parses an OpenSSH public key line, `type base64 [comment]` (the format of
    /// `*.pub` files and of `openSSHLine`). The type must agree with the blob.
    public init(openSSHLine line: String) throws(HostKeyError) {
        let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" })
        guard fields.count >= 2 else { throw HostKeyError("expected \"type base64 [comment]\"") }
        try self.init(base64: String(fields[1]))
        guard keyTypeName(String(fields[0]), isCompatibleWith: typeName) else {
            throw HostKeyError("key type \"\(fields[0])\" does not match the key blob (\(typeName))")
        }
    }

    /// The key type name from the blob: "ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa", …
    public var algorithm: String { typeName }

    /// Like `ssh-keygen -l -E sha256`: "SHA256:" + unpadded base64 of SHA-256(blob).
    public var fingerprintSHA256: String {
        "SHA256:" + Base64.encode(Digest.sha256(blob), padding: false)
    }

    /// The blob in padded base64, as written in known_hosts and `*.pub` files.
    public var base64: String { Base64.encode(blob) }

    public var openSSHLine: String { "\(algorithm) \(base64)" }

    public static func == (lhs: HostKey, rhs: HostKey) -> Bool { lhs.blob == rhs.blob }
    public func hash(into hasher: inout Hasher) { hasher.combine(blob) }
}

extension HostKey: CustomStringConvertible {
    /// "ssh-ed25519 SHA256:…", for logs and messages.
    public var description: String { "\(algorithm) \(fingerprintSHA256)" }
}

extension HostKey {
    // MARK: - Type-specific structure

    private static func validateFields(type: String, reader: inout WireReader) throws(HostKeyError) {
        func field(_ what: String) throws(HostKeyError) -> [UInt8] {
            guard let value = reader.string() else {
                throw HostKeyError("\(type) key blob: missing or truncated \(what)")
            }
            return value
        }
        func ecdsa(curve: String, pointLength: Int) throws(HostKeyError) {
            let curveName = try field("curve name")
            guard curveName == Array(curve.utf8) else {
                throw HostKeyError(
                    "\(type) key blob: curve \"\(String(decoding: curveName, as: UTF8.self))\" does not match the type")
            }
            let point = try field("public point")
            guard point.count == pointLength, point.first == 0x04 else {
                throw HostKeyError("\(type) key blob: public point is not an uncompressed \(curve) point")
            }
        }
        switch type {
        case "ssh-ed25519":
            guard try field("public key").count == 32 else {
                throw HostKeyError("ssh-ed25519 key blob: public key is not 32 bytes")
            }
        case "sk-ssh-ed25519@openssh.com":
            guard try field("public key").count == 32 else {
                throw HostKeyError("\(type) key blob: public key is not 32 bytes")
            }
            _ = try field("application")
        case "ecdsa-sha2-nistp256":
            try ecdsa(curve: "nistp256", pointLength: 65)
        case "ecdsa-sha2-nistp384":
            try ecdsa(curve: "nistp384", pointLength: 97)
        case "ecdsa-sha2-nistp521":
            try ecdsa(curve: "nistp521", pointLength: 133)
        case "sk-ecdsa-sha2-nistp256@openssh.com":
            try ecdsa(curve: "nistp256", pointLength: 65)
            _ = try field("application")
        case "ssh-rsa":
            guard !(try field("exponent e")).isEmpty else { throw HostKeyError("ssh-rsa key blob: empty exponent") }
            guard !(try field("modulus n")).isEmpty else { throw HostKeyError("ssh-rsa key blob: empty modulus") }
        case "ssh-dss":
            for name in ["p", "q", "g", "y"] {
                guard !(try field(name)).isEmpty else { throw HostKeyError("ssh-dss key blob: empty \(name)") }
            }
        default:
            return  // certificates and unknown algorithms: type string only
        }
        guard reader.isAtEnd else {
            throw HostKeyError("\(type) key blob: \(reader.remaining) unexpected trailing bytes")
        }
    }
}

/// Key type names OpenSSH's `sshkey_read` accepts for a blob of type `blobType`
/// in a known_hosts or `*.pub` line: the type itself, plus the RSA signature
/// algorithm names, which OpenSSH maps to the same key type.
func keyTypeName(_ token: String, isCompatibleWith blobType: String) -> Bool {
    if token == blobType { return true }
    switch blobType {
    case "ssh-rsa":
        return token == "rsa-sha2-256" || token == "rsa-sha2-512"
    case "ssh-rsa-cert-v01@openssh.com":
        return token == "rsa-sha2-256-cert-v01@openssh.com" || token == "rsa-sha2-512-cert-v01@openssh.com"
    default:
        return false
    }
}

/// Key types (blob type names) of OpenSSH 9; known_hosts lines with other types
/// are skipped by ssh, so they are skipped here too.
let openSSHKeyTypes: Set<String> = [
    "ssh-ed25519", "ssh-ed25519-cert-v01@openssh.com",
    "sk-ssh-ed25519@openssh.com", "sk-ssh-ed25519-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com", "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com", "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ssh-rsa", "ssh-rsa-cert-v01@openssh.com",
    "ssh-dss", "ssh-dss-cert-v01@openssh.com",
    "ssh-xmss@openssh.com", "ssh-xmss-cert-v01@openssh.com",
]

@inline(__always)
func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d }

func trimSpace(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
    var slice = bytes
    while let first = slice.first, isSpace(first) { slice.removeFirst() }
    while let last = slice.last, isSpace(last) { slice.removeLast() }
    return slice
}

func trimSpace(_ bytes: [UInt8]) -> ArraySlice<UInt8> { trimSpace(bytes[...]) }

/// Reads RFC 4251 `string`s (uint32 big-endian length, then bytes).
struct WireReader {
    private let bytes: [UInt8]
    private var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var isAtEnd: Bool { offset == bytes.count }
    var remaining: Int { bytes.count - offset }

    mutating func string() -> [UInt8]? {
        guard remaining >= 4 else { return nil }
        var length = 0
        for i in 0..<4 { length = length << 8 | Int(bytes[offset + i]) }
        guard length <= remaining - 4 else { return nil }
        let start = offset + 4
        offset = start + length
        return Array(bytes[start..<offset])
    }

    /// The next `count` raw bytes.
    mutating func take(_ count: Int) -> [UInt8]? {
        guard remaining >= count else { return nil }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }
}
