import Foundation
import Glibc

/// Free TCP ports on 127.0.0.1.
///
/// Loopback is shared with unrelated processes. Ports 32768–60999 are the kernel's ephemeral range
/// (others' outgoing connections), so a port that must be handed to another process, or re-bound
/// after a restart, comes from `probe()` (20000..<32000, never handed out by the kernel). For a
/// listener of your own, bind port 0 and read the port back (what `EchoServer` etc. do).
public enum FreePort {
    /// Ports this process already handed out, never handed out twice.
    private static let handedOut = Locked<Set<UInt16>>([])

    /// A port in `range` that 127.0.0.1 can bind right now (tested with `SO_REUSEADDR` off, so ports
    /// in TIME_WAIT or bound on 0.0.0.0 count as taken). Random picks, `attempts` tries.
    public static func probe(in range: Range<UInt16> = 20000..<32000, attempts: Int = 500) throws -> UInt16 {
        for _ in 0..<attempts {
            let port = UInt16.random(in: range)
            if handedOut.withLock({ $0.contains(port) }) { continue }
            if isFree(port) {
                let fresh = handedOut.withLock { $0.insert(port).inserted }
                if fresh { return port }
            }
        }
        throw TestSupportError(.notFound, "no free port in \(range) after \(attempts) attempts")
    }

    /// A port the kernel picks (bind to 0, read it, close). It lies in the ephemeral range, where the
    /// kernel may hand it to someone's outgoing connection at any moment: use it only where a
    /// collision would be retried, prefer `probe()` for anything handed to another process.
    public static func ephemeral() throws -> UInt16 {
        let fd = try Sockets.loopbackListener(port: 0, reuseAddress: false, listen: false)
        defer { close(fd) }
        return try Sockets.localPort(fd)
    }

    /// True if 127.0.0.1:`port` can be bound right now without `SO_REUSEADDR`.
    public static func isFree(_ port: UInt16) -> Bool {
        guard let fd = try? Sockets.loopbackListener(port: port, reuseAddress: false, listen: false) else {
            return false
        }
        close(fd)
        return true
    }
}

/// Socket plumbing shared by the servers, the client and `FreePort`.
enum Sockets {
    static func loopbackAddress(port: UInt16, host: String = "127.0.0.1") throws -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        let name = host == "localhost" ? "127.0.0.1" : host
        guard inet_pton(AF_INET, name, &address.sin_addr) == 1 else {
            throw TestSupportError(.notFound, "not an IPv4 address: \(host)")
        }
        return address
    }

    /// A TCP socket bound to 127.0.0.1:`port` (close-on-exec, non-blocking), listening unless told not.
    static func loopbackListener(
        port: UInt16, reuseAddress: Bool, listen shouldListen: Bool = true, host: String = "127.0.0.1"
    ) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError.system("socket") }
        do {
            var on: Int32 = reuseAddress ? 1 : 0
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, socklen_t(MemoryLayout<Int32>.size))
            var address = try loopbackAddress(port: port, host: host)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard bound == 0 else { throw TestSupportError.system("bind(\(host):\(port))") }
            if shouldListen {
                guard listen(fd, 4096) == 0 else { throw TestSupportError.system("listen") }
                try setNonBlocking(fd)
            }
            return fd
        } catch {
            close(fd)
            throw error
        }
    }

    static func localPort(_ fd: Int32) throws -> UInt16 {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard rc == 0 else { throw TestSupportError.system("getsockname") }
        return UInt16(bigEndian: address.sin_port)
    }

    static func setNonBlocking(_ fd: Int32, _ on: Bool = true) throws {
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK) == 0 else {
            throw TestSupportError.system("fcntl(O_NONBLOCK)")
        }
    }

    static func setCloseOnExec(_ fd: Int32) {
        let flags = fcntl(fd, F_GETFD)
        if flags >= 0 { _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
    }

    /// A pipe whose ends are close-on-exec and non-blocking (used to wake a poll loop).
    static func wakePipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw TestSupportError.system("pipe") }
        for fd in fds {
            setCloseOnExec(fd)
            try setNonBlocking(fd)
        }
        return (fds[0], fds[1])
    }
}
