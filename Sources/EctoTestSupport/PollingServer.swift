import Dispatch
import Foundation
import Glibc

/// A growable byte queue over one malloc'd block (memcpy/memmove only, fast even in debug builds).
/// Confined to the server thread.
final class ByteQueue {
    private var base: UnsafeMutableRawPointer
    private var capacity: Int
    private var head = 0
    private var tail = 0

    init(capacity: Int = 1 << 16) {
        self.capacity = capacity
        base = malloc(capacity)!
    }

    deinit { free(base) }

    var count: Int { tail - head }
    var isEmpty: Bool { head == tail }
    var readable: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base + head, count: tail - head) }

    /// Room for `count` more bytes at the tail; write into it, then `commit`.
    func reserve(_ count: Int) -> UnsafeMutableRawBufferPointer {
        if capacity - tail < count {
            if head > 0 {
                memmove(base, base + head, tail - head)
                tail -= head
                head = 0
            }
            if capacity - tail < count {
                capacity = max(capacity * 2, tail + count)
                base = realloc(base, capacity)!
            }
        }
        return UnsafeMutableRawBufferPointer(start: base + tail, count: count)
    }

    func commit(_ count: Int) { tail += count }

    func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        let room = reserve(bytes.count)
        room.copyMemory(from: bytes)
        commit(bytes.count)
    }

    func consume(_ count: Int) {
        head += count
        if head == tail {
            head = 0
            tail = 0
        }
    }
}

/// What one accepted connection of a `PollingServer` does. Called only on the server thread.
protocol ConnectionBehaviour: AnyObject {
    /// Whether to read more from the peer now (besides the server's own output high-water mark).
    var wantsInput: Bool { get }
    /// True once no more output will come: when `output` has drained, the server shuts down its
    /// write side and closes the connection.
    var isFinished: Bool { get }
    func received(_ bytes: UnsafeRawBufferPointer, output: ByteQueue)
    /// The peer shut down its write side.
    func receivedEOF(output: ByteQueue)
    /// `output` has drained: append more if there is more to send.
    func refill(output: ByteQueue)
}

extension ConnectionBehaviour {
    func refill(output: ByteQueue) {}
}

/// Counters of a running server.
public struct ServerCounters: Sendable, Equatable {
    /// Connections accepted since start.
    public var accepted = 0
    /// Connections open now.
    public var active = 0
    /// Connections that ended by an error (reset, broken pipe) rather than an orderly close.
    public var failed = 0
    /// Bytes read from and written to clients.
    public var bytesIn = 0
    public var bytesOut = 0
}

/// A TCP server on 127.0.0.1 whose connections are all served by one thread running `poll(2)` over
/// non-blocking sockets; what each connection does is a `ConnectionBehaviour`.
///
/// `@unchecked Sendable`: the descriptors are immutable after `init` and used only by the server
/// thread (plus one write to the wake pipe by `stop`); counters are in a `Locked`.
final class PollingServer: @unchecked Sendable {
    let port: UInt16
    private let listener: Int32
    private let wake: (read: Int32, write: Int32)
    private let makeBehaviour: @Sendable () -> ConnectionBehaviour
    private let state = Locked<(counters: ServerCounters, stopping: Bool)>((ServerCounters(), false))
    private let finished = DispatchGroup()
    /// Stop reading from a connection while this much of its output is unsent (backpressure).
    private let outputHighWater = 4 << 20

    init(
        name: String, port: UInt16, host: String = "127.0.0.1",
        makeBehaviour: @escaping @Sendable () -> ConnectionBehaviour
    ) throws {
        // A restart on the same port must not trip over its own closed connections.
        listener = try Sockets.loopbackListener(port: port, reuseAddress: true, host: host)
        do {
            self.port = try Sockets.localPort(listener)
            wake = try Sockets.wakePipe()
        } catch {
            close(listener)
            throw error
        }
        self.makeBehaviour = makeBehaviour
        finished.enter()
        let thread = Thread { [self] in
            run()
            finished.leave()
        }
        thread.name = name
        thread.start()
    }

    var counters: ServerCounters { state.withLock { $0.counters } }

    /// Stops accepting, closes every connection and the listener, and waits for the thread (idempotent).
    func stop() {
        let first = state.withLock { state -> Bool in
            defer { state.stopping = true }
            return !state.stopping
        }
        if first {
            var byte: UInt8 = 1
            _ = write(wake.write, &byte, 1)
        }
        finished.wait()
    }

    private final class Connection {
        let fd: Int32
        let behaviour: ConnectionBehaviour
        let output = ByteQueue()
        var readEOF = false
        var isClosed = false

        init(fd: Int32, behaviour: ConnectionBehaviour) {
            self.fd = fd
            self.behaviour = behaviour
        }
    }

    private func wantsRead(_ connection: Connection) -> Bool {
        !connection.readEOF && connection.behaviour.wantsInput && connection.output.count < outputHighWater
    }

    private func run() {
        var connections: [Connection] = []
        var fds: [pollfd] = []
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 18, alignment: 16)
        defer { scratch.deallocate() }
        var acceptPausedUntil: ContinuousClock.Instant? = nil

        while true {
            if let until = acceptPausedUntil, ContinuousClock.now >= until { acceptPausedUntil = nil }
            fds.removeAll(keepingCapacity: true)
            fds.append(pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0))
            fds.append(pollfd(fd: acceptPausedUntil == nil ? listener : -1, events: Int16(POLLIN), revents: 0))
            for connection in connections {
                var events: Int16 = 0
                if wantsRead(connection) { events |= Int16(POLLIN) }
                if !connection.output.isEmpty { events |= Int16(POLLOUT) }
                fds.append(pollfd(fd: connection.fd, events: events, revents: 0))
            }
            let ready = poll(&fds, nfds_t(fds.count), acceptPausedUntil == nil ? -1 : 50)
            if ready < 0 {
                if errno == EINTR { continue }
                break
            }
            if fds[0].revents != 0 {
                var drain = [UInt8](repeating: 0, count: 64)
                _ = read(wake.read, &drain, drain.count)
                if state.withLock({ $0.stopping }) { break }
            }
            let polled = connections.count
            if fds[1].revents != 0 {
                acceptPausedUntil = acceptAll(into: &connections, scratch: scratch)
            }
            for index in 0..<polled {
                let revents = fds[index + 2].revents
                if revents != 0 { service(connections[index], revents: revents, scratch: scratch) }
            }
            connections.removeAll { $0.isClosed }
        }

        for connection in connections where !connection.isClosed {
            finish(connection, orderly: false, serverStopping: true)
        }
        close(listener)
        close(wake.read)
        close(wake.write)
    }

    /// Accepts every pending connection; returns when to retry if out of descriptors.
    private func acceptAll(
        into connections: inout [Connection], scratch: UnsafeMutableRawBufferPointer
    )
        -> ContinuousClock.Instant?
    {
        while true {
            let fd = accept(listener, nil, nil)
            if fd < 0 {
                switch errno {
                case EINTR, ECONNABORTED: continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM: return ContinuousClock.now.advanced(by: .milliseconds(50))
                default: return nil  // EAGAIN: nothing more pending
                }
            }
            Sockets.setCloseOnExec(fd)
            try? Sockets.setNonBlocking(fd)
            var on: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
            let connection = Connection(fd: fd, behaviour: makeBehaviour())
            state.withLock {
                $0.counters.accepted += 1
                $0.counters.active += 1
            }
            connections.append(connection)
            flush(connection)  // a behaviour may have something to say first
        }
    }

    private func service(_ connection: Connection, revents: Int16, scratch: UnsafeMutableRawBufferPointer) {
        var progressed = false
        if revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 && wantsRead(connection) {
            progressed = readSome(connection, scratch: scratch)
        }
        if !connection.isClosed && (!connection.output.isEmpty || connection.behaviour.isFinished) {
            progressed = flush(connection) || progressed
        }
        if !connection.isClosed && !progressed && revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0 {
            finish(connection, orderly: false)
        }
    }

    /// Reads up to a fair share; returns whether anything happened.
    private func readSome(_ connection: Connection, scratch: UnsafeMutableRawBufferPointer) -> Bool {
        var budget = 1 << 20
        var progressed = false
        while budget > 0 && !connection.isClosed && wantsRead(connection) {
            let n = recv(connection.fd, scratch.baseAddress, min(scratch.count, budget), 0)
            if n > 0 {
                progressed = true
                budget -= n
                state.withLock { $0.counters.bytesIn += n }
                connection.behaviour.received(
                    UnsafeRawBufferPointer(rebasing: scratch[0..<n]), output: connection.output)
            } else if n == 0 {
                progressed = true
                connection.readEOF = true
                connection.behaviour.receivedEOF(output: connection.output)
            } else if errno == EINTR {
                continue
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                break
            } else {
                finish(connection, orderly: false)
                return true
            }
        }
        if !connection.isClosed { flush(connection) }
        return progressed
    }

    /// Writes what it can, refilling from the behaviour; closes once the behaviour is finished and
    /// everything was sent. Returns whether anything happened.
    @discardableResult
    private func flush(_ connection: Connection) -> Bool {
        var progressed = false
        while !connection.isClosed {
            if connection.output.isEmpty {
                if connection.behaviour.isFinished {
                    finish(connection, orderly: true)
                    return true
                }
                connection.behaviour.refill(output: connection.output)
                if connection.output.isEmpty { return progressed }
            }
            let pending = connection.output.readable
            let n = send(connection.fd, pending.baseAddress, pending.count, Int32(MSG_NOSIGNAL))
            if n > 0 {
                progressed = true
                connection.output.consume(n)
                state.withLock { $0.counters.bytesOut += n }
            } else if n < 0 && errno == EINTR {
                continue
            } else if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                return progressed
            } else {
                finish(connection, orderly: false)
                return true
            }
        }
        return progressed
    }

    private func finish(_ connection: Connection, orderly: Bool, serverStopping: Bool = false) {
        guard !connection.isClosed else { return }
        if orderly { shutdown(connection.fd, Int32(SHUT_WR)) }
        close(connection.fd)
        connection.isClosed = true
        state.withLock {
            $0.counters.active -= 1
            if !orderly && !serverStopping { $0.counters.failed += 1 }
        }
    }
}
