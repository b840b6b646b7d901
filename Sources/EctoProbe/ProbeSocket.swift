import EctoConfig
import EctoPlatform
import Glibc

/// A non-blocking TCP client socket with one deadline for everything (connect, send, receive),
/// used by the probes. Plain POSIX, no libssh2. Confined to the thread that runs the probe.
final class ProbeSocket {
    let fd: Int32
    let deadline: ContinuousClock.Instant

    enum Failure: Error, Equatable {
        /// `connect` was refused: nothing listens on the address.
        case refused
        /// The peer closed (FIN) or reset the connection.
        case closed(reset: Bool)
        /// The deadline passed.
        case timeout
        /// Any other system error.
        case system(call: String, errno: Int32)

        var text: String {
            switch self {
            case .refused: return "connection refused"
            case .closed(let reset): return reset ? "connection reset" : "connection closed"
            case .timeout: return "timed out"
            case .system(let call, let code): return "\(call): \(String(cString: strerror(code)))"
            }
        }
    }

    private init(fd: Int32, deadline: ContinuousClock.Instant) {
        self.fd = fd
        self.deadline = deadline
    }

    deinit { Syscall.close(fd) }

    /// The address to connect to for a tunnel's local endpoint: a wildcard listen address
    /// (`0.0.0.0`, `::`) is reached through loopback.
    static func connectHost(for endpoint: Endpoint) -> String {
        switch endpoint.host {
        case "0.0.0.0", "": return "127.0.0.1"
        case "::": return "::1"
        default: return endpoint.host
        }
    }

    /// Connects to `endpoint` (names resolved with getaddrinfo; every address tried in order).
    static func connect(to endpoint: Endpoint, deadline: ContinuousClock.Instant) throws(Failure) -> ProbeSocket {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(connectHost(for: endpoint), String(endpoint.port), &hints, &list)
        guard rc == 0, let list else { throw .system(call: "getaddrinfo(\(endpoint.host))", errno: EHOSTUNREACH) }
        defer { freeaddrinfo(list) }
        var lastFailure: Failure = .refused
        var cursor: UnsafeMutablePointer<addrinfo>? = list
        while let ai = cursor {
            cursor = ai.pointee.ai_next
            let fd = socket(
                ai.pointee.ai_family,
                Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else {
                lastFailure = .system(call: "socket", errno: errno)
                continue
            }
            var on: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
            let socket = ProbeSocket(fd: fd, deadline: deadline)
            if Glibc.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 { return socket }
            guard errno == EINPROGRESS else {
                if errno == ECONNRESET { throw .closed(reset: true) }
                lastFailure = errno == ECONNREFUSED ? .refused : .system(call: "connect", errno: errno)
                continue
            }
            do {
                try socket.wait(for: Int16(POLLOUT))
            } catch {
                lastFailure = error
                if error == .timeout { throw error }
                continue
            }
            var soError: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length)
            if soError == 0 { return socket }
            // Reset while connecting: the listener accepted and closed at once (the tunnel's shape
            // for "nothing listens on the remote port"), not a refusal.
            if soError == ECONNRESET { throw .closed(reset: true) }
            lastFailure = soError == ECONNREFUSED ? .refused : .system(call: "connect", errno: soError)
        }
        throw lastFailure
    }

    /// Waits until `events` are ready or the deadline (`until`, default the socket's) passes.
    /// Returns the revents; throws `.timeout` at the deadline.
    @discardableResult
    func wait(for events: Int16, until: ContinuousClock.Instant? = nil) throws(Failure) -> Int16 {
        let end = until ?? deadline
        while true {
            let remaining = end - ContinuousClock.now
            if remaining <= .zero { throw .timeout }
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let (seconds, attoseconds) = remaining.components
            let ms = Int32(clamping: seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
            let n: Int32
            do {
                n = try Syscall.blocking("poll") { poll(&entry, 1, max(ms, 1)) }
            } catch {
                throw .system(call: error.operation, errno: error.code)
            }
            if n > 0 { return entry.revents }
        }
    }

    func sendAll(_ bytes: [UInt8]) throws(Failure) {
        var offset = 0
        while offset < bytes.count {
            let sent: SyscallResult<Int>
            do {
                sent = try Syscall.nonBlocking("send") {
                    bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
                }
            } catch  where error.code == ECONNRESET || error.code == EPIPE {
                throw .closed(reset: true)
            } catch {
                throw .system(call: error.operation, errno: error.code)
            }
            switch sent {
            case .done(let n): offset += n
            case .wouldBlock: try wait(for: Int16(POLLOUT))
            }
        }
    }

    /// Reads what is available (waiting for at least one byte); an empty result means the peer
    /// closed its side (EOF). A reset throws `.closed(reset: true)`.
    func receive(max: Int = 4096, until: ContinuousClock.Instant? = nil) throws(Failure) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: max)
        while true {
            let received: SyscallResult<Int>
            do {
                received = try Syscall.nonBlocking("recv") {
                    buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                }
            } catch  where error.code == ECONNRESET {
                throw .closed(reset: true)
            } catch {
                throw .system(call: error.operation, errno: error.code)
            }
            switch received {
            case .done(let n): return Array(buffer[0..<n])  // empty: the peer closed (EOF)
            case .wouldBlock: try wait(for: Int16(POLLIN), until: until)
            }
        }
    }

    /// Reads an HTTP response head (up to the empty line) of at most `limit` bytes. Returns the head
    /// (without the empty line) and any bytes after it; nil when the peer closed before sending anything.
    func receiveHead(limit: Int) throws(Failure) -> (head: String, rest: [UInt8])? {
        var data: [UInt8] = []
        while true {
            if let end = Self.headEnd(data) {
                return (String(decoding: data[..<end], as: UTF8.self), Array(data[(end + 4)...]))
            }
            if data.count >= limit {
                return (String(decoding: data, as: UTF8.self), [])  // bounded: the status line is what matters
            }
            let chunk = try receive(max: min(4096, limit - data.count))
            if chunk.isEmpty {
                if data.isEmpty { return nil }
                return (String(decoding: data, as: UTF8.self), [])
            }
            data += chunk
        }
    }

    static func headEnd(_ d: [UInt8]) -> Int? {
        guard d.count >= 4 else { return nil }
        for i in 0...(d.count - 4) where d[i] == 13 && d[i + 1] == 10 && d[i + 2] == 13 && d[i + 3] == 10 {
            return i
        }
        return nil
    }
}
