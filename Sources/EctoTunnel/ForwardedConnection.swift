import EctoConfig
import EctoPlatform
import EctoSSH

/// The life of one forwarded connection, as a value: each state carries the data only it has (a
/// waiting client whether it half-closed, an open one its channel and the progress of both
/// directions, a closing one the channel left to close). Pure: no syscalls, no libssh2 calls, so unit tests drive
/// every transition with a stand-in channel. `ForwardedConnection` holds one for a libssh2 channel
/// and adds what touches the system (the socket, the buffers, the driver's counters).
///
/// Every payload has a layout fixed at compile time, which keeps each switch and copy of the state
/// plain code (a payload of a type whose layout is unknown, as `ContinuousClock.Instant` was in the
/// hold deadline, made every one a Swift runtime call: `swift_getEnumCaseMultiPayload`, value
/// witnesses; see `BootInstant`). The channel is kept as `AnyObject` rather than as a generic
/// parameter, which in the measured build left generic metadata lookups on the forwarding path
/// (`__swift_instantiateConcreteTypeFromMangledName`); `ForwardedConnection` only ever puts an
/// `SSHChannel` in, and takes it out as one.
enum ConnectionState {
    typealias Channel = AnyObject

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

    /// What a client waiting for its channel has.
    struct Waiting {
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

    // MARK: Reading

    /// The client socket is open and ours.
    var isClientOpen: Bool {
        switch self {
        case .held, .queued, .opening, .open: return true
        case .abandoned, .closing, .gone: return false
        }
    }

    var isHeld: Bool { if case .held = self { return true } else { return false } }
    var isOpen: Bool { if case .open = self { return true } else { return false } }
    var isGone: Bool { if case .gone = self { return true } else { return false } }

    /// Held or queued: waiting for a channel, none in flight (these can be handed to another
    /// driver or let go without touching libssh2).
    var isWaitingForTurn: Bool {
        switch self {
        case .held, .queued: return true
        default: return false
        }
    }

    /// The open connection's forwarding state (nil in any other state).
    var forwarding: Forwarding? { if case .open(let forwarding) = self { return forwarding } else { return nil } }

    /// The channel to use: the open one's, or the one a closing connection still has to close.
    var channel: Channel? {
        switch self {
        case .open(let forwarding): return forwarding.channel
        case .closing(let channel): return channel
        default: return nil
        }
    }

    /// True while a pass has work for this connection without news from epoll (client readiness)
    /// or from libssh2 (channel data, EOF): settled connections are left alone, which is what makes
    /// idle connections free. `upEmpty`, `downEmpty`: its two buffers.
    func needsVisit(upEmpty: Bool, downEmpty: Bool) -> Bool {
        switch self {
        case .held, .queued, .opening, .abandoned, .gone:
            return false  // the open queue serves the waiting ones
        case .closing:
            return true  // until its channel is closed and freed
        case .open(let f):
            return (!f.channelQuiet && !f.remoteEOF)  // the channel may hold more
                || f.clientReadable  // the client may have more
                || !upEmpty  // waiting for the peer's window or for the channel write
                || (!downEmpty && !f.clientWriteBlocked)
                || (f.clientEOF && !f.eofSent)
                || (f.remoteEOF && downEmpty && !f.clientShutdown)
        }
    }

    // MARK: Events

    /// A session is up: a held client takes its place in the open queue.
    mutating func queue() {
        guard case .held(let waiting) = self else { return unexpected("queue") }
        self = .queued(waiting)
    }

    /// Its turn in the open queue: the open starts, or goes on (a half-sent open is repeated, and
    /// an abandoned one is finished). False: it has no open to make (closed, handed over).
    mutating func startOpening() -> Bool {
        switch self {
        case .queued(let waiting):
            self = .opening(waiting)
            return true
        case .opening, .abandoned:
            return true
        case .held, .open, .closing, .gone:
            return false
        }
    }

    /// Its channel opened: it forwards, or (its client left meanwhile) the channel is closed.
    mutating func opened(_ channel: Channel) {
        switch self {
        case .opening: self = .open(Forwarding(channel: channel))
        case .abandoned: self = .closing(channel)
        default: unexpected("opened")
        }
    }

    /// The client half-closed after sending something while it waits for its channel.
    mutating func sentEOFWhileWaiting() {
        switch self {
        case .held(var waiting):
            waiting.sentEOF = true
            self = .held(waiting)
        case .queued(var waiting):
            waiting.sentEOF = true
            self = .queued(waiting)
        case .opening(var waiting):
            waiting.sentEOF = true
            self = .opening(waiting)
        default:
            unexpected("sentEOFWhileWaiting")
        }
    }

    /// epoll reported the client socket: `events` make it readable or writable again.
    ///
    /// The client socket is registered once, edge-triggered, for input, output and the end of its
    /// data (`ForwardedConnection.events`): each readiness is reported once, when it arises, so
    /// these flags are the driver's memory of it. `clientReadable` is cleared only when a read
    /// would block (or finds the end), `clientWriteBlocked` set only when a write would block:
    /// then the next edge is sure to come. Only an open connection keeps track; a waiting one
    /// starts readable at its open (it may have sent while it waited).
    mutating func clientReady(_ events: EpollEvents) {
        guard case .open(var f) = self else { return }
        if !events.isDisjoint(with: [.input, .hangUp, .error]) { f.clientReadable = true }
        if !events.isDisjoint(with: [.output, .hangUp, .error]) { f.clientWriteBlocked = false }
        self = .open(f)
    }

    /// Changes the forwarding state of an open connection.
    mutating func update(_ body: (inout Forwarding) -> Void) {
        guard case .open(var f) = self else { return unexpected("update") }
        body(&f)
        self = .open(f)
    }

    /// The client socket is closed (the driver's decision or the client's error): the channel is
    /// closed next, or the open in flight finished first, or it is done (nothing to close). One
    /// whose client is already closed stays as it is.
    mutating func clientClosed() {
        switch self {
        case .held, .queued: self = .gone
        case .opening: self = .abandoned
        case .open(let f): self = .closing(f.channel)
        case .abandoned, .closing, .gone: return
        }
    }

    /// Its channel is closed and freed: done.
    mutating func channelClosed() {
        guard case .closing = self else { return unexpected("channelClosed") }
        self = .gone
    }

    /// The session ended without a goodbye (its channels go with it): a client still waiting for
    /// its channel is held for the next session; anything else is done.
    mutating func sessionLost() {
        switch self {
        case .held, .gone: return
        case .queued(let waiting), .opening(let waiting): self = .held(waiting)
        case .abandoned, .open, .closing: self = .gone
        }
    }

    /// Hands the client (held or queued) to another driver.
    mutating func release() {
        if !isWaitingForTurn { unexpected("release") }
        self = .gone
    }

    /// Done without a channel (the server refused it, or the client was let go).
    mutating func end() {
        self = .gone
    }

    private func unexpected(_ event: StaticString) {
        assertionFailure("\(event) in state \(self)")
    }
}

/// One accepted local connection: its socket, its buffers and its `ConnectionState`. Owned by the
/// session driver thread. Each event method changes the state, closes the socket when the state
/// says the client is closed, and keeps the driver's counters in step.
final class ForwardedConnection {
    typealias State = ConnectionState

    /// What the client socket is registered with epoll for, once, when it is accepted (or taken
    /// over from another driver), never changed: edge-triggered input, output and end of data
    /// (hang-up and error come regardless). No interest change per connection; a readiness
    /// nobody needs yet (a waiting client's data or room) is reported once and costs nothing
    /// (`ConnectionState.clientReady`).
    static let events: EpollEvents = [.input, .output, .readHangUp, .edgeTriggered]

    let id: UInt64
    let fd: Int32
    let peer: Endpoint
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
    /// The driver's counters this connection is counted in (set once the driver tracks it).
    var counters: ConnectionCounters? { didSet { recount() } }
    private var counted = (open: false, held: false)
    /// The socket was closed, or given away.
    private var socketClosed = false
    /// Until when it may wait for a session while held (kept when handed to another driver).
    private let deadline: BootInstant

    init(id: UInt64, fd: Int32, peer: Endpoint, forward: Int, holdDeadline: BootInstant, bufferSize: Int) {
        self.id = id
        self.fd = fd
        self.peer = peer
        self.forward = forward
        self.deadline = holdDeadline
        self.state = .held(State.Waiting())
        self.up = ByteBuffer(capacity: bufferSize)
        self.down = ByteBuffer(capacity: bufferSize)
    }

    // MARK: Reading the state

    var isClientOpen: Bool { state.isClientOpen }
    var isHeld: Bool { state.isHeld }
    var isOpen: Bool { state.isOpen }
    var isWaitingForTurn: Bool { state.isWaitingForTurn }
    var forwarding: State.Forwarding? { state.forwarding }
    /// The channel to use (`ConnectionState.channel`): only ever an `SSHChannel` (`opened`).
    var channel: SSHChannel? { state.channel.map { unsafeDowncast($0, to: SSHChannel.self) } }
    /// Until when a held client may wait for a session (nil unless held).
    var holdDeadline: BootInstant? { state.isHeld ? deadline : nil }

    var needsVisit: Bool { state.needsVisit(upEmpty: up.isEmpty, downEmpty: down.isEmpty) }

    // MARK: Events (see `ConnectionState`)

    func queue() {
        state.queue()
        recount()
    }

    func startOpening() -> Bool {
        state.startOpening()  // queued and opening count alike
    }

    func opened(_ channel: SSHChannel) {
        state.opened(channel)
        recount()
    }

    /// The server refused its channel: the client is closed and the connection is done.
    func openRefused() {
        closeSocket()
        state.end()
        recount()
    }

    func sentEOFWhileWaiting() { state.sentEOFWhileWaiting() }

    func clientReady(_ events: EpollEvents) { state.clientReady(events) }

    /// Changes the forwarding state of an open connection (the counts do not change).
    func update(_ body: (inout State.Forwarding) -> Void) { state.update(body) }

    /// Closes the client socket; see `ConnectionState.clientClosed`.
    func closeClient() {
        guard state.isClientOpen else { return }
        state.clientClosed()
        closeSocket()
        recount()
    }

    func channelClosed() {
        state.channelClosed()
        recount()
    }

    /// The session is gone; an open client is closed (see `ConnectionState.sessionLost`).
    func sessionLost() {
        state.sessionLost()
        if !state.isClientOpen { closeSocket() }
        recount()
    }

    /// Hands the client to another driver: its socket is not closed, and it is no longer ours.
    /// Returns its hold deadline.
    func release() -> BootInstant {
        state.release()
        socketClosed = true  // not closed: no longer ours to close
        up.release()
        down.release()
        recount()
        return deadline
    }

    // MARK: Internals

    private func closeSocket() {
        guard !socketClosed else { return }
        socketClosed = true
        if fd >= 0 { Posix.close(fd) }
        up.release()
        down.release()
    }

    /// Keeps `counters` in step: one open client while the socket is open, one held connection
    /// while held.
    private func recount() {
        guard let counters else { return }
        let now = (open: state.isClientOpen, held: state.isHeld)
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
