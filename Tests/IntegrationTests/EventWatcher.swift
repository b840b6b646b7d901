import EctoControl
import EctoStatus
import EctoTestSupport
import Foundation
import Glibc

/// Follows a daemon's `GET /v1/events` from the moment it is started and keeps every event in
/// order, so that a test waits for what the daemon says happened since ("the session was lost
/// twice", "it is up again", "forward 1 listens") instead of grepping its log.
///
/// Start it BEFORE the action whose effect you wait for: `start` returns once the snapshot has
/// arrived, and from then on every change is on the stream, however short-lived. That is what
/// makes counting race-free; the status alone does not:
/// - `reconnects` counts the sessions a driver established after its first one, so a `target`
///   or a reload (a new driver, whose first session is no reconnect) leaves it unchanged, and it
///   says nothing of sessions lost; `since` only dates the current state;
/// - a state can be over before anyone looks (a 100 ms backoff, a session lost and replaced at
///   once), so "has it been lost?" cannot be read off the status afterwards.
/// The counts are transitions of `sessions_up` in the recorded statuses: a driver publishes each
/// of its state changes as its own event (on its thread, right after the change), so with one
/// session per tunnel every session established or lost is one rise or one fall. (With several
/// sessions, two of them changing at the same instant may show as one event.)
///
/// Start it in a steady state (after `waitForUp`, say): a change published while the subscription
/// is being set up may come after the snapshot that already shows it, and would count twice.
///
/// The daemon writes a change's reason to its log before it publishes the change, except the
/// "connected" line, which follows the `up` event.
///
/// It reads its own socket rather than `ControlClient.followEvents`, which keeps the 5 s receive
/// timeout of `ControlClient`'s connect (a quiet stream ends it, and a new subscription would miss
/// the changes in between) and cannot be stopped from another thread. `close()` (also run by
/// `deinit`) shuts the socket down, which ends the reader thread's `recv` at once, and waits for
/// that thread: no thread or descriptor outlives the watcher.
final class EventWatcher: @unchecked Sendable {
    private let stream: Stream
    private let log: @Sendable () -> String

    private init(stream: Stream, log: @escaping @Sendable () -> String) {
        self.stream = stream
        self.log = log
    }

    deinit { stream.close() }

    /// Subscribes to the daemon on `socket` (retrying while nothing listens there yet: a daemon
    /// just started) and returns once its snapshot has arrived. `log`: the daemon's log, for
    /// failure messages.
    static func start(
        socket: String, timeout: Duration = .seconds(10), log: @escaping @Sendable () -> String
    ) async throws -> EventWatcher {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        var lastProblem = "not tried"
        while ContinuousClock.now < deadline {
            let stream: Stream
            do {
                stream = try Stream.connect(socket)
            } catch let error as TestSupportError {
                lastProblem = error.message  // no socket yet, or nothing listening on it yet
                try await Task.sleep(for: .milliseconds(50))
                continue
            }
            // The watcher owns the stream from here: its deinit closes it on every path.
            let watcher = EventWatcher(stream: stream, log: log)
            while stream.events.isEmpty && stream.end == nil && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            if !stream.events.isEmpty { return watcher }
            lastProblem = stream.end ?? "no snapshot"
            watcher.close()
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestSupportError(
            .timeout, "no event subscription on \(socket) within \(timeout): \(lastProblem)\n--- daemon log:\n\(log())")
    }

    /// Ends the subscription and waits for the reader thread (idempotent).
    func close() { stream.close() }

    /// Every event so far, the snapshot first.
    var events: [ControlEvent] { stream.events }

    /// Why the stream ended (the daemon closed it, say), nil while it is open.
    var ended: String? { stream.end }

    /// Whether, at some point of `events` (the snapshot, or after a later event), every tunnel in
    /// `names` (every one the daemon had then, when nil, and at least one) was in `wanted`.
    static func reached(_ wanted: TunnelState, _ names: [String]?, in events: [ControlEvent]) -> Bool {
        var states: [String: TunnelState] = [:]
        for event in events {
            switch event.event {
            case .snapshot:
                states = Dictionary((event.tunnels ?? []).map { ($0.name, $0.state) }, uniquingKeysWith: { $1 })
            case .tunnel:
                if let tunnel = event.tunnel { states[tunnel.name] = tunnel.state }
            case .removed:
                if let name = event.name { states[name] = nil }
            }
            let tunnels = names ?? Array(states.keys)
            if !tunnels.isEmpty && tunnels.allSatisfy({ states[$0] == wanted }) { return true }
        }
        return false
    }

    /// Tunnel `name`'s statuses so far: the snapshot's (if it had the tunnel), then one per event.
    func history(_ name: String = "t") -> [TunnelStatus] {
        Self.history(name, in: events)
    }

    static func history(_ name: String, in events: [ControlEvent]) -> [TunnelStatus] {
        events.compactMap { event in
            switch event.event {
            case .snapshot: event.tunnels?.first { $0.name == name }
            case .tunnel: event.tunnel?.name == name ? event.tunnel : nil
            case .removed: nil
            }
        }
    }

    /// Sessions of `name` established since the watch started: the rises of `sessions_up` (with
    /// one session, each time the tunnel went up; what the log says with "connected").
    func sessionsEstablished(_ name: String = "t") -> Int {
        Self.steps(history(name)).rises
    }

    /// Sessions of `name` that were up and are not any more, since the watch started: the falls of
    /// `sessions_up` (a session lost, or ended by `reconnect` or `down`; with one session, each
    /// time the tunnel left up).
    func sessionsEnded(_ name: String = "t") -> Int {
        Self.steps(history(name)).falls
    }

    static func steps(_ history: [TunnelStatus]) -> (rises: Int, falls: Int) {
        var rises = 0
        var falls = 0
        for (before, after) in zip(history, history.dropFirst()) {
            rises += max(0, after.sessionsUp - before.sessionsUp)
            falls += max(0, before.sessionsUp - after.sessionsUp)
        }
        return (rises, falls)
    }

    /// Waits until `condition` holds for the events recorded so far (the snapshot first). Fails at
    /// once if the stream ended (the daemon stopped) without it.
    func wait(
        _ description: String, timeout: Duration = .seconds(10), fileID: String = #fileID, line: Int = #line,
        until condition: @escaping ([ControlEvent]) -> Bool
    ) async throws {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while true {
            let (events, end) = (stream.events, stream.end)
            if condition(events) { return }
            if end != nil || ContinuousClock.now >= deadline {
                let why = end.map { "the event stream ended (\($0))" } ?? "timed out after \(timeout)"
                throw TestSupportError(
                    .timeout,
                    "\(fileID):\(line): \(why) waiting for \(description)\n--- events:\n\(Self.describe(events))\n--- daemon log:\n\(log())"
                )
            }
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Waits until tunnel `name`'s history (see `history`) satisfies `condition`.
    func waitForTunnel(
        _ name: String = "t", _ description: String, timeout: Duration = .seconds(10), fileID: String = #fileID,
        line: Int = #line, until condition: @escaping ([TunnelStatus]) -> Bool
    ) async throws {
        try await wait("tunnel \(name): \(description)", timeout: timeout, fileID: fileID, line: line) {
            condition(Self.history(name, in: $0))
        }
    }

    /// Waits until one of tunnel `name`'s statuses since the watch started (the snapshot's
    /// included: it may hold already) satisfies `condition`.
    func waitForStatus(
        _ name: String = "t", _ description: String, timeout: Duration = .seconds(10), fileID: String = #fileID,
        line: Int = #line, where condition: @escaping (TunnelStatus) -> Bool
    ) async throws {
        try await waitForTunnel(name, description, timeout: timeout, fileID: fileID, line: line) {
            $0.contains(where: condition)
        }
    }

    /// Waits until `count` sessions of `name` were established since the watch started.
    func waitForSessionsEstablished(
        _ count: Int, _ name: String = "t", timeout: Duration = .seconds(10), fileID: String = #fileID,
        line: Int = #line
    ) async throws {
        try await waitForTunnel(
            name, "\(count) session(s) established", timeout: timeout, fileID: fileID, line: line
        ) { Self.steps($0).rises >= count }
    }

    /// Waits until `count` sessions of `name` that were up ended (lost) since the watch started.
    func waitForSessionsEnded(
        _ count: Int, _ name: String = "t", timeout: Duration = .seconds(10), fileID: String = #fileID,
        line: Int = #line
    ) async throws {
        try await waitForTunnel(
            name, "\(count) session(s) ended", timeout: timeout, fileID: fileID, line: line
        ) { Self.steps($0).falls >= count }
    }

    /// Waits until `name` was in `state` (one of `states`) with a `last_error` containing `error`
    /// (any, or none, when nil), since the watch started (snapshot included).
    func waitForState(
        _ states: Set<TunnelState>, _ name: String = "t", lastErrorContaining error: String? = nil,
        timeout: Duration = .seconds(10), fileID: String = #fileID, line: Int = #line
    ) async throws {
        let wanted = states.map(\.rawValue).sorted().joined(separator: " or ")
        try await waitForStatus(
            name, "\(wanted)\(error.map { " with last_error containing \($0.debugDescription)" } ?? "")",
            timeout: timeout, fileID: fileID, line: line
        ) { status in
            states.contains(status.state) && (error.map { status.lastError?.contains($0) == true } ?? true)
        }
    }

    /// Waits until forward `index` of `name` was in `state`, with a `last_error` containing `error`
    /// when given, since the watch started (snapshot included).
    func waitForForward(
        _ index: Int, _ state: ForwardStatus.State, _ name: String = "t", lastErrorContaining error: String? = nil,
        timeout: Duration = .seconds(10), fileID: String = #fileID, line: Int = #line
    ) async throws {
        try await waitForStatus(
            name,
            "forward \(index) \(state.rawValue)\(error.map { " with last_error containing \($0.debugDescription)" } ?? "")",
            timeout: timeout, fileID: fileID, line: line
        ) { status in
            guard index < status.forwards.count else { return false }
            let forward = status.forwards[index]
            return forward.state == state && (error.map { forward.lastError?.contains($0) == true } ?? true)
        }
    }

    /// Waits for a `removed` event of tunnel `name`.
    func waitForRemoved(
        _ name: String, timeout: Duration = .seconds(10), fileID: String = #fileID, line: Int = #line
    ) async throws {
        try await wait("tunnel \(name) removed", timeout: timeout, fileID: fileID, line: line) { events in
            events.contains { $0.event == .removed && $0.name == name }
        }
    }

    /// One line per tunnel status (for failure messages).
    static func describe(_ events: [ControlEvent]) -> String {
        func line(_ status: TunnelStatus) -> String {
            let forwards = status.forwards.map(\.state.rawValue).joined(separator: ",")
            return "\(status.name) \(status.state.rawValue) up \(status.sessionsUp)/\(status.sessions) "
                + "reconnects \(status.reconnects) forwards [\(forwards)] last_error \(status.lastError ?? "-")"
        }
        return events.map { event in
            switch event.event {
            case .snapshot: "snapshot: " + (event.tunnels ?? []).map(line).joined(separator: "; ")
            case .tunnel: event.tunnel.map(line) ?? "tunnel ?"
            case .removed: "removed \(event.name ?? "?")"
            }
        }.joined(separator: "\n")
    }

    /// The subscription's socket and reader thread; what the thread records.
    private final class Stream: @unchecked Sendable {
        private let lock = NSLock()
        private var fd: Int32
        private var recorded: [ControlEvent] = []
        private var ended: String?
        private let finished = DispatchSemaphore(value: 0)
        private var joined = false

        private init(fd: Int32) { self.fd = fd }

        var events: [ControlEvent] { lock.withLock { recorded } }
        /// Why the stream ended, nil while it is open.
        var end: String? { lock.withLock { ended } }

        /// Connects, sends the request and starts the reader thread.
        static func connect(_ path: String) throws -> Stream {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw TestSupportError(.system(errno: errno), "socket: errno \(errno)") }
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                let bytes = Array(path.utf8.prefix(raw.count - 1))
                raw.copyBytes(from: bytes)
                raw[bytes.count] = 0
            }
            let rc = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
            let request = Array("GET /v1/events HTTP/1.1\r\nHost: ecto-tunnel\r\n\r\n".utf8)
            let sent =
                rc == 0 ? request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } : -1
            if sent != request.count {
                let code = errno
                Glibc.close(fd)
                throw TestSupportError(.system(errno: code), "connect \(path): \(String(cString: strerror(code)))")
            }
            let stream = Stream(fd: fd)
            let thread = Thread { stream.read() }
            thread.name = "EventWatcher"
            thread.start()
            return stream
        }

        /// The reader thread: records every event until the stream ends, then closes the socket.
        private func read() {
            var pending: [UInt8] = []
            var headDone = false
            var buffer = [UInt8](repeating: 0, count: 64 * 1024)
            let decoder = ControlProtocol.decoder()
            var why = "the daemon closed the stream"
            let socket = lock.withLock { fd }
            reading: while true {
                let n = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
                if n < 0 && errno == EINTR { continue }
                if n < 0 { why = "recv: \(String(cString: strerror(errno)))" }
                if n <= 0 { break }
                pending.append(contentsOf: buffer[0..<n])
                if !headDone {
                    let separator: [UInt8] = [13, 10, 13, 10]
                    guard
                        let end = pending.indices.dropLast(3).first(where: { Array(pending[$0..<$0 + 4]) == separator })
                    else { continue }
                    let statusLine = String(decoding: pending[0..<end], as: UTF8.self).prefix { $0 != "\r" }
                    guard statusLine.split(separator: " ").dropFirst().first == "200" else {
                        why = "\(statusLine): \(String(decoding: pending[(end + 4)...], as: UTF8.self))"
                        break reading
                    }
                    pending.removeSubrange(0..<(end + 4))
                    headDone = true
                }
                while let newline = pending.firstIndex(of: 10) {
                    let line = Data(pending[0..<newline])
                    pending.removeSubrange(0...newline)
                    guard let event = try? decoder.decode(ControlEvent.self, from: line) else {
                        why = "undecodable event: \(String(decoding: line, as: UTF8.self))"
                        break reading
                    }
                    lock.withLock { recorded.append(event) }
                }
            }
            lock.withLock {
                ended = why
                Glibc.close(fd)
                fd = -1
            }
            finished.signal()
        }

        /// Shuts the socket down (the reader's `recv` returns at once) and waits for the thread.
        func close() {
            let wait = lock.withLock { () -> Bool in
                if fd >= 0 { shutdown(fd, Int32(SHUT_RDWR)) }
                defer { joined = true }
                return !joined
            }
            if wait { finished.wait() }
        }
    }
}

extension TunnelFixture {
    /// An `EventWatcher` on this daemon's control socket (see there: start it before the action).
    func watchEvents(timeout: Duration = .seconds(10)) async throws -> EventWatcher {
        try await EventWatcher.start(socket: socketPath, timeout: timeout) { [weak self] in self?.daemonLog ?? "" }
    }

    /// Waits until tunnel `name`'s status satisfies `condition`, now or later, on `GET /v1/events`.
    func waitForStatus(
        _ name: String = "t", _ description: String, timeout: Duration = .seconds(10), fileID: String = #fileID,
        line: Int = #line, where condition: @escaping (TunnelStatus) -> Bool
    ) async throws {
        let watcher = try await watchEvents(timeout: timeout)
        defer { watcher.close() }
        try await watcher.waitForStatus(
            name, description, timeout: timeout, fileID: fileID, line: line, where: condition)
    }
}

extension TunnelFixture {
    /// Waits until an attempt of tunnel `name` has failed (what the log says with "connection
    /// attempt failed"): `backoff` or `failed`, with a `last_error`. The reason is in the log by then.
    func waitForAttemptFailed(_ name: String = "t", timeout: Duration = .seconds(10)) async throws {
        try await waitForStatus(name, "an attempt failed (backoff or failed, with a last_error)", timeout: timeout) {
            ($0.state == .backoff || $0.state == .failed) && $0.lastError != nil
        }
    }
}

extension FaultFixture {
    /// An `EventWatcher` on this daemon's control socket (a path: reachable from the test's
    /// namespace too; see there: start it before the action).
    func watchEvents(timeout: Duration = .seconds(10)) async throws -> EventWatcher {
        try await EventWatcher.start(socket: directory.file("control.sock"), timeout: timeout) { [weak self] in
            self?.daemonLog ?? ""
        }
    }
}
