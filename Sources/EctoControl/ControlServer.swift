import CEctoLinux
import Dispatch
import EctoPlatform
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The daemon's control socket: HTTP/1.1 over a Unix-domain socket, one request per connection,
/// plus a long-lived event stream (`GET /v1/events`).
///
/// One thread runs a poll loop over the listening socket, its clients and a wake-up eventfd.
/// Nothing a client sends can hurt the daemon: only the daemon's own uid is served (SO_PEERCRED,
/// on top of the 0700 directory and 0600 socket), heads and bodies have hard limits, a request
/// must arrive within `requestTimeout`, the number of clients is bounded (when full, the oldest
/// client that has not finished its request is dropped, so a crowd of idle connections cannot
/// lock the operator out), and slow event subscribers are dropped rather than buffered forever.
public final class ControlServer: Sendable {
    public struct Limits: Sendable {
        public var maxClients = 64
        public var maxSubscribers = 32
        public var requestTimeout: Duration = .seconds(5)
        public var writeTimeout: Duration = .seconds(10)
        /// Bytes an event subscriber may fall behind before it is dropped.
        public var maxSubscriberBacklog = 1 << 20
        public var maxHead = HTTPRequestParser.defaultMaxHead
        public var maxBody = HTTPRequestParser.defaultMaxBody
        public init() {}
    }

    public let path: String
    private let listenFD: Int32
    private let wakeFD: Int32
    private let identity: (dev: UInt64, ino: UInt64)
    private let limits: Limits
    private let registry: any ControlRegistry
    private let logger: Logger
    private let inbox = Mutex<Inbox>(Inbox())
    /// What other threads hand the server thread: events to publish, answers to requests that
    /// were handled elsewhere (`Router.Outcome.deferred`), and stop.
    private struct Inbox {
        var events: [Data] = []
        var answers: [(client: UInt64, response: HTTPResponse)] = []
        var stop = false
    }
    private let finished = DispatchSemaphore(value: 0)

    /// Creates the socket (and its directory when it is ours), refusing to take over a socket a
    /// live daemon answers on.
    public init(
        path: String, registry: any ControlRegistry, logger: Logger, limits: Limits = Limits()
    ) throws(ControlSocketError) {
        self.path = path
        self.registry = registry
        self.logger = logger
        self.limits = limits
        try Self.prepareDirectory(of: path)
        try Self.removeStaleSocket(at: path)
        var address = try UnixSocket.address(path)
        let fd = try UnixSocket.socket(nonBlocking: true)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if rc != 0 {
            let code = errno
            Syscall.close(fd)
            throw ControlSocketError(code, "bind \(path)")
        }
        // Owner-only. The directory (0700) already keeps others out; this is the second lock.
        chmod(path, 0o600)
        if listen(fd, 128) != 0 {
            let code = errno
            Syscall.close(fd)
            unlink(path)
            throw ControlSocketError(code, "listen \(path)")
        }
        var info = stat()
        stat(path, &info)
        self.identity = (UInt64(info.st_dev), UInt64(info.st_ino))
        self.listenFD = fd
        let wake = ecto_eventfd(0, ECTO_EFD_NONBLOCK | ECTO_EFD_CLOEXEC)
        if wake < 0 {
            let code = errno
            Syscall.close(fd)
            unlink(path)
            throw ControlSocketError(code, "eventfd")
        }
        self.wakeFD = wake
    }

    /// Starts the server thread.
    public func start() {
        startThread(name: "control", stackSize: 512 * 1024) { [self] in
            let loop = ServerLoop(server: self)
            loop.run()
            finished.signal()
        }
    }

    /// Sends `event` to every subscriber (any thread).
    public func publish(_ event: ControlEvent) {
        let line = ControlProtocol.line(event)
        inbox.withLock { $0.events.append(line) }
        signal()
    }

    /// Stops the thread, closes every client and removes the socket file (if it is still ours).
    public func stop() {
        inbox.withLock { $0.stop = true }
        signal()
        _ = finished.wait(timeout: .now() + 5)
        var info = stat()
        if stat(path, &info) == 0 && UInt64(info.st_dev) == identity.dev && UInt64(info.st_ino) == identity.ino {
            unlink(path)
        }
        Syscall.close(listenFD)
        Syscall.close(wakeFD)
    }

    /// The answer to a deferred request (any thread); dropped if its client has gone.
    fileprivate func answer(_ client: UInt64, _ response: HTTPResponse) {
        inbox.withLock { $0.answers.append((client, response)) }
        signal()
    }

    private func signal() {
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)
    }

    // MARK: Setup

    /// The socket's directory: created 0700 if missing. A directory named like ours
    /// (`ecto-tunnel`, `ecto-tunnel-UID`) must belong to us and is made 0700; an operator-chosen
    /// directory is left as it is (the socket itself is 0600 and the peer's uid is checked).
    static func prepareDirectory(of path: String) throws(ControlSocketError) {
        let directory = Path.directory(of: path)
        guard !directory.isEmpty else { return }
        var info = stat()
        if lstat(directory, &info) != 0 {
            guard errno == ENOENT else { throw ControlSocketError(errno, "cannot inspect \(directory)") }
            if mkdir(directory, 0o700) != 0 && errno != EEXIST {
                throw ControlSocketError(errno, "cannot create the control socket directory \(directory)")
            }
            guard lstat(directory, &info) == 0 else { throw ControlSocketError(errno, "cannot inspect \(directory)") }
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw ControlSocketError(
                0, "\(directory) is not a directory (a symlink or file is in the way of the control socket)")
        }
        let name = Path.lastComponent(of: directory)
        guard name == "ecto-tunnel" || name.hasPrefix("ecto-tunnel-") else { return }
        guard info.st_uid == geteuid() else {
            throw ControlSocketError(
                0,
                "\(directory) belongs to uid \(info.st_uid), not to us (uid \(geteuid())): refusing to put the control socket there"
            )
        }
        if info.st_mode & 0o077 != 0 { chmod(directory, 0o700) }
    }

    /// A socket file nobody answers on is a leftover of a crash: remove it. One a daemon answers
    /// on means that daemon is running: refuse.
    static func removeStaleSocket(at path: String) throws(ControlSocketError) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw ControlSocketError(0, "\(path) exists and is not a socket: refusing to replace it")
        }
        let fd: Int32
        do {
            fd = try UnixSocket.connect(path)
        } catch {
            guard error.code == ECONNREFUSED else {
                // EACCES and the like: not ours to remove.
                throw ControlSocketError(error.code, "cannot take over \(path)")
            }
            unlink(path)
            return
        }
        var uid: UInt32 = 0
        var pid: Int32 = 0
        let holder = ecto_peer_credentials(fd, &uid, &pid) == 0 ? " (pid \(pid))" : ""
        Syscall.close(fd)
        throw ControlSocketError(
            0,
            "another ecto-tunnel daemon\(holder) is already listening on \(path); stop it first, or pass a different --socket"
        )
    }

    // MARK: The loop (server thread only)

    private final class Client {
        /// `waiting`: the request is being handled on another thread (a pre-flight); its answer
        /// comes through the inbox.
        enum Phase { case reading, waiting, writing, subscribed, lingering }
        let fd: Int32
        /// Names the client for a deferred answer (fds are reused).
        var serial: UInt64 = 0
        let accepted: BootInstant
        var parser: HTTPRequestParser
        var phase: Phase = .reading
        var output: [UInt8] = []
        var sent = 0
        var deadline: BootInstant
        var discarded = 0

        init(fd: Int32, now: BootInstant, limits: Limits) {
            self.fd = fd
            self.accepted = now
            self.parser = HTTPRequestParser(maxHead: limits.maxHead, maxBody: limits.maxBody)
            self.deadline = now.advanced(by: limits.requestTimeout)
        }

        var pendingBytes: Int { output.count - sent }
    }

    private final class ServerLoop {
        let server: ControlServer
        var clients: [Int32: Client] = [:]
        let clock = BootClock()
        var scratch = [UInt8](repeating: 0, count: 64 * 1024)
        var nextSerial: UInt64 = 1
        var limits: Limits { server.limits }

        /// accept failed for want of resources: the listener is left out of poll for a while
        /// instead of spinning on a socket that stays readable; said once per episode.
        var acceptBackoff = AcceptBackoff()

        init(server: ControlServer) { self.server = server }

        func run() {
            var fds: [pollfd] = []
            while true {
                fds.removeAll(keepingCapacity: true)
                fds.append(pollfd(fd: server.wakeFD, events: Int16(POLLIN), revents: 0))
                let paused = acceptBackoff.isPaused(now: clock.now)
                // A negative fd is ignored by poll: the slot stays, so the offsets below hold.
                fds.append(pollfd(fd: paused ? -1 : server.listenFD, events: Int16(POLLIN), revents: 0))
                let ordered = Array(clients.values)
                for client in ordered {
                    var events: Int16 = 0
                    switch client.phase {
                    case .reading, .lingering: events = Int16(POLLIN)
                    case .waiting: events = 0  // only its hang-up matters
                    case .writing: events = Int16(POLLOUT)
                    case .subscribed: events = Int16(POLLIN) | (client.pendingBytes > 0 ? Int16(POLLOUT) : 0)
                    }
                    fds.append(pollfd(fd: client.fd, events: events | ECTO_POLLRDHUP, revents: 0))
                }
                let wait = timeout()
                let rc: Int32
                do {
                    rc = try Syscall.blocking("poll") { poll(&fds, nfds_t(fds.count), wait) }
                } catch {
                    server.logger.critical("control socket \(error)")
                    break
                }
                if fds[0].revents != 0 {
                    var value: UInt64 = 0
                    _ = Glibc.read(server.wakeFD, &value, 8)
                    let (events, answers, stop) = server.inbox.withLock { box in
                        defer {
                            box.events.removeAll()
                            box.answers.removeAll()
                        }
                        return (box.events, box.answers, box.stop)
                    }
                    if stop { break }
                    deliver(events)
                    for answer in answers {
                        if let client = clients.values.first(where: {
                            $0.serial == answer.client && $0.phase == .waiting
                        }) {
                            respond(client, answer.response)
                        }
                    }
                }
                for (offset, client) in ordered.enumerated() {
                    let revents = fds[offset + 2].revents
                    guard revents != 0, clients[client.fd] === client else { continue }
                    service(client, revents: revents)
                }
                if fds[1].revents != 0 { acceptClients() }
                expire()
            }
            for client in clients.values { Syscall.close(client.fd) }
            clients.removeAll()
        }

        func timeout() -> Int32 {
            var deadlines = clients.values.filter({ $0.phase != .subscribed && $0.phase != .waiting }).map(\.deadline)
            if let wakeUp = acceptBackoff.wakeUp(now: clock.now) { deadlines.append(wakeUp) }
            guard let earliest = deadlines.min() else { return -1 }
            let wait = clock.now.duration(to: earliest)
            if wait <= .zero { return 0 }
            return Int32(
                clamping: wait.components.seconds * 1000 + wait.components.attoseconds / 1_000_000_000_000_000 + 1)
        }

        func acceptClients() {
            for _ in 0..<64 {
                let fd: Int32
                do {
                    let listenFD = server.listenFD
                    switch try Syscall.nonBlocking(
                        "accept4",
                        { ecto_accept4(listenFD, nil, nil, Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue)) })
                    {
                    case .done(let accepted):
                        fd = accepted
                    case .wouldBlock:
                        if acceptBackoff.drained() { server.logger.info("control socket accepting again") }
                        return
                    }
                } catch  where error.code == ECONNABORTED {
                    continue  // the client gave up while queued
                } catch {
                    if acceptBackoff.failed(now: clock.now).started {
                        server.logger.error(
                            "control socket accept failed: \(error.message); pausing accepts (up to 1 s at a time) until it works again"
                        )
                    }
                    return
                }
                let now = clock.now
                let client = Client(fd: fd, now: now, limits: limits)
                var uid: UInt32 = 0
                var pid: Int32 = 0
                if ecto_peer_credentials(fd, &uid, &pid) != 0 || uid != geteuid() {
                    server.logger.warning(
                        "refused a control connection from uid \(uid) (pid \(pid)): only uid \(geteuid()) may use this daemon"
                    )
                    respond(client, .error(403, "only uid \(geteuid()) may use this control socket"))
                    clients[fd] = client
                    continue
                }
                let active = clients.values.filter { $0.phase != .subscribed }
                if active.count >= limits.maxClients {
                    // Full: make room by dropping the client that has waited longest without
                    // finishing its request (idle and slow clients), never a finished one.
                    if let oldest = active.filter({ $0.phase == .reading }).min(by: { $0.accepted < $1.accepted }) {
                        server.logger.debug("control socket full: dropping an idle client")
                        close(oldest)
                    } else {
                        respond(client, .error(503, "too many control connections; try again"))
                    }
                }
                clients[fd] = client
            }
        }

        func service(_ client: Client, revents: Int16) {
            switch client.phase {
            case .reading:
                readRequest(client)
            case .waiting:
                // Gone before its answer: nobody to tell (the change itself goes on).
                if revents & (Int16(POLLHUP | POLLERR) | ECTO_POLLRDHUP) != 0 { close(client) }
            case .writing:
                if revents & Int16(POLLERR | POLLHUP) != 0 && revents & Int16(POLLOUT) == 0 {
                    close(client)
                    return
                }
                flush(client)
            case .subscribed:
                if revents & Int16(POLLIN) != 0 || revents & (Int16(POLLHUP | POLLERR) | ECTO_POLLRDHUP) != 0 {
                    // Anything from a subscriber is ignored; its end (EOF/HUP) ends the subscription.
                    if !discard(client) {
                        close(client)
                        return
                    }
                }
                if client.pendingBytes > 0 { flush(client) }
            case .lingering:
                if !discard(client) { close(client) }
            }
        }

        func readRequest(_ client: Client) {
            while true {
                let n: Int
                switch try? Syscall.nonBlocking(
                    "recv",
                    {
                        scratch.withUnsafeMutableBytes {
                            Glibc.recv(client.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT))
                        }
                    })
                {
                case .done(let count)?: n = count
                case .wouldBlock?: return
                case nil:
                    close(client)
                    return  // reset
                }
                if n == 0 {
                    close(client)
                    return
                }  // gave up before finishing the request
                switch client.parser.feed(scratch[0..<n]) {
                case .incomplete:
                    continue
                case .failure(let status, let message):
                    server.logger.debug("bad control request: \(message)")
                    respond(client, .error(status, message))
                    return
                case .request(let request):
                    handle(request, client)
                    return
                }
            }
        }

        func handle(_ request: HTTPRequest, _ client: Client) {
            let response = Router.route(request, registry: server.registry)
            if let deferred = response.deferred {
                client.phase = .waiting
                client.serial = nextSerial
                nextSerial += 1
                let (server, serial) = (self.server, client.serial)
                deferred { answer in server.answer(serial, answer) }
                return
            }
            if response.subscribe {
                let subscribers = clients.values.filter { $0.phase == .subscribed }.count
                guard subscribers < limits.maxSubscribers else {
                    respond(client, .error(503, "too many event subscribers (\(limits.maxSubscribers))"))
                    return
                }
                client.phase = .subscribed
                client.output = response.response.serialized()
                client.output += ControlProtocol.line(ControlEvent.snapshot(server.registry.status()))
                client.sent = 0
                flush(client)
                return
            }
            respond(client, response.response)
        }

        func respond(_ client: Client, _ response: HTTPResponse) {
            client.phase = .writing
            client.output = response.serialized()
            client.sent = 0
            client.deadline = clock.now.advanced(by: limits.writeTimeout)
            flush(client)
        }

        func flush(_ client: Client) {
            while client.pendingBytes > 0 {
                let sent = try? Syscall.nonBlocking("send") {
                    client.output.withUnsafeBytes {
                        Glibc.send(
                            client.fd, $0.baseAddress! + client.sent, client.pendingBytes,
                            Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                    }
                }
                switch sent {
                case .done(let n)?: client.sent += n
                case .wouldBlock?: return
                case nil:
                    close(client)
                    return  // the client is gone
                }
            }
            client.output.removeAll(keepingCapacity: client.phase == .subscribed)
            client.sent = 0
            if client.phase == .writing {
                // Lingering close: stop writing, read and drop what the client still sends (an
                // oversized body, say) so the close does not reset the answer away.
                shutdown(client.fd, Int32(SHUT_WR))
                client.phase = .lingering
                client.deadline = clock.now.advanced(by: .seconds(2))
            }
        }

        /// Reads and drops input. False at EOF or error (the client is gone) or past the cap.
        func discard(_ client: Client) -> Bool {
            while true {
                let read = try? Syscall.nonBlocking("recv") {
                    scratch.withUnsafeMutableBytes {
                        Glibc.recv(client.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT))
                    }
                }
                guard case .done(let n)? = read else { return read != nil }  // would block: still there; error: gone
                if n == 0 { return false }
                client.discarded += n
                if client.discarded > 64 << 20 { return false }
            }
        }

        func deliver(_ events: [Data]) {
            guard !events.isEmpty else { return }
            for client in clients.values where client.phase == .subscribed {
                for line in events { client.output.append(contentsOf: line) }
                if client.pendingBytes > limits.maxSubscriberBacklog {
                    server.logger.warning("dropping an event subscriber that does not keep up")
                    close(client)
                    continue
                }
                flush(client)
            }
        }

        func expire() {
            let now = clock.now
            for client in clients.values
            where client.phase != .subscribed && client.phase != .waiting && now >= client.deadline {
                switch client.phase {
                case .reading:
                    if client.parser.bufferedCount > 0 {
                        respond(client, .error(408, "request not completed within \(limits.requestTimeout)"))
                        if client.phase == .lingering { close(client) }  // already answered; nothing more to wait for
                    } else {
                        close(client)
                    }
                default:
                    close(client)
                }
            }
        }

        func close(_ client: Client) {
            guard clients.removeValue(forKey: client.fd) != nil else { return }
            Syscall.close(client.fd)
        }
    }
}

/// Maps requests to registry calls. Pure apart from the registry.
enum Router {
    struct Outcome {
        var response: HTTPResponse
        var subscribe = false
        /// Handled on another thread: called with the function that delivers the answer.
        var deferred: ((@escaping @Sendable (HTTPResponse) -> Void) -> Void)? = nil

        init(response: HTTPResponse, subscribe: Bool = false) {
            self.response = response
            self.subscribe = subscribe
        }

        init(deferred: @escaping (@escaping @Sendable (HTTPResponse) -> Void) -> Void) {
            self.response = .error(500, "deferred")
            self.deferred = deferred
        }
    }

    static let routes = """
        GET /v1/status, GET /v1/tunnels/NAME, GET /v1/events, GET /v1/version, GET /v1/metrics, \
        POST /v1/tunnels/NAME/target, POST /v1/tunnels/NAME/up, POST /v1/tunnels/NAME/down, \
        POST /v1/tunnels/NAME/reconnect, POST /v1/reconnect, POST /v1/reload
        """

    static func route(_ request: HTTPRequest, registry: any ControlRegistry) -> Outcome {
        let parts = request.path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard parts.first == "v1" else {
            return Outcome(
                response: .error(404, "unknown path \(request.path); this daemon speaks protocol version 1: \(routes)"))
        }
        let rest = Array(parts.dropFirst())
        let deep = ["1", "true", "yes"].contains(request.query["deep"] ?? "")
        func method(_ expected: String, _ body: () -> Outcome) -> Outcome {
            guard request.method == expected else {
                return Outcome(
                    response: HTTPResponse(
                        status: 405, body: Array(#"{"error":"use \#(expected) for \#(request.path)"}"#.utf8) + [0x0A],
                        extraHeaders: [("Allow", expected)]))
            }
            return body()
        }
        @Sendable func response<T: Encodable>(_ value: Result<T, ControlFailure>) -> HTTPResponse {
            switch value {
            case .success(let report): return .json(200, report)
            case .failure(let failure): return .json(failure.status, failure.report)
            }
        }
        /// Every tunnel, or only `name` (404 when there is none); with `deep`, answered once the
        /// probes ran (deferred: the control thread does not wait for them).
        @Sendable func filtered(_ report: StatusReport, only name: String?) -> HTTPResponse {
            guard let name else { return .json(200, report) }
            var report = report
            report.tunnels = report.tunnels.filter { $0.name == name }
            if report.tunnels.isEmpty { return .error(404, "no tunnel named \(name)") }
            return .json(200, report)
        }
        func statusOutcome(only name: String?) -> Outcome {
            guard deep else { return Outcome(response: filtered(registry.status(), only: name)) }
            return Outcome { deliver in registry.deepStatus { deliver(filtered($0, only: name)) } }
        }
        switch rest.count {
        case 1 where rest[0] == "status":
            return method("GET") { statusOutcome(only: request.query["tunnel"]) }
        case 1 where rest[0] == "metrics":
            return method("GET") {
                Outcome(
                    response: HTTPResponse(
                        status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8",
                        body: Array(registry.metrics().utf8)))
            }
        case 1 where rest[0] == "version":
            return method("GET") { Outcome(response: .json(200, registry.version())) }
        case 1 where rest[0] == "events":
            return method("GET") {
                Outcome(
                    response: HTTPResponse(status: 200, contentType: "application/x-ndjson", body: [], streaming: true),
                    subscribe: true)
            }
        case 1 where rest[0] == "reload":
            return method("POST") {
                var decoded = ReloadRequest()
                if !request.body.isEmpty {
                    do {
                        decoded = try ControlProtocol.decoder().decode(ReloadRequest.self, from: Data(request.body))
                    } catch {
                        return Outcome(response: .error(400, #"the body must be empty or JSON like {"force": true}"#))
                    }
                }
                return Outcome { deliver in registry.reload(decoded) { deliver(response($0)) } }
            }
        case 1 where rest[0] == "reconnect":
            return method("POST") { Outcome { deliver in registry.reconnect(tunnel: nil) { deliver(response($0)) } } }
        case 2 where rest[0] == "tunnels":
            return method("GET") { statusOutcome(only: rest[1]) }
        case 3 where rest[0] == "tunnels":
            let name = rest[1]
            switch rest[2] {
            case "target":
                return method("POST") {
                    let decoded: TargetRequest
                    do {
                        decoded = try ControlProtocol.decoder().decode(TargetRequest.self, from: Data(request.body))
                    } catch {
                        return Outcome(response: .error(400, #"the body must be JSON like {"target": "user@host:22"}"#))
                    }
                    return Outcome { deliver in registry.setTarget(tunnel: name, decoded) { deliver(response($0)) } }
                }
            case "up", "down":
                let enabled = rest[2] == "up"
                return method("POST") {
                    Outcome { deliver in registry.setEnabled(tunnel: name, enabled: enabled) { deliver(response($0)) } }
                }
            case "reconnect":
                return method("POST") {
                    Outcome { deliver in registry.reconnect(tunnel: name) { deliver(response($0)) } }
                }
            default: break
            }
        default:
            break
        }
        return Outcome(response: .error(404, "unknown path \(request.path); known: \(routes)"))
    }
}
