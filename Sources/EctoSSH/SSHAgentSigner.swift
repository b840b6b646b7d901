import EctoPlatform

#if canImport(Glibc)
import Glibc
#endif

/// Signs through an ssh-agent's socket directly (SSH2_AGENTC_SIGN_REQUEST with the RSA SHA-2 flags),
/// which libssh2 1.10's agent API cannot do (it always sends flags 0, i.e. ssh-rsa/SHA-1).
/// Blocking, on the caller's thread: the agent is a local socket and answers at once (or after
/// its own confirmation prompt, bounded by `timeoutSeconds`).
public enum SSHAgentSigner {
    static let signRequest: UInt8 = 13
    static let signResponse: UInt8 = 14
    static let failure: UInt8 = 5

    /// Asks the agent at `socketPath` to sign `data` with the key `keyBlob` (the blob the agent
    /// listed) using `algorithm`; returns the raw signature (the inner string of the agent's
    /// signature blob). Throws with a readable reason.
    public static func sign(
        socketPath: String, keyBlob: [UInt8], data: [UInt8], algorithm: RSASignatureAlgorithm, timeoutSeconds: Int = 30
    ) throws(SSHError) -> [UInt8] {
        func fail(_ message: String) -> SSHError {
            SSHError(code: -1, message: message, operation: "ssh-agent signature")
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw fail("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = Array(socketPath.utf8)
        guard path.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw fail("agent socket path too long")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.enumerated() { raw[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else { throw fail("cannot connect to \(socketPath): \(String(cString: strerror(errno)))") }

        var body: [UInt8] = [signRequest]
        body += SSHWireBytes.string(keyBlob) + SSHWireBytes.string(data) + SSHWireBytes.uint32(algorithm.agentFlags)
        let message = SSHWireBytes.uint32(UInt32(body.count)) + body
        guard writeAll(fd, message) else {
            throw fail("cannot write to the agent: \(String(cString: strerror(errno)))")
        }
        guard let header = readExactly(fd, 4) else { throw fail("the agent closed the connection or did not answer") }
        let length = Int(header.reduce(0) { $0 << 8 | UInt32($1) })
        guard length >= 1, length <= 256 * 1024, let reply = readExactly(fd, length) else {
            throw fail("bad reply from the agent")
        }
        guard reply[0] == signResponse else {
            throw fail(
                reply[0] == failure
                    ? "the agent refused to sign (key not held, or confirmation denied)"
                    : "unexpected agent reply type \(reply[0])")
        }
        var reader = ByteReader(Array(reply[1...]))
        guard let blob = reader.string() else { throw fail("malformed agent signature") }
        var inner = ByteReader(blob)
        guard let name = inner.string(), let signature = inner.string() else { throw fail("malformed agent signature") }
        let signedWith = String(decoding: name, as: UTF8.self)
        guard signedWith == algorithm.rawValue else {
            throw fail(
                "the agent signed with \(signedWith) instead of \(algorithm.rawValue) (an agent without RSA SHA-2 support)"
            )
        }
        return signature
    }

    private static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            guard
                let n = try? Syscall.blocking(
                    "send",
                    {
                        bytes.withUnsafeBytes {
                            send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL))
                        }
                    }),
                n > 0
            else { return false }
            offset += n
        }
        return true
    }

    private static func readExactly(_ fd: Int32, _ count: Int) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            guard
                let n = try? Syscall.blocking(
                    "recv", { buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + offset, count - offset, 0) } }),
                n > 0
            else { return nil }
            offset += n
        }
        return buffer
    }
}

/// RFC 4251 encodings for agent messages.
enum SSHWireBytes {
    static func uint32(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
    }
    static func string(_ bytes: [UInt8]) -> [UInt8] { uint32(UInt32(bytes.count)) + bytes }
}

/// Reads RFC 4251 strings.
struct ByteReader {
    let bytes: [UInt8]
    var offset = 0
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    mutating func string() -> [UInt8]? {
        guard bytes.count - offset >= 4 else { return nil }
        let length = Int(bytes[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) })
        guard length <= bytes.count - offset - 4 else { return nil }
        defer { offset += 4 + length }
        return Array(bytes[offset + 4..<offset + 4 + length])
    }
}
