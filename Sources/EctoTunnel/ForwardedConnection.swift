import EctoSSH

/// A forwarded connection as the session driver uses it: its channel is a libssh2 channel.
typealias Connection = ForwardedConnection<SSHChannel>

/// One accepted local connection and its channel. Owned by the session driver thread.
///
/// Its life is `state`, and each state carries the data only it has: a waiting client its hold
/// deadline, an open one its channel and the progress of both directions, a closing one the
/// channel left to close. Every change goes through a method named for the event; an event that
/// cannot happen in a state stops a debug build (`assertionFailure`), and one that can arrive late
/// (a client gone while its channel was opening, a retried call on a connection that was closed
/// meanwhile) is ignored where it arrives, explicitly.
///
/// The state logic touches no libssh2: it is generic over the channel, so unit tests drive it
/// without a session.
final class ForwardedConnection<Channel: AnyObject> {
    enum State {
        /// Accepted while no session is up; waits (until its hold deadline) for one.
        case held(Waiting)
        /// Waiting for its turn to open a channel (one open in flight per session).
        case queued(Waiting)
        /// Its channel open is in flight.
        case opening(Waiting)
        /// Its client left while its channel open was in flight: libssh2 wants that very call
        /// repeated until it completes, so the open queue finishes it and the channel is closed.
        case abandoned
        /// Forwarding.
        case open(Forwarding)
        /// The client socket is closed; a pass closes and frees the channel.
        case closing(Channel)
        /// Done: the client socket is closed, or it went to another driver; the driver has let go.
        case gone
    }

    /// What a client waiting for its channel has.
    struct Waiting {
        /// Until when it may wait for a session (while held).
        var holdDeadline: ContinuousClock.Instant
        /// It sent something, then shut down its sending side: it may still want the reply, so it
        /// stays, and epoll stops reporting that end of data.
        var sentEOF = false
    }

    /// What an open connection has: its channel and how far each direction got.
    struct Forwarding {
        let channel: Channel
        /// epoll reported the client readable (cleared when a read would block). A new channel
        /// starts readable: the client may have sent while it waited.
        var clientReadable = true
        /// A write to the client would block: wait for EPOLLOUT.
        var clientWriteBlocked = false
        /// The client shut down its write side (a read returned 0).
        var clientEOF = false
        /// We sent channel EOF after forwarding everything the client sent.
        var eofSent = false
        /// The server sent channel EOF and we read everything before it.
        var remoteEOF = false
        /// We shut down the client's write side after delivering everything.
        var clientShutdown = false
        /// The last channel read found nothing (and no end of data): libssh2 holds nothing for
        /// this channel, so passes skip reading it until the arrivals check finds something
        /// (`TunnelDriver.collectArrivals`). Cleared by every read that returns data or fills the
        /// buffer.
        var channelQuiet = false

        init(channel: Channel) { self.channel = channel }

        /// Both directions finished cleanly.
        var isComplete: Bool { eofSent && clientShutdown }
    }

    let id: UInt64
    let fd: Int32
    let peer: String
    /// Which of the tunnel's forwards it came in on (an index into `TunnelConfig.forwards`): its
    /// channel goes to that forward's `remote`, and its bytes count towards that forward.
    let forward: Int
    private(set) var state: State
    /// Client → channel.
    var up: ByteBuffer
    /// Channel → client.
    var down: ByteBuffer
    /// In the driver's list of connections the next pass visits.
    var scheduled = false
    /// What the client socket is registered with epoll for (nil: not registered).
    var registeredEvents: EpollEvents?
    /// Queued for an epoll interest check at the top of the next loop iteration.
    var interestQueued = false
    /// The driver's counters this connection is counted in (set once the driver tracks it).
    var counters: ConnectionCounters? { didSet { recount() } }
    private var counted = (open: false, held: false)

    init(id: UInt64, fd: Int32, peer: String, forward: Int, holdDeadline: ContinuousClock.Instant, bufferSize: Int) {
        self.id = id
        self.fd = fd
        self.peer = peer
        self.forward = forward
        self.state = .held(Waiting(holdDeadline: holdDeadline))
        self.up = ByteBuffer(capacity: bufferSize)
        self.down = ByteBuffer(capacity: bufferSize)
    }

    // MARK: Reading the state

    /// The client socket is open and ours.
    var isClientOpen: Bool {
        switch state {
        case .held, .queued, .opening, .open: return true
        case .abandoned, .closing, .gone: return false
        }
    }

    var isHeld: Bool { if case .held = state { return true } else { return false } }
    var isOpen: Bool { if case .open = state { return true } else { return false } }

    /// Held or queued: waiting for a channel, none in flight (these can be handed to another
    /// driver or let go without touching libssh2).
    var isWaitingForTurn: Bool {
        switch state {
        case .held, .queued: return true
        default: return false
        }
    }

    /// The open connection's forwarding state (nil in any other state).
    var forwarding: Forwarding? { if case .open(let forwarding) = state { return forwarding } else { return nil } }

    /// The channel to use: the open one's, or the one a closing connection still has to close.
    var channel: Channel? {
        switch state {
        case .open(let forwarding): return forwarding.channel
        case .closing(let channel): return channel
        default: return nil
        }
    }

    /// What epoll should watch the client socket for; nil: nothing (not registered at all).
    ///
    /// Level-triggered, so only what the connection is waiting for: input while it may read the
    /// client (forwarding, room in the buffer, not already known readable), output while a write
    /// would block. A connection still waiting for its channel is registered for nothing: epoll
    /// reports hang-up and error regardless, which is how we learn that its client is gone. (A
    /// half-close is not "gone": the client may still want the reply.) An open connection that
    /// waits for nothing on its socket is not registered, so a hang-up cannot wake the loop
    /// over and over while it has no use for it.
    ///
    /// A client still waiting for its channel is also watched for the end of its data
    /// (EPOLLRDHUP): one that closes while held or queued is let go at once rather than kept
    /// (with its descriptor) until the session returns (`TunnelDriver.dispatchReadiness`).
    func wantedEvents(sessionUp: Bool) -> EpollEvents? {
        switch state {
        case .held(let waiting), .queued(let waiting), .opening(let waiting):
            return waiting.sentEOF ? [] : .readHangUp
        case .open(let forwarding):
            var events: EpollEvents = []
            if sessionUp && !forwarding.clientEOF && up.hasSpace && !forwarding.clientReadable {
                events.insert(.input)
            }
            if forwarding.clientWriteBlocked { events.insert(.output) }
            return events.isEmpty ? nil : events
        case .abandoned, .closing, .gone:
            return nil
        }
    }

    /// True while a pass has work for this connection without news from epoll (client readiness)
    /// or from libssh2 (channel data, EOF): settled connections are left alone, which is what makes
    /// idle connections free.
    var needsVisit: Bool {
        switch state {
        case .held, .queued, .opening, .abandoned, .gone:
            return false  // the open queue serves the waiting ones
        case .closing:
            return true  // until its channel is closed and freed
        case .open(let f):
            return (!f.channelQuiet && !f.remoteEOF)  // the channel may hold more
                || f.clientReadable  // the client may have more
                || !up.isEmpty  // waiting for the peer's window or for the channel write
                || (!down.isEmpty && !f.clientWriteBlocked)
                || (f.clientEOF && !f.eofSent)
                || (f.remoteEOF && down.isEmpty && !f.clientShutdown)
        }
    }

    // MARK: Events

    /// A session is up: a held client takes its place in the open queue.
    func queue() {
        guard case .held(let waiting) = state else { return unexpected("queue") }
        become(.queued(waiting))
    }

    /// Its turn in the open queue: the open starts, or goes on (a half-sent open is repeated, and
    /// an abandoned one is finished). False: it has no open to make (closed, handed over).
    func startOpening() -> Bool {
        switch state {
        case .queued(let waiting):
            become(.opening(waiting))
            return true
        case .opening, .abandoned:
            return true
        case .held, .open, .closing, .gone:
            return false
        }
    }

    /// Its channel opened: it forwards, or (its client left meanwhile) the channel is closed.
    func opened(_ channel: Channel) {
        switch state {
        case .opening: become(.open(Forwarding(channel: channel)))
        case .abandoned: become(.closing(channel))
        default: unexpected("opened")
        }
    }

    /// The server refused its channel: the client is closed and the connection is done.
    func openRefused() {
        closeSocket()
        become(.gone)
    }

    /// The client half-closed after sending something while it waits for its channel.
    func sentEOFWhileWaiting() {
        switch state {
        case .held(var waiting):
            waiting.sentEOF = true
            become(.held(waiting))
        case .queued(var waiting):
            waiting.sentEOF = true
            become(.queued(waiting))
        case .opening(var waiting):
            waiting.sentEOF = true
            become(.opening(waiting))
        default:
            unexpected("sentEOFWhileWaiting")
        }
    }

    /// epoll reported the client socket: `events` may make it readable or writable again.
    /// Only an open connection keeps track; a waiting one learns at its open.
    func clientReady(_ events: EpollEvents) {
        guard case .open(var f) = state else { return }
        if !events.isDisjoint(with: [.input, .hangUp, .error]) { f.clientReadable = true }
        if !events.isDisjoint(with: [.output, .hangUp, .error]) { f.clientWriteBlocked = false }
        state = .open(f)
    }

    /// Changes the forwarding state of an open connection (in place: the counts do not change).
    func update(_ body: (inout Forwarding) -> Void) {
        guard case .open(var f) = state else { return unexpected("update") }
        body(&f)
        state = .open(f)
    }

    /// Closes the client socket (the driver's decision or the client's error). The connection
    /// then closes its channel, finishes the open in flight first, or is done (nothing to close).
    /// A connection whose client is already closed stays as it is.
    func closeClient() {
        switch state {
        case .held, .queued: become(.gone)
        case .opening: become(.abandoned)
        case .open(let f): become(.closing(f.channel))
        case .abandoned, .closing, .gone: return
        }
        closeSocket()
    }

    /// Its channel is closed and freed: done.
    func channelClosed() {
        guard case .closing = state else { return unexpected("channelClosed") }
        become(.gone)
    }

    /// The session ended without a goodbye (its channels go with it, unfreed by us): a client
    /// still waiting for its channel is held for the next session; an open one is closed.
    func sessionLost() {
        switch state {
        case .held, .gone: return
        case .queued(let waiting), .opening(let waiting): become(.held(waiting))
        case .abandoned: become(.gone)
        case .open, .closing:
            closeSocket()
            become(.gone)
        }
    }

    /// Hands the client (held or queued) to another driver: its socket is not closed, and it is
    /// no longer ours. Returns its hold deadline.
    func release() -> ContinuousClock.Instant {
        let deadline: ContinuousClock.Instant
        switch state {
        case .held(let waiting), .queued(let waiting): deadline = waiting.holdDeadline
        default:
            unexpected("release")
            deadline = .now
        }
        become(.gone)
        socketClosed = true  // not closed: no longer ours to close
        up.release()
        down.release()
        return deadline
    }

    /// The hold deadline of a held client.
    var holdDeadline: ContinuousClock.Instant? {
        if case .held(let waiting) = state { return waiting.holdDeadline } else { return nil }
    }

    // MARK: Internals

    /// The socket was closed, or given away.
    private var socketClosed = false

    private func closeSocket() {
        guard !socketClosed else { return }
        socketClosed = true
        if fd >= 0 { Posix.close(fd) }
        up.release()
        down.release()
    }

    private func become(_ next: State) {
        state = next
        recount()
    }

    private func unexpected(_ event: StaticString) {
        assertionFailure("\(event) in state \(state)")
    }

    /// Keeps `counters` in step: one open client while the socket is open, one held connection
    /// while held.
    private func recount() {
        guard let counters else { return }
        let now = (open: isClientOpen, held: isHeld)
        if now.open != counted.open {
            counters.openClients += now.open ? 1 : -1
            counters.openByForward[forward] += now.open ? 1 : -1
        }
        if now.held != counted.held { counters.held += now.held ? 1 : -1 }
        counted = now
    }
}

/// Counts the session driver keeps in step with its connections (each connection updates them
/// when its state changes), so that no loop pass has to scan the connections.
/// Confined to the driver thread, like the connections.
final class ConnectionCounters {
    /// Connections whose client socket is open: the status figure.
    var openClients = 0
    /// Connections held until a session is up (each with a hold deadline).
    var held = 0
    /// `openClients` per forward (index into `TunnelConfig.forwards`).
    var openByForward: [Int]

    init(forwards: Int) {
        openByForward = Array(repeating: 0, count: forwards)
    }
}
