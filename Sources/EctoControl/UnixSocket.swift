import CEctoLinux
import EctoPlatform
#if canImport(Glibc)
import Glibc
#endif

/// A failure with the call and errno, for messages like "connect /run/…/control.sock: No such file".
public struct ControlSocketError: Error, Sendable, CustomStringConvertible {
    public var code: Int32
    public var message: String

    public init(_ code: Int32, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { code == 0 ? message : "\(message): \(String(cString: strerror(code)))" }
}

/// Unix-domain socket plumbing shared by the server and the client.
enum UnixSocket {
    static func address(_ path: String) throws(ControlSocketError) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard !bytes.isEmpty, bytes.count <= ControlPaths.maxSocketPathLength else {
            throw ControlSocketError(0, "socket path \(path) is longer than \(ControlPaths.maxSocketPathLength) bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in bytes.enumerated() { raw[i] = byte }
            raw[bytes.count] = 0
        }
        return address
    }

    static func socket(nonBlocking: Bool) throws(ControlSocketError) -> Int32 {
        var type = Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue)
        if nonBlocking { type |= Int32(SOCK_NONBLOCK.rawValue) }
        let fd = Glibc.socket(AF_UNIX, type, 0)
        if fd < 0 { throw ControlSocketError(errno, "socket") }
        return fd
    }

    /// Connects (blocking). Throws with errno: ENOENT / ECONNREFUSED mean no daemon.
    static func connect(_ path: String) throws(ControlSocketError) -> Int32 {
        var address = try address(path)
        let fd = try socket(nonBlocking: false)
        // A daemon that stopped accepting (SIGSTOP, stuck) leaves the backlog full, and a Unix
        // socket connect then blocks: its send timeout bounds that wait.
        setTimeout(fd, seconds: ControlClient.defaultTimeout)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if rc != 0 {
            let code = errno
            Syscall.close(fd)
            throw ControlSocketError(code, "connect \(path)")
        }
        return fd
    }

    static func setTimeout(_ fd: Int32, seconds: Double) {
        var value = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws(ControlSocketError) {
        var offset = 0
        while offset < bytes.count {
            do {
                offset += try Syscall.blocking("send") {
                    bytes.withUnsafeBytes {
                        Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
                    }
                }
            } catch {
                throw ControlSocketError(error.code, "write to the control socket")
            }
        }
    }
}
