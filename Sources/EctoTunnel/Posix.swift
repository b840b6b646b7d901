import CEctoLinux
import EctoConfig
import EctoPlatform
#if canImport(Glibc)
import Glibc
#endif

/// The result of a non-blocking syscall: the syscall layer's `SyscallResult` (EctoPlatform).
typealias IOResult<T> = SyscallResult<T>

/// The tunnel core's socket calls, on top of the one syscall layer (`EctoPlatform.Syscall`):
/// `EINTR` is retried there, `EAGAIN` becomes `.wouldBlock`, anything else is a thrown `SystemError`.
enum Posix {
    static func read(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer) throws(SystemError) -> IOResult<Int> {
        try Syscall.nonBlocking("read") { Glibc.read(fd, buffer.baseAddress, buffer.count) }
    }

    static func write(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) throws(SystemError) -> IOResult<Int> {
        try Syscall.nonBlocking("send") { Glibc.send(fd, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL)) }
    }

    /// Accepts one connection, non-blocking and close-on-exec. Returns the fd and the peer. A
    /// connection reset before we took it (ECONNABORTED) is skipped.
    static func accept(_ fd: Int32) throws(SystemError) -> IOResult<(Int32, Endpoint)> {
        var storage = sockaddr_storage()
        while true {
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let result: SyscallResult<Int32>
            do {
                result = try Syscall.nonBlocking("accept") {
                    withUnsafeMutablePointer(to: &storage) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            ecto_accept4(fd, $0, &length, Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue))
                        }
                    }
                }
            } catch  where error.code == ECONNABORTED {
                continue
            }
            switch result {
            case .wouldBlock: return .wouldBlock
            case .done(let client): return .done((client, Endpoint(storage)))
            }
        }
    }

    /// True when the socket holds at least one byte of data to read (MSG_PEEK: nothing is taken).
    static func hasPendingInput(_ fd: Int32) -> Bool {
        var byte: UInt8 = 0
        let peeked = try? Syscall.nonBlocking("recv") { recv(fd, &byte, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT)) }
        if case .done(let n) = peeked { return n > 0 }
        return false
    }

    /// Never retried on EINTR; EBADF stops a debug build (`Syscall.close`).
    static func close(_ fd: Int32) {
        Syscall.close(fd)
    }

    static func shutdownWrite(_ fd: Int32) {
        _ = Glibc.shutdown(fd, Int32(SHUT_WR))
    }

    /// Closes with SO_LINGER 0: the peer sees a reset, not an orderly end of data.
    static func reset(_ fd: Int32) {
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        Syscall.close(fd)
    }

    static func setOption(_ fd: Int32, _ level: Int32, _ name: Int32, _ value: Int32) {
        var value = value
        _ = setsockopt(fd, level, name, &value, socklen_t(MemoryLayout<Int32>.size))
    }

    static func socketError(_ fd: Int32) -> Int32 {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &value, &length) != 0 { return errno }
        return value
    }
}

/// Readiness an epoll registration asks for, or that `Epoll.wait` reports. Hang-up and error are
/// always reported, asked for or not.
struct EpollEvents: OptionSet, Sendable {
    let rawValue: UInt32
    static let input = EpollEvents(rawValue: ECTO_EPOLLIN)
    static let output = EpollEvents(rawValue: ECTO_EPOLLOUT)
    static let error = EpollEvents(rawValue: ECTO_EPOLLERR)
    static let hangUp = EpollEvents(rawValue: ECTO_EPOLLHUP)
    /// The peer shut down its sending side (asked for explicitly, unlike `hangUp`).
    static let readHangUp = EpollEvents(rawValue: ECTO_EPOLLRDHUP)
    /// Edge-triggered: each readiness is reported once, when it arises (a registration flag).
    static let edgeTriggered = EpollEvents(rawValue: ECTO_EPOLLET)
}

/// What to tell epoll when a registration's wanted events change.
enum EpollChange: Equatable {
    case add(EpollEvents)
    case modify(EpollEvents)
    case remove

    /// The change from `registered` to `wanted` (nil: not registered), or nil when there is none:
    /// interest is only ever changed when it really changes.
    static func from(_ registered: EpollEvents?, to wanted: EpollEvents?) -> EpollChange? {
        switch (registered, wanted) {
        case (nil, nil): return nil
        case (nil, let wanted?): return .add(wanted)
        case (_?, nil): return .remove
        case (let registered?, let wanted?): return registered == wanted ? nil : .modify(wanted)
        }
    }
}

/// An epoll instance, owned and used by one thread; each registration is named by a 64-bit token
/// and is level-triggered unless it asks for `.edgeTriggered`. Closing a descriptor removes its
/// registration; one that changes owner without being closed must be `remove`d first.
final class Epoll {
    let fd: Int32
    private let ready: UnsafeMutableBufferPointer<ecto_epoll_event>

    init(capacity: Int = 256) throws(SystemError) {
        let fd = ecto_epoll_create()
        if fd < 0 { throw SystemError(errno, "epoll_create1") }
        self.fd = fd
        ready = .allocate(capacity: capacity)
    }

    deinit {
        ready.deallocate()
        Glibc.close(fd)
    }

    func apply(_ change: EpollChange, fd target: Int32, token: UInt64) throws(SystemError) {
        let rc: Int32
        switch change {
        case .add(let events): rc = ecto_epoll_control(fd, ECTO_EPOLL_CTL_ADD, target, events.rawValue, token)
        case .modify(let events): rc = ecto_epoll_control(fd, ECTO_EPOLL_CTL_MOD, target, events.rawValue, token)
        case .remove: rc = ecto_epoll_control(fd, ECTO_EPOLL_CTL_DEL, target, 0, 0)
        }
        if rc != 0 { throw SystemError(errno, "epoll_ctl") }
    }

    /// Forgets `target` (before it changes owner, or after it was closed: errors are ignored).
    func remove(_ target: Int32) {
        _ = ecto_epoll_control(fd, ECTO_EPOLL_CTL_DEL, target, 0, 0)
    }

    /// Waits for readiness; what it returns is valid until the next call. EINTR returns nothing.
    func wait(timeoutMilliseconds: Int32) throws(SystemError) -> UnsafeBufferPointer<ecto_epoll_event> {
        let count = ecto_epoll_wait(fd, ready.baseAddress, Int32(clamping: ready.count), timeoutMilliseconds)
        if count < 0 {
            let code = errno
            if code != EINTR { throw SystemError(code, "epoll_wait") }
            return UnsafeBufferPointer(start: ready.baseAddress, count: 0)
        }
        return UnsafeBufferPointer(start: ready.baseAddress, count: Int(count))
    }
}

extension ecto_epoll_event {
    var readiness: EpollEvents { EpollEvents(rawValue: events) }
}

/// A wake-up eventfd: other threads `signal()`, the owning loop polls `fd` and `drain()`s.
final class WakeupFD: Sendable {
    let fd: Int32
    init() throws(SystemError) {
        let fd = ecto_eventfd(0, ECTO_EFD_NONBLOCK | ECTO_EFD_CLOEXEC)
        if fd < 0 { throw SystemError(errno, "eventfd") }
        self.fd = fd
    }
    func signal() {
        var one: UInt64 = 1
        _ = Glibc.write(fd, &one, 8)
    }
    func drain() {
        var value: UInt64 = 0
        _ = Glibc.read(fd, &value, 8)
    }
    deinit { Glibc.close(fd) }
}

extension Endpoint {
    /// A client's address as accept gave it: the numeric host and the port, kept apart (the channel
    /// open sends them apart, RFC 4254 7.2), joined only when a log line asks (`description`).
    /// Made with `inet_ntop`: no `getnameinfo`, no format string, and for IPv4 no allocation (a
    /// short string is stored inline). Another family gives host `?`, port 0.
    init(_ storage: sockaddr_storage) {
        let family = Int32(storage.ss_family)
        var port: UInt16 = 0
        let host = withUnsafeTemporaryAllocation(of: CChar.self, capacity: Int(INET6_ADDRSTRLEN)) { text in
            withUnsafeBytes(of: storage) { raw -> String in
                let address: UnsafeRawPointer
                if family == AF_INET6 {
                    port = UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port)
                    address = raw.baseAddress! + MemoryLayout<sockaddr_in6>.offset(of: \.sin6_addr)!
                } else if family == AF_INET {
                    port = UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port)
                    address = raw.baseAddress! + MemoryLayout<sockaddr_in>.offset(of: \.sin_addr)!
                } else {
                    return "?"
                }
                guard inet_ntop(family, address, text.baseAddress, socklen_t(text.count)) != nil else { return "?" }
                return String(cString: text.baseAddress!)
            }
        }
        self.init(host: host, port: port)
    }
}

/// Socket address helpers (IPv4 and IPv6).
enum SocketAddress {
    /// Resolves `host:port` to socket addresses (numeric hosts without DNS), in resolver order.
    static func resolve(host: String, port: UInt16, passive: Bool = false) throws(SystemError) -> [sockaddr_storage] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)
        var result: UnsafeMutablePointer<addrinfo>? = nil
        let rc = getaddrinfo(host, String(port), &hints, &result)
        guard rc == 0, let first = result else {
            let message = String(cString: gai_strerror(rc))
            throw SystemError(EHOSTUNREACH, "resolve \(host): \(message)")
        }
        defer { freeaddrinfo(first) }
        var addresses: [sockaddr_storage] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let entry = cursor {
            var storage = sockaddr_storage()
            withUnsafeMutableBytes(of: &storage) { target in
                target.copyMemory(
                    from: UnsafeRawBufferPointer(start: entry.pointee.ai_addr, count: Int(entry.pointee.ai_addrlen)))
            }
            addresses.append(storage)
            cursor = entry.pointee.ai_next
        }
        return addresses
    }

    static func length(of storage: sockaddr_storage) -> socklen_t {
        storage.ss_family == sa_family_t(AF_INET6)
            ? socklen_t(MemoryLayout<sockaddr_in6>.size) : socklen_t(MemoryLayout<sockaddr_in>.size)
    }
}
