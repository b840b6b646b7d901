import Foundation
import Glibc

/// A blocking TCP client with timeouts on every operation (`SO_RCVTIMEO` / `SO_SNDTIMEO`), so a
/// test never hangs forever. Closed on deinit.
///
/// `@unchecked Sendable`: the descriptor is immutable and the kernel allows one thread to send while
/// another receives. `close()` must not race with other calls on the same client (a closed
/// descriptor number can be reused); close it when the other users are done, or let deinit do it.
public final class TCPClient: @unchecked Sendable {
    public let fd: Int32
    /// The port it connected to.
    public let remotePort: UInt16
    /// The local port of this connection.
    public let localPort: UInt16
    private let closed = Locked(false)
    private let ioTimeout: Duration

    private init(fd: Int32, remotePort: UInt16, ioTimeout: Duration) {
        self.fd = fd
        self.remotePort = remotePort
        self.localPort = (try? Sockets.localPort(fd)) ?? 0
        self.ioTimeout = ioTimeout
    }

    deinit { close() }

    /// Connects to `host` (default 127.0.0.1) : `port` within `timeout`. With `retryRefused`, a
    /// refused connection is retried every 20 ms until `timeout` (for a listener that is coming up).
    /// Every later send/receive fails with `.timeout` after `ioTimeout` without progress.
    public static func connect(
        host: String = "127.0.0.1",
        port: UInt16,
        timeout: Duration = .seconds(5),
        ioTimeout: Duration = .seconds(30),
        retryRefused: Bool = false
    ) throws -> TCPClient {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        var address = try Sockets.loopbackAddress(port: port, host: host)
        while true {
            let fd = socket(
                AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard fd >= 0 else { throw TestSupportError.system("socket") }
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            var failure: Int32 = rc == 0 ? 0 : errno
            if failure == EINPROGRESS {
                var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                let remaining = deadline - ContinuousClock.now
                let ready = poll(&entry, 1, max(remaining, .zero).pollMilliseconds)
                if ready == 0 {
                    Glibc.close(fd)
                    throw TestSupportError(.timeout, "connect to \(host):\(port) timed out after \(timeout)")
                }
                var soError: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length)
                failure = ready < 0 ? errno : soError
            }
            if failure == 0 {
                let client = TCPClient(fd: fd, remotePort: port, ioTimeout: ioTimeout)
                try Sockets.setNonBlocking(fd, false)
                var on: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
                client.setTimeout(ioTimeout)
                return client
            }
            Glibc.close(fd)
            if failure == ECONNREFUSED && retryRefused && ContinuousClock.now < deadline {
                sleepBlocking(.milliseconds(20))
                continue
            }
            throw TestSupportError.system("connect(\(host):\(port))", failure)
        }
    }

    /// Sets the send and receive timeouts.
    public func setTimeout(_ timeout: Duration) {
        var value = timeout.timeval
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<Glibc.timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &value, socklen_t(MemoryLayout<Glibc.timeval>.size))
    }

    // MARK: Sending

    public func sendAll(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let n = send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            if n >= 0 {
                offset += n
            } else if errno == EINTR {
                continue
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                throw TestSupportError(
                    .timeout,
                    "send to port \(remotePort) stalled for \(ioTimeout) (\(offset) of \(bytes.count) bytes sent)")
            } else {
                throw TestSupportError.system("send (port \(remotePort))")
            }
        }
    }

    public func sendAll(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try sendAll($0) }
    }

    public func sendAll(_ data: Data) throws {
        try data.withUnsafeBytes { try sendAll($0) }
    }

    public func sendAll(_ string: String) throws {
        try sendAll(Array(string.utf8))
    }

    /// Sends the first `count` bytes of the pattern of `seed` (see `PatternGenerator`).
    public func sendPattern(seed: UInt64, count: Int) throws {
        var generator = PatternGenerator(seed: seed)
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 18, alignment: 16)
        defer { chunk.deallocate() }
        while generator.offset < count {
            let part = UnsafeMutableRawBufferPointer(rebasing: chunk[0..<min(chunk.count, count - generator.offset)])
            generator.fill(part)
            try sendAll(UnsafeRawBufferPointer(part))
        }
    }

    /// Shuts down the write side (the peer reads EOF); receiving still works.
    public func shutdownWrite() throws {
        guard shutdown(fd, Int32(SHUT_WR)) == 0 else { throw TestSupportError.system("shutdown(SHUT_WR)") }
    }

    // MARK: Receiving

    /// Receives up to `maxCount` bytes; an empty result means EOF.
    public func receive(upTo maxCount: Int = 65536) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: maxCount)
        let n = try buffer.withUnsafeMutableBytes { try receiveSome(into: $0) }
        return Array(buffer[0..<n])
    }

    /// Receives exactly `count` bytes; throws `.unexpectedEOF` if the peer closes first.
    public func receive(exactly count: Int) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var received = 0
        try buffer.withUnsafeMutableBytes { whole in
            while received < count {
                let n = try receiveSome(into: UnsafeMutableRawBufferPointer(rebasing: whole[received...]))
                if n == 0 {
                    throw TestSupportError(
                        .unexpectedEOF, "port \(remotePort) closed after \(received) of \(count) bytes")
                }
                received += n
            }
        }
        return buffer
    }

    /// Receives until the peer closes its write side; throws if more than `limit` bytes arrive.
    public func receiveAll(limit: Int = 1 << 30) throws -> [UInt8] {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = try buffer.withUnsafeMutableBytes { try receiveSome(into: $0) }
            if n == 0 { return result }
            result.append(contentsOf: buffer[0..<n])
            if result.count > limit {
                throw TestSupportError(.unexpectedData, "more than \(limit) bytes from port \(remotePort)")
            }
        }
    }

    /// `receiveAll()` decoded as UTF-8.
    public func receiveAllString() throws -> String {
        String(decoding: try receiveAll(), as: UTF8.self)
    }

    /// Receives until EOF, checking every byte against the pattern of `seed`.
    public func receivePattern(seed: UInt64) throws -> PatternCheck {
        let verifier = PatternVerifier(seed: seed)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 18, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = try receiveSome(into: buffer)
            if n == 0 { return verifier.result }
            verifier.check(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
    }

    /// Reads a `SinkServer`'s verdict (after `sendPattern` and `shutdownWrite`).
    public func receiveVerdict() throws -> PatternCheck {
        let line = try receiveAllString()
        guard let verdict = PatternCheck(verdictLine: line) else {
            throw TestSupportError(.unexpectedData, "no verdict from port \(remotePort), got \(line.debugDescription)")
        }
        return verdict
    }

    /// Waits up to `timeout` for the peer to close (EOF or reset), discarding data; true if it did.
    public func waitForClose(timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let remaining = deadline - ContinuousClock.now
            if remaining <= .zero { return false }
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&entry, 1, remaining.pollMilliseconds)
            if ready < 0 && errno != EINTR { return true }
            if ready <= 0 { continue }
            let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if n == 0 { return true }
            if n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR { return true }
        }
    }

    /// Shuts the connection down both ways (`shutdown(SHUT_RDWR)`) unless it was closed: a blocked
    /// send or receive on another thread returns at once. Safe to call from any thread at any time
    /// (e.g. a watchdog bounding a whole transfer); the descriptor stays open until `close()`.
    public func abort() {
        closed.withLock { closed in
            if !closed { _ = shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    /// Closes the socket (idempotent).
    public func close() {
        let wasOpen = closed.withLock { closed -> Bool in
            defer { closed = true }
            return !closed
        }
        if wasOpen { Glibc.close(fd) }
    }

    /// One `recv` into `buffer`; 0 means EOF.
    private func receiveSome(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            let n = recv(fd, buffer.baseAddress, buffer.count, 0)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK {
                throw TestSupportError(.timeout, "receive from port \(remotePort) timed out after \(ioTimeout)")
            }
            throw TestSupportError.system("recv (port \(remotePort))")
        }
    }
}
