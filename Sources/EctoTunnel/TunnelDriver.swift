import CEctoLinux
import EctoConfig
import EctoHostKeys
import EctoPlatform
import EctoSSH
import EctoStatus
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The session driver: one thread that owns one tunnel's listeners (one per forward), its SSH
/// session and every forwarded connection, and runs a non-blocking epoll loop over all of them plus
/// a wake-up eventfd.
///
/// Everything here is confined to that thread (created on it, used on it, freed on it); other
/// threads reach it only through `TunnelHandle` (a locked inbox + the eventfd, and a locked
/// status snapshot). Idle means asleep: epoll's timeout is the next deadline (keepalive,
/// dead-peer, backoff, hold, connect timeout), and it is 0 only after a pass that made progress.
final class TunnelDriver {
    typealias Instant = BootInstant

    /// Where the SSH session is in its life.
    enum Phase {
        /// No session (backoff, down, failed, or about to connect).
        case idle
        /// The first host's name is being resolved on a helper thread (`HostResolver`); the
        /// answer comes through the inbox with this ticket.
        case resolving(ticket: UInt64)
        /// The jump hosts are being connected (`carrier` holds the `JumpChain`).
        case jumping
        /// Non-blocking TCP connect to `addresses[index]` in flight on `fd`.
        case connectingTCP(fd: Int32, addresses: [sockaddr_storage], index: Int)
        /// SSH handshake (banner, key exchange) in flight.
        case handshaking(SSHSession)
        /// Authentication in flight.
        case authenticating(SSHSession, Authenticator)
        /// Up and forwarding.
        case established(SSHSession)
    }

    /// A libssh2 call that returned EAGAIN while part of a packet was still unsent: libssh2
    /// requires that exact call to be repeated before any other send on the session.
    enum PendingCall: Equatable {
        case open(UInt64), write(UInt64), read(UInt64), pull(UInt64), sendEOF(UInt64), close(UInt64), keepalive, drain
    }

    let config: TunnelConfig
    let handle: TunnelHandle
    var logger: Logger
    let clock = BootClock()
    var random = SystemRandomNumberGenerator()
    var machine: ReconnectMachine<Instant>
    /// Which failed attempts the log shows (the first of an outage, then summaries).
    var retryLog = RetryLog<Instant>()
    var phase: Phase = .idle {
        didSet { if Self.socket(of: oldValue) != Self.socket(of: phase) { forget(&sshRegistration) } }
    }
    var pending: PendingCall?
    /// An EOF or close waits for room in the SSH socket's send queue (`hasSendRoom`).
    var awaitingSendRoom = false
    /// One listener per forward (`config.forwards`, same order); only the primary lane binds.
    /// A descriptor changes only through `setListener`, which drops its epoll registration first.
    var listeners: [ListenerSlot]
    /// Some forward is listening.
    var anyListening: Bool { listeners.contains { $0.fd >= 0 } }
    var attemptDeadline: Instant?
    /// What carries the session when it is not a plain TCP connection: the jump hosts' chain or the
    /// proxy command (`TunnelDriver+Route.swift`); it lives as long as the session.
    var carrier: Carrier?
    /// The last resolve started (`Phase.resolving`); an answer with another ticket is stale.
    var resolveTicket: UInt64 = 0
    /// The jump host that failed the last attempt or ended the last session (status `hop`).
    var failedHop: String?
    var nextKeepalive: Instant?
    var connections: [UInt64: ForwardedConnection] = [:]
    /// Open clients and held connections, counted as they change (`ForwardedConnection.counters`).
    let counters: ConnectionCounters
    var openQueue: [UInt64] = []
    var nextConnectionID: UInt64 = 1
    var stopping: (deadline: Instant, done: Bool)?
    var progress = false
    let bufferSize = 64 * 1024
    var bytesIn: UInt64 = 0
    var bytesOut: UInt64 = 0
    var acceptedTotal: UInt64 = 0
    /// Clients refused at once (max_clients, or the descriptor reserve), in status.
    var clientsRefused: UInt64 = 0
    /// An episode of refused clients or paused accepts (logged once at its start and its end).
    var refusalEpisode: (start: Instant, refused: Int)?
    /// accept failed for want of resources: the listener is not watched for a while.
    var acceptBackoff = AcceptBackoff()
    var refusedTotal: UInt64 = 0
    /// What the last status update carried of the counters (a pass that changed none of them
    /// publishes nothing). `refusedTotal` is among them: a channel refused in the same pass that
    /// accepted its client changes no other counter.
    var published = (
        connections: 0, bytesIn: UInt64(0), bytesOut: UInt64(0), clientsRefused: UInt64(0), refusedTotal: UInt64(0)
    )
    /// A forced liveness check after a network change: (CLOCK_BOOTTIME ns when it started, deadline).
    var livenessProbe: (started: UInt64, deadline: Instant)?
    /// A drain open (`SSHSession.drainIncoming`) is in flight: it holds the session's one open slot.
    var drainInFlight = false
    /// Keepalive replies of an idle session left unread in the socket (`IdleReplies`).
    var idleReplies = IdleReplies()
    /// The SSH socket's send-queue room as last measured, for which session, `bytesSent` then,
    /// and until when the figure is trusted (`sendQueueHasRoom`).
    var sendRoom: (session: ObjectIdentifier, room: Int, sentAt: UInt64, until: Instant)?
    /// `keepalive_interval × keepalive_count_max` in nanoseconds (0: no dead-peer detection),
    /// computed once: `deadPeerDeadline` runs on every turn of the loop.
    let deadPeerLimitNanos: Int64
    /// Started as the successor of another driver: the listener comes with `.adopt`.
    var awaitingListener: Bool
    /// Retired before the listener arrived: pass it on to this handle.
    var successor: TunnelHandle?
    /// Which session of the tunnel this driver runs (`sessions = N`); 0 owns the listener.
    let lane: Int
    /// The other sessions of this tunnel; nil with `sessions = 1`.
    let group: SessionGroup?
    /// A secondary lane's attempt waits until the primary is up (`.primaryUp`).
    var waitingForPrimary = false
    /// What this lane last told the group: (up, connections).
    var reportedLoad = (up: false, connections: 0)
    /// Started for a configuration change: prove the session before taking over (`startPreflight`).
    let preflightRequested: Bool
    var preflight: PreflightProbe?
    var isPrimary: Bool { lane == 0 }
    /// The session is up and forwarding.
    var isEstablished: Bool { if case .established = phase { return true } else { return false } }

    /// A channel open is in flight on the established session (the head of the queue is opening).
    var openInFlight: Bool {
        guard isEstablished, let head = openQueue.first, let connection = connections[head] else { return false }
        switch connection.state {
        case .opening, .abandoned: return true
        default: return false
        }
    }

    /// One forward's listening socket and what this driver knows about it.
    struct ListenerSlot {
        let forward: Forward
        /// `forward.local` and `forward.remote` as the status shows them (made once).
        let localText: String
        let remoteText: String
        var fd: Int32 = -1
        var registration: Registration?
        /// Why the last bind failed (nil once listening, or never tried).
        var bindError: String?
        /// When to try binding again; set only while another forward listens (with none listening,
        /// the reconnect machine's local retry does it: `backoff (local)`).
        var retryAt: Instant?
        var bytesIn: UInt64 = 0
        var bytesOut: UInt64 = 0

        init(forward: Forward) {
            self.forward = forward
            self.localText = forward.local.description
            self.remoteText = forward.remote.description
        }
    }

    /// One epoll instance for every descriptor this driver waits on (created by `run`).
    var poller: Epoll?
    /// A descriptor registered with `poller`, and for what.
    struct Registration: Equatable {
        var fd: Int32
        var events: EpollEvents
    }
    var sshRegistration: Registration?
    /// Connections the next forwarding pass visits (`ForwardedConnection.needsVisit`), and the list
    /// being visited (kept only to reuse its storage).
    var scheduled: [ForwardedConnection] = []
    var visiting: [ForwardedConnection] = []
    /// `SSHSession.bytesReceived` when `collectArrivals` last saw everything libssh2 took in.
    var arrivalsCheckedAt: UInt64 = 0
    /// epoll tokens of the fixed descriptors; a client's token is its connection id (below
    /// `firstFixed`).
    enum Token {
        static let wakeup = UInt64.max
        static let ssh = UInt64.max - 1
        /// The proxy command's stderr.
        static let proxyStderr = UInt64.max - 2
        /// Jump hop `i`: its session socket is `chain - 2i`, its relay socket `chain - 2i - 1`.
        static let chain = UInt64.max - 16
        /// The lowest token of the route's descriptors (jump hops, proxy stderr).
        static let lowestCarrier = chain - 2 * UInt64(TunnelDefaults.maxJumpHosts)
        /// The listener of forward `index`: `listenerBase - index`.
        static let listenerBase = lowestCarrier - 1
        static func listener(_ index: Int) -> UInt64 { listenerBase - UInt64(index) }
        static func listenerIndex(_ token: UInt64) -> Int? {
            guard token <= listenerBase, token >= firstFixed else { return nil }
            return Int(listenerBase - token)
        }
        /// Every token from here up is a fixed descriptor's; below are clients (connection ids).
        static let firstFixed = listenerBase - UInt64(Forward.maximumPerTunnel) + 1
    }

    init(
        config: TunnelConfig, handle: TunnelHandle, logger: Logger, awaitListener: Bool = false, lane: Int = 0,
        group: SessionGroup? = nil, preflight: Bool = false
    ) {
        self.config = config
        self.preflightRequested = preflight
        self.awaitingListener = awaitListener
        self.handle = handle
        self.lane = lane
        self.group = group
        self.listeners = config.forwards.map(ListenerSlot.init(forward:))
        self.counters = ConnectionCounters(forwards: config.forwards.count)
        var logger = logger
        logger[metadataKey: "tunnel.name"] = "\(config.name)"
        if let group { logger[metadataKey: "tunnel.session"] = "\(lane + 1)/\(group.count)" }
        logger[metadataKey: "ssh.target"] = "\(config.target)"
        self.logger = logger
        let policy = ReconnectMachine<Instant>.Policy(
            backoff: BackoffPolicy(initial: config.backoffInitial, maximum: config.backoffMax))
        self.machine = ReconnectMachine(policy: policy, enabled: config.enabled, now: BootInstant.now)
        self.deadPeerLimitNanos = BootInstant.nanoseconds(of: config.keepaliveInterval * config.keepaliveCountMax)
    }

    // MARK: The loop

    func run() {
        if config.forwards.count == 1 {
            logger.info("tunnel starting", metadata: ["local": "\(config.local)", "remote": "\(config.remote)"])
        } else {
            logger.info(
                "tunnel starting",
                metadata: ["forwards": "\(config.forwards.map(\.description).joined(separator: ", "))"])
        }
        do {
            let poller = try Epoll()
            try poller.apply(.add(.input), fd: handle.wakeup.fd, token: Token.wakeup)
            self.poller = poller
        } catch {
            logger.critical("cannot create the event loop: \(error)")
            stopping = (clock.now, true)
        }
        if config.enabled && poller != nil {
            if !awaitingListener && isPrimary { bindListeners() }
            if preflightRequested { startPreflight() }
            perform(machine.initialAction())
        }
        publish(notify: true)
        let stallForTests = ProcessInfo.processInfo.environment["ECTO_TUNNEL_TEST_STALL"] == "driver"
        let crashForTests = ProcessInfo.processInfo.environment["ECTO_TUNNEL_TEST_CRASH"] == "driver"
        while !(stopping?.done ?? false), let poller {
            let timeout = progress ? 0 : pollTimeout()
            progress = false
            syncInterest()
            let ready: UnsafeBufferPointer<ecto_epoll_event>
            do {
                ready = try poller.wait(timeoutMilliseconds: timeout)
            } catch {
                logger.critical("epoll_wait failed: \(error)")
                break
            }
            var wakeup = false
            var listenersReady: [Int] = []
            var sshEvents: EpollEvents = []
            var carrierReady = false
            for event in ready {
                switch event.token {
                case Token.wakeup: wakeup = true
                case Token.ssh: sshEvents = event.readiness
                case Token.lowestCarrier...Token.proxyStderr: carrierReady = true
                default: if let index = Token.listenerIndex(event.token) { listenersReady.append(index) }
                }
            }
            if wakeup {
                handle.wakeup.drain()
                for command in handle.takeCommands() { handleCommand(command) }
                for (ticket, result) in handle.takeResolutions() { resolved(ticket: ticket, result) }
            }
            if stallForTests && handle.pongs > 0 { Self.stallForever(logger) }
            if crashForTests && handle.pongs > 0 {
                // TEST ONLY (`ECTO_TUNNEL_TEST_CRASH=driver`): a genuine crash (a trap, SIGILL) of
                // a driver thread, so tests can prove a crash still ends the daemon at once.
                fatalError("ECTO_TUNNEL_TEST_CRASH=driver: this driver thread crashes now (test switch)")
            }
            let now = clock.now
            handleTimers(now)
            if group != nil { rehomeHeldClients() }
            dispatchReadiness(ready)
            // Under churn the one channel open in flight paces every new connection: when its
            // answer may have come, the session goes first, so the next queued client's open
            // leaves before the accepts (which only queue behind it); the new clients then get a
            // pass of their own below.
            let openFirst =
                !listenersReady.isEmpty && carrier == nil && !sshEvents.isEmpty && sshRegistration != nil
                && openInFlight
            if openFirst { advanceSession(sshEvents: sshEvents) }
            // A registration dropped since the wait (listener closed or handed over, session
            // replaced) makes its readiness stale.
            for index in listenersReady where index < listeners.count && listeners[index].registration != nil {
                acceptClients(on: index, now)
            }
            // The chain relays in the same turn what the session reads and writes: bytes it put on
            // the session's socket are read now (not after another epoll_wait), and bytes the
            // session sent are carried on now.
            let relayed = carrier != nil && serviceCarrier(readiness: carrierReady)
            let sentBefore = sessionBytesSent
            let events = openFirst ? [] : sshEvents
            advanceSession(sshEvents: sshRegistration != nil ? (relayed ? events.union(.input) : events) : [])
            if carrier != nil && sessionBytesSent != sentBefore { serviceCarrier(readiness: true) }
            if preflight != nil { checkPreflight() }
            publish(notify: false)
            // A driver retired before its own predecessor handed over waits for that hand-over,
            // which it must pass on.
            let owesHandOver = awaitingListener && successor != nil
            if let stop = stopping, !stop.done, !owesHandOver, connections.isEmpty || clock.now >= stop.deadline {
                finishStop()
            }
        }
        teardownSession(reason: "tunnel stopped", graceful: true)
        closeListeners()
        endPreflight()
        publish(notify: true)
        poller = nil
        logger.info("tunnel stopped")
    }

    // MARK: epoll interest

    /// Tells epoll what changed since the last wait, and nothing else: the listeners and the SSH
    /// socket are compared with what is registered (clients are registered once, at `admit`).
    private func syncInterest() {
        let paused = acceptBackoff.isPaused(now: clock.now)
        for index in listeners.indices {
            let fd = listeners[index].fd
            let wanted = stopping == nil && fd >= 0 && !paused ? Registration(fd: fd, events: .input) : nil
            update(&listeners[index].registration, to: wanted, token: Token.listener(index))
        }
        update(&sshRegistration, to: sshInterest(), token: Token.ssh)
        if carrier != nil { syncCarrierInterest() }
    }

    /// The SSH socket's wanted events: connect completion, then input, plus output while libssh2
    /// has something half-sent.
    private func sshInterest() -> Registration? {
        switch phase {
        case .idle, .resolving, .jumping:
            return nil
        case .connectingTCP(let fd, _, _):
            return Registration(fd: fd, events: .output)
        case .handshaking(let session), .authenticating(let session, _), .established(let session):
            let outbound = pending != nil || awaitingSendRoom || session.blockDirections.contains(.outbound)
            // Replies left unread keep the socket readable: only new bytes, or the peer's end,
            // may wake the loop then.
            let inbound: EpollEvents = idleReplies.holdsBytes ? [.input, .readHangUp, .edgeTriggered] : .input
            return Registration(fd: session.socket, events: outbound ? inbound.union(.output) : inbound)
        }
    }

    private func update(_ registration: inout Registration?, to wanted: Registration?, token: UInt64) {
        guard registration != wanted, let poller else { return }
        if let current = registration, current.fd != wanted?.fd { forget(&registration) }
        guard let wanted, let change = EpollChange.from(registration?.events, to: wanted.events) else { return }
        do {
            try poller.apply(change, fd: wanted.fd, token: token)
            registration = wanted
        } catch {
            // Not expected (only out of memory): the next iteration tries again.
            logger.error("cannot watch descriptor \(wanted.fd): \(error)")
        }
    }

    /// Drops a fixed descriptor's registration when the descriptor itself changes (the listener
    /// closed or handed over, the SSH socket replaced). It runs from `setListener`
    /// and the `didSet` of `phase`, before this thread can open anything that reuses the number; after a close
    /// the removal simply finds nothing.
    func forget(_ registration: inout Registration?) {
        guard let current = registration else { return }
        poller?.remove(current.fd)
        registration = nil
    }

    private static func socket(of phase: Phase) -> Int32 {
        switch phase {
        case .idle, .resolving, .jumping: return -1
        case .connectingTCP(let fd, _, _): return fd
        case .handshaking(let session), .authenticating(let session, _), .established(let session):
            return session.socket
        }
    }

    private func dispatchReadiness(_ ready: UnsafeBufferPointer<ecto_epoll_event>) {
        for event in ready where event.token < Token.firstFixed {
            guard let connection = connections[event.token], connection.isClientOpen else { continue }
            let events = event.readiness
            if connection.isOpen {
                connection.clientReady(events)
                schedule(connection)
            } else if !events.isDisjoint(with: [.hangUp, .error]) {
                // A held or queued client gave up before its channel opened.
                logger.debug("client left before its channel opened", metadata: ["client": "\(connection.peer)"])
                drop(connection, reason: nil)
            } else if events.contains(.readHangUp) {
                if Posix.hasPendingInput(connection.fd) {
                    // It sent something, then shut down its sending side: it may want the reply.
                    // (Edge-triggered: that end is not reported again.)
                    connection.sentEOFWhileWaiting()
                } else {
                    // Closed without sending anything: nothing can come of it. Let it go now.
                    logger.debug(
                        "client closed while waiting for a session", metadata: ["client": "\(connection.peer)"])
                    drop(connection, reason: nil)
                }
            }
            // Otherwise data or room while it waits for its channel: it starts readable at its
            // open, and nothing can block a write before then.
        }
    }

    /// Milliseconds until the earliest deadline, or -1 (sleep until woken).
    private func pollTimeout() -> Int32 {
        var earliest = Self.earlier(attemptDeadline, machine.retryAt)
        earliest = Self.earlier(earliest, stopping?.deadline)
        earliest = Self.earlier(earliest, acceptBackoff.wakeUp(now: clock.now))
        for slot in listeners { earliest = Self.earlier(earliest, slot.retryAt) }
        if case .established(let session) = phase {
            earliest = Self.earlier(earliest, nextKeepalive)
            earliest = Self.earlier(earliest, livenessProbe?.deadline)
            earliest = Self.earlier(earliest, deadPeerDeadline(session))
        }
        if case .chain(let chain)? = carrier { earliest = Self.earlier(earliest, chain.nextDeadline()) }
        // Clients are held only while no session is up, and then they are all there is.
        if counters.held > 0 {
            for connection in connections.values {
                earliest = Self.earlier(earliest, connection.holdDeadline)
            }
        }
        guard let earliest else { return -1 }
        let wait = earliest.nanoseconds &- clock.now.nanoseconds
        if wait <= 0 { return 0 }
        return Int32(clamping: wait / 1_000_000 + 1)
    }

    private static func earlier(_ a: Instant?, _ b: Instant?) -> Instant? {
        guard let a else { return b }
        guard let b else { return a }
        return min(a, b)
    }

    // MARK: Commands and timers

    private func handleCommand(_ command: TunnelCommand) {
        let now = clock.now
        switch command {
        case .stop(let grace):
            successor = nil
            if let current = stopping {
                // Already draining (retired): a stop shortens the wait, never lengthens it.
                stopping = (min(current.deadline, clock.now.advanced(by: grace)), current.done)
                return
            }
            logger.info("stopping", metadata: ["connections": "\(connections.count)"])
            stopping = (clock.now.advanced(by: grace), false)
            closeListeners()
            for connection in connections.values where connection.isWaitingForTurn {
                drop(connection, reason: nil)
            }
        case .disable:
            perform(machine.disable(now: now))
        case .enable:
            perform(machine.enable(now: now))  // the attempt binds the listener first
        case .reconnect:
            logger.info("reconnect requested")
            teardownSession(reason: "reconnect requested", graceful: true)
            perform(machine.reconnectNow(now: now))
        case .ping:
            handle.pong()
            return
        case .networkChanged(let reason):
            if case .established(let session) = phase, let fd = networkSocket(of: session),
                let local = Listener.localAddressIfGone(of: fd)
            {
                // Our end of the SSH connection no longer exists: nothing will ever arrive on it.
                sessionLost("\(reason): the local address \(local) of the SSH connection is gone")
            } else if case .established(let session) = phase, livenessProbe == nil {
                // Ask the peer for a sign of life now. libssh2 sends a keepalive only when its
                // interval has passed since the last one; an interval of 2 s (its minimum) makes
                // the next send due at once. The normal interval comes back when the probe ends.
                logger.info("\(reason): checking that the session is alive")
                livenessProbe = (bootTimeNanos(), now.advanced(by: probeWindow))
                session.configureKeepalive(intervalSeconds: 2)
                nextKeepalive = now
                progress = true
            } else if machine.state == .backoff {
                logger.info("\(reason): retrying now")
            }
            perform(machine.networkChanged(now: now))
        case .retire(let next, let drain):
            retire(to: next, drain: drain)
        case .adopt(let handed, let clients):
            adopt(listeners: handed, clients: clients)
        case .assign(let clients):
            take(clients)
            return
        case .primaryUp:
            if waitingForPrimary {
                waitingForPrimary = false
                if machine.state == .connecting { startAttempt() }
            } else {
                // In backoff (say, lost with the primary's session): the server is back, retry now.
                perform(machine.networkChanged(now: now))
            }
        }
        publish(notify: true)
    }

    /// Hands the listener and the waiting clients to `next`, then drains like a graceful stop.
    private func retire(to next: TunnelHandle, drain: Duration) {
        var handed: [HandedClient] = []
        for connection in connections.values.sorted(by: { $0.id < $1.id })
        where connection.isWaitingForTurn {
            handed.append(release(connection))
        }
        if !isPrimary {
            // A secondary session has no listener to hand over: only its waiting clients.
            if !handed.isEmpty { next.send(.assign(clients: handed)) }
        } else if awaitingListener {
            // Our own predecessor has not handed over yet: whatever it sends goes on to `next`.
            successor = next
            if !handed.isEmpty { next.send(.adopt(listeners: [], clients: handed)) }
        } else {
            // Every listener goes (the successor keeps those whose address it forwards and closes
            // the others before it binds its own).
            var sockets: [HandedListener] = []
            for index in listeners.indices where listeners[index].fd >= 0 {
                sockets.append(HandedListener(fd: listeners[index].fd, local: listeners[index].forward.local))
                setListener(index, -1)
            }
            next.send(.adopt(listeners: sockets, clients: handed))
        }
        let open = connections.values.filter(\.isClientOpen).count
        logger.info(
            "handing over to the new configuration; \(open) open connection\(open == 1 ? "" : "s") stay on this session for up to \(spoken(drain))"
        )
        if stopping == nil { stopping = (clock.now.advanced(by: drain), false) }
    }

    /// Takes over the predecessor's listeners (those of our forwards; the others are closed) and
    /// waiting clients; binds the forwards that came without one.
    private func adopt(listeners handed: [HandedListener], clients: [HandedClient]) {
        if let successor {
            successor.send(.adopt(listeners: handed, clients: clients))
            return
        }
        let wasAwaiting = awaitingListener
        awaitingListener = false
        let accepting = stopping == nil && machine.state != .down
        for socket in handed {
            if accepting, let index = listeners.firstIndex(where: { $0.forward.local == socket.local }),
                listeners[index].fd < 0
            {
                setListener(index, socket.fd)
                listeners[index].bindError = nil
                listeners[index].retryAt = nil
                logger.debug("took over the listener", metadata: ["local": "\(socket.local)"])
            } else {
                Posix.close(socket.fd)  // not one of ours (any more): its address is free for binds below
            }
        }
        if accepting && wasAwaiting && listeners.contains(where: { $0.fd < 0 }) {
            bindListeners()
        }
        take(clients)
    }

    /// Takes over clients accepted by another driver of this tunnel, before their channel opened.
    private func take(_ clients: [HandedClient]) {
        let accepting = stopping == nil && machine.state != .down
        let now = clock.now
        for client in clients {
            guard accepting, machine.state != .failed,
                let forward = config.forwards.firstIndex(where: { $0.local == client.local })
            else {
                Posix.reset(client.fd)  // nothing will serve it (or this configuration no longer has its forward)
                continue
            }
            admit(fd: client.fd, peer: client.peer, forward: forward, holdDeadline: max(client.holdDeadline, now))
            progress = true
        }
    }

    /// A new client of this driver: queued for a channel when the session is up, else held. Its
    /// socket is registered with epoll here, once (`ForwardedConnection.events`); nil if that
    /// failed (out of memory or epoll watches): the client is then reset, said once per episode.
    @discardableResult
    func admit(fd: Int32, peer: Endpoint, forward: Int, holdDeadline: Instant) -> ForwardedConnection? {
        let id = nextConnectionID
        do {
            guard let poller else { throw SystemError(EBADF, "no event loop") }
            try poller.apply(.add(ForwardedConnection.events), fd: fd, token: id)
        } catch {
            Posix.reset(fd)
            refuseClient(clock.now, reason: "cannot watch the client socket: \(error)")
            return nil
        }
        nextConnectionID += 1
        let connection = ForwardedConnection(
            id: id, fd: fd, peer: peer, forward: forward, holdDeadline: holdDeadline, bufferSize: bufferSize)
        connections[connection.id] = connection
        connection.counters = counters
        if isEstablished {
            connection.queue()
            openQueue.append(connection.id)
        }
        return connection
    }

    /// Forgets a client that has not got its channel yet without closing it: its fd changes owner
    /// (another driver of this tunnel), so it leaves our epoll first.
    private func release(_ connection: ForwardedConnection) -> HandedClient {
        poller?.remove(connection.fd)
        let holdDeadline = connection.release()
        connections[connection.id] = nil
        openQueue.removeAll { $0 == connection.id }
        return HandedClient(
            fd: connection.fd, peer: connection.peer, local: config.forwards[connection.forward].local,
            holdDeadline: holdDeadline)
    }

    /// TEST ONLY (`ECTO_TUNNEL_TEST_STALL=driver`, never documented in --help): blocks this driver
    /// thread for good once it has answered its first watchdog ping, so tests can prove that a
    /// stalled supervisor stops the systemd watchdog pings and gets the daemon restarted.
    private static func stallForever(_ logger: Logger) -> Never {
        logger.warning("ECTO_TUNNEL_TEST_STALL=driver: this driver thread now blocks forever (test switch)")
        while true { sleep(3600) }
    }

    private func finishStop() {
        for connection in connections.values { drop(connection, reason: nil) }
        stopping?.done = true
    }

    private func handleTimers(_ now: Instant) {
        for index in listeners.indices {
            guard let at = listeners[index].retryAt, now >= at else { continue }
            listeners[index].retryAt = nil
            bindListener(index)
        }
        if let at = machine.retryAt, now >= at {
            perform(machine.deadlineReached(now: now))
        }
        if let at = attemptDeadline, now >= at {
            attemptDeadline = nil
            if case .resolving = phase {
                // The lookup thread may still hang; its late answer is ignored (stale ticket).
                attemptFailed(
                    AttemptFailure(
                        .transport,
                        "cannot resolve \(firstHost.host): no answer within connect_timeout (\(config.connectTimeout))"),
                    hop: firstHopName)
            } else if let hop = hopBeingConnected {
                attemptFailed(
                    AttemptFailure(.transport, "connection attempt timed out after \(config.connectTimeout) at \(hop)"),
                    hop: hop)
            } else if case .connectingTCP = phase, let hop = firstHopName {
                attemptFailed(
                    AttemptFailure(.transport, "connection attempt timed out after \(config.connectTimeout) at \(hop)"),
                    hop: hop)
            } else {
                attemptFailed(AttemptFailure(.transport, "connection attempt timed out after \(config.connectTimeout)"))
            }
        }
        if counters.held > 0 {
            for connection in connections.values {
                guard let deadline = connection.holdDeadline, now >= deadline else { continue }
                logger.warning(
                    "closing a client held for \(config.holdTimeout) without a session",
                    metadata: ["client": "\(connection.peer)"])
                drop(connection, reason: nil)
            }
        }
        if case .established(let session) = phase, let probe = livenessProbe, now >= probe.deadline {
            livenessProbe = nil
            if session.lastReceiveBootNanos > probe.started {
                endLivenessProbe(session)
            } else {
                sessionLost("no sign of life within \(spoken(probeWindow)) after a network change")
                return
            }
        }
        if case .established(let session) = phase, let deadPeer = deadPeerDeadline(session), now >= deadPeer {
            let silence = Double(session.nanosSinceLastReceive) / 1e9
            sessionLost(
                "dead peer: nothing received for \(fixed(silence, decimals: 1)) s (keepalive \(config.keepaliveInterval) × \(config.keepaliveCountMax))"
            )
        }
    }

    /// How long a session may stay silent after a forced liveness check.
    /// 10 s: long enough for a keepalive reply on a lossy but working link (several TCP
    /// retransmissions), short enough to beat the default dead-peer time (45 s) by far.
    var probeWindow: Duration {
        guard config.keepaliveInterval > .zero else { return .seconds(10) }
        return min(.seconds(10), config.keepaliveInterval * config.keepaliveCountMax)
    }

    /// The peer answered the liveness check: back to the normal keepalive schedule.
    func endLivenessProbe(_ session: SSHSession) {
        livenessProbe = nil
        logger.debug("the session answered the liveness check")
        if config.keepaliveInterval > .zero {
            session.configureKeepalive(intervalSeconds: max(1, Int(config.keepaliveInterval.components.seconds)))
        } else {
            session.configureKeepalive(intervalSeconds: 0)
            nextKeepalive = nil
        }
    }

    func deadPeerDeadline(_ session: SSHSession) -> Instant? {
        guard deadPeerLimitNanos > 0 else { return nil }
        let silence = Int64(clamping: session.nanosSinceLastReceive)
        return BootInstant(nanoseconds: clock.now.nanoseconds &+ (deadPeerLimitNanos &- silence))
    }

    /// Carries out what the reconnect machine decided. `logged`: the caller already said when the
    /// retry comes (`RetryLog`).
    func perform(_ action: ReconnectAction<Instant>, logged: Bool = false) {
        switch action {
        case .none:
            break
        case .connect:
            if !isPrimary, let group, !group.primaryUp {
                // Secondary sessions follow the primary (see `SessionGroup`).
                waitingForPrimary = true
                logger.debug("waiting for the first session to be up")
            } else {
                startAttempt()
            }
        case .waitUntil(let at):
            teardownSession(reason: "backoff", graceful: false)
            if !logged {
                logger.info(
                    "retrying in \(spoken(clock.now.duration(to: at)))",
                    metadata: ["failures": "\(machine.failures)"])
            }
        case .giveUp:
            retryLog.reset()
            teardownSession(reason: "failed", graceful: false)
            for connection in connections.values where connection.isWaitingForTurn {
                drop(connection, reason: nil)
            }
            logger.error("tunnel failed and will not retry until told to: \(machine.lastError ?? "unknown error")")
        case .disconnect:
            retryLog.reset()
            teardownSession(reason: "disabled", graceful: true)
            for connection in connections.values { drop(connection, reason: nil) }
            closeListeners()
            logger.info("tunnel disabled")
        }
        publish(notify: true)
    }

    // MARK: Status

    func publish(notify: Bool) {
        let count = counters.openClients
        if let group {
            let up = isEstablished
            if up != reportedLoad.up || count != reportedLoad.connections {
                reportedLoad = (up, count)
                if group.report(lane: lane, up: up, connections: count) && isPrimary { group.primaryCameUp() }
            }
        }
        let snapshot = (count, bytesIn, bytesOut, clientsRefused, refusedTotal)
        if !notify && snapshot == published { return }
        published = snapshot
        if !notify {
            // Only counters moved (every change of state or of a listener publishes with
            // `notify`, through `perform` or at the change): the figures alone, in place, without
            // the reconnect machine, the clock or a new forwards list (the churn path).
            handle.update(notify: false) { writeFigures(into: &$0) }
            return
        }
        let machine = self.machine
        let now = clock.now
        let forwardStates = forwardStatuses()
        let forwardProblem = forwardStates.first { $0.lastError != nil }?.lastError
        handle.update(notify: notify) { status in
            if status.state != machine.state {
                status.since = Date().addingTimeInterval(-seconds(machine.since.duration(to: now)))
            }
            status.state = machine.state
            status.sessionsUp = machine.state == .up ? 1 : 0
            status.enabled = machine.state != .down
            status.reconnects = machine.reconnects
            // A forward that cannot listen while the session serves the others is the problem now.
            status.lastError =
                machine.state == .up || machine.state == .connecting
                ? forwardProblem ?? machine.lastError : machine.lastError
            status.forwards = forwardStates
            status.listening = forwardStates.contains { $0.state == .listening }
            writeFigures(into: &status)
            status.retryAt = machine.retryAt.map { Date().addingTimeInterval(seconds(now.duration(to: $0))) }
            status.retryCause = machine.retryCause
            status.hop = machine.state == .up ? nil : failedHop
        }
    }

    /// The status's figures, written in place: connections, bytes and refusals, per forward too
    /// (`status.forwards` holds this driver's forwards, from `forwardStatuses`).
    private func writeFigures(into status: inout TunnelStatus) {
        status.connections = counters.openClients
        status.bytesIn = bytesIn
        status.bytesOut = bytesOut
        status.acceptedTotal = acceptedTotal
        status.refusedTotal = refusedTotal
        status.clientsRefused = clientsRefused
        for index in status.forwards.indices where index < listeners.count {
            status.forwards[index].connections = counters.openByForward[index]
            status.forwards[index].bytesIn = listeners[index].bytesIn
            status.forwards[index].bytesOut = listeners[index].bytesOut
        }
    }

    /// Each forward as the status shows it, without its figures (`writeFigures`). A secondary lane
    /// has no listeners: the tunnel's status takes their state from the primary (`Tunnel.combine`).
    func forwardStatuses() -> [ForwardStatus] {
        listeners.indices.map { index in
            let slot = listeners[index]
            var forward = ForwardStatus(local: slot.localText, remote: slot.remoteText)
            if slot.fd >= 0 {
                forward.state = .listening
            } else if let problem = slot.bindError, stopping == nil, machine.state != .down {
                forward.state = .retrying
                forward.lastError = problem
            }
            return forward
        }
    }

    // MARK: Listeners

    /// Binds every forward that has no listener yet. A forward that cannot listen (a busy port,
    /// named with its holder) fails alone: while another forward listens, it is tried again every
    /// `localRetry` on its own (`ListenerSlot.retryAt`) and the session serves the others; when
    /// none listens, the tunnel goes to `backoff (local)` as it always did with one forward, since
    /// a session would serve nobody.
    func bindListeners() {
        var failures: [String] = []
        for index in listeners.indices where listeners[index].fd < 0 {
            if let problem = bindListener(index, scheduleRetry: false) { failures.append(problem) }
        }
        if failures.isEmpty { return }
        if anyListening {
            let retry = clock.now.advanced(by: machine.policy.localRetry)
            for index in listeners.indices where listeners[index].fd < 0 && listeners[index].bindError != nil {
                listeners[index].retryAt = retry
            }
            publish(notify: true)
        } else {
            let message =
                failures.count == 1
                ? failures[0]
                : failures[0] + " (and \(failures.count - 1) more forward\(failures.count == 2 ? "" : "s"))"
            perform(machine.localFailure(message: message, now: clock.now), logged: true)
        }
    }

    /// Binds forward `index`; returns why it could not, after logging it once per cause. With
    /// `scheduleRetry` (the forward's own retry) a failure is tried again after `localRetry`.
    @discardableResult
    func bindListener(_ index: Int, scheduleRetry: Bool = true) -> String? {
        guard listeners[index].fd < 0 else { return nil }
        let local = listeners[index].forward.local
        do {
            setListener(index, try Listener.bind(local))
            let recovered = listeners[index].bindError != nil
            listeners[index].bindError = nil
            listeners[index].retryAt = nil
            logger.info(recovered ? "listening again" : "listening", metadata: ["local": "\(local)"])
            if !local.isLoopback {
                logger.warning("listening on a non-loopback address: anyone who can reach \(local) can use this tunnel")
            }
            publish(notify: true)
            return nil
        } catch {
            let message = "cannot listen on \(local): \(error.description)"
            // A busy port may free itself: a fixed retry, said once per cause.
            if listeners[index].bindError != message {
                logger.error("\(message); trying again every \(spoken(machine.policy.localRetry))")
            }
            listeners[index].bindError = message
            if scheduleRetry { listeners[index].retryAt = clock.now.advanced(by: machine.policy.localRetry) }
            publish(notify: true)
            return message
        }
    }

    /// Changes forward `index`'s listening descriptor (the old one is not closed here); its epoll
    /// registration goes first, before the number can be reused.
    func setListener(_ index: Int, _ fd: Int32) {
        guard listeners[index].fd != fd else { return }
        forget(&listeners[index].registration)
        listeners[index].fd = fd
    }

    func closeListeners() {
        for index in listeners.indices {
            listeners[index].retryAt = nil
            listeners[index].bindError = nil
            guard listeners[index].fd >= 0 else { continue }
            let fd = listeners[index].fd
            setListener(index, -1)
            Posix.close(fd)
        }
    }

    private func acceptClients(on forward: Int, _ now: Instant) {
        for _ in 0..<256 {
            let accepted: IOResult<(Int32, Endpoint)>
            do {
                accepted = try Posix.accept(listeners[forward].fd)
            } catch {
                // Out of descriptors, buffers or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), or a
                // listener error: the pending client stays in the kernel's backlog, and accepting
                // again at once would fail again at once. Stop watching the listener for a short,
                // growing pause instead of spinning (swift-nio's accept backoff), said once.
                pauseAccepting(now, reason: error.description)
                return
            }
            guard case .done(let (fd, peer)) = accepted else { break }
            acceptedTotal += 1
            progress = true
            if machine.state == .failed || machine.state == .down {
                // Nothing will come of waiting: refuse at once (reset), so the client learns now.
                Posix.reset(fd)
                continue
            }
            if let refusal = admissionRefusal(fd) {
                // Refused at once (a reset) and counted: the client learns now, and we keep
                // the descriptors the control socket and the SSH session need.
                Posix.reset(fd)
                refuseClient(now, reason: refusal)
                continue
            }
            clientAdmitted(now)
            Posix.setOption(fd, Int32(IPPROTO_TCP), TCP_NODELAY, 1)
            let deadline = now.advanced(by: config.holdTimeout)
            if let group, let chosen = group.assign(preferring: lane), chosen != lane, let other = group.handle(chosen)
            {
                other.send(
                    .assign(clients: [
                        HandedClient(
                            fd: fd, peer: peer, local: listeners[forward].forward.local, holdDeadline: deadline)
                    ]))
                continue
            }
            reportedLoad.connections = -1  // counted by the group: report the real count after this pass
            if admit(fd: fd, peer: peer, forward: forward, holdDeadline: deadline)?.isHeld == true {
                logger.debug("holding client until the session is up", metadata: ["client": "\(peer)"])
            }
        }
        _ = acceptBackoff.drained()  // accepted until the backlog was empty
    }

    /// Why a newly accepted client is refused, or nil to admit it.
    private func admissionRefusal(_ fd: Int32) -> String? {
        let clients = group?.totalConnections ?? counters.openClients
        if clients >= config.maxClients {
            return "\(clients) clients already (max_clients = \(config.maxClients))"
        }
        if DescriptorLimit.isInReserve(fd) {
            let limit = DescriptorLimit.soft
            return "fewer than \(DescriptorLimit.reserve(for: limit)) file descriptors left (limit \(limit)); "
                + "they are kept for the control socket and SSH reconnects"
        }
        return nil
    }

    /// Counts a refused client; the first refusal of an episode is logged, the rest counted.
    private func refuseClient(_ now: Instant, reason: String) {
        clientsRefused += 1
        if var episode = refusalEpisode {
            episode.refused += 1
            refusalEpisode = episode
        } else {
            refusalEpisode = (now, 1)
            logger.warning("refusing new clients: \(reason)")
        }
    }

    /// A client was admitted: an episode of refusals (or of paused accepts) is over.
    private func clientAdmitted(_ now: Instant) {
        guard let episode = refusalEpisode else { return }
        refusalEpisode = nil
        logger.info(
            "admitting clients again; \(episode.refused) refused over \(spoken(episode.start.duration(to: now)))"
        )
    }

    /// Stops watching the listener for a while after accept failed (`AcceptBackoff`). The limit
    /// is read again at the start of an episode: it may have been changed under us.
    private func pauseAccepting(_ now: Instant, reason: String) {
        let (pause, started) = acceptBackoff.failed(now: now)
        guard started else { return }
        DescriptorLimit.refresh()
        logger.warning(
            "accept failed (\(reason)): not accepting new clients for a while; pausing \(spoken(pause)), up to 1 s at a time"
        )
        if refusalEpisode == nil { refusalEpisode = (now, 0) }
    }

    /// With several sessions: clients held by this one while it has no session go to one that is
    /// up, rather than wait for ours.
    private func rehomeHeldClients() {
        guard let group, stopping == nil, counters.held > 0, !isEstablished else { return }
        let held = connections.values.filter(\.isHeld).sorted { $0.id < $1.id }
        for connection in held {
            guard let chosen = group.assign(preferring: lane), chosen != lane, let other = group.handle(chosen) else {
                return
            }
            other.send(.assign(clients: [release(connection)]))
            progress = true
        }
    }
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}
