import EctoSSH

/// One accepted local connection and its channel. Owned by the session driver thread.
final class ForwardedConnection {
    enum Phase {
        /// Accepted while no session is up; waits (until `holdDeadline`) for one.
        case held
        /// Waiting for its turn to open a channel (one open in flight per session).
        case queued
        /// Its channel open is in flight.
        case opening
        /// Forwarding.
        case open
        /// Channel close/free in progress; the client socket is already closed.
        case closing
    }

    let id: UInt64
    let fd: Int32
    let peer: String
    /// Which of the tunnel's forwards it came in on (an index into `TunnelConfig.forwards`): its
    /// channel goes to that forward's `remote`, and its bytes count towards that forward.
    let forward: Int
    var phase: Phase = .held { didSet { recount() } }
    var holdDeadline: ContinuousClock.Instant
    var channel: SSHChannel?
    /// Client → channel.
    var up: ByteBuffer
    /// Channel → client.
    var down: ByteBuffer
    /// The client shut down its write side (read returned 0).
    var clientEOF = false
    /// We sent channel EOF after forwarding everything the client sent.
    var eofSent = false
    /// The server sent channel EOF and we read everything before it.
    var remoteEOF = false
    /// We shut down the client's write side after delivering everything.
    var clientShutdown = false
    /// poll reported the client readable (cleared on EAGAIN).
    var clientReadable = false
    /// A write to the client would block: wait for EPOLLOUT.
    var clientWriteBlocked = false
    /// The client socket is closed (fd no longer valid), or it changed owner.
    var clientClosed = false { didSet { recount() } }
    /// The last channel read found nothing (and no end of data): libssh2 holds nothing for this
    /// channel, so passes skip reading it until the arrivals check finds something
    /// (`TunnelDriver.collectArrivals`). Cleared by every read that returns data or fills the
    /// buffer.
    var channelQuiet = false
    /// Waiting for its channel, the client shut down its sending side after sending something:
    /// it may still want the reply, so it stays, and epoll stops reporting that end of data.
    var sentEOFWhileWaiting = false
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
        self.holdDeadline = holdDeadline
        self.up = ByteBuffer(capacity: bufferSize)
        self.down = ByteBuffer(capacity: bufferSize)
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
        guard !clientClosed else { return nil }
        var events: EpollEvents = []
        if phase != .open && !sentEOFWhileWaiting { events.insert(.readHangUp) }
        if phase == .open && sessionUp && !clientEOF && up.hasSpace && !clientReadable { events.insert(.input) }
        if clientWriteBlocked { events.insert(.output) }
        return events.isEmpty && phase == .open ? nil : events
    }

    /// True while a pass has work for this connection without news from epoll (client readiness)
    /// or from libssh2 (channel data, EOF): settled connections are left alone, which is what makes
    /// idle connections free.
    var needsVisit: Bool {
        switch phase {
        case .held, .queued, .opening:
            return false  // the open queue serves these
        case .closing:
            return true  // until its channel is closed and freed
        case .open:
            return (!channelQuiet && !remoteEOF)  // the channel may hold more
                || clientReadable  // the client may have more
                || !up.isEmpty  // waiting for the peer's window or for the channel write
                || (!down.isEmpty && !clientWriteBlocked)
                || (clientEOF && !eofSent)
                || (remoteEOF && down.isEmpty && !clientShutdown)
        }
    }

    /// Keeps `counters` in step: one open client while the socket is open, one held connection
    /// while held with an open socket.
    private func recount() {
        guard let counters else { return }
        let now = (open: !clientClosed, held: phase == .held && !clientClosed)
        if now.open != counted.open {
            counters.openClients += now.open ? 1 : -1
            counters.openByForward[forward] += now.open ? 1 : -1
        }
        if now.held != counted.held { counters.held += now.held ? 1 : -1 }
        counted = now
    }

    /// Both directions finished cleanly.
    var isComplete: Bool { eofSent && clientShutdown }

    func closeClient() {
        guard !clientClosed else { return }
        clientClosed = true
        Posix.close(fd)
        up.release()
        down.release()
    }
}

/// Counts the session driver keeps in step with its connections (each connection updates them
/// when its phase or client socket changes), so that no loop pass has to scan the connections.
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
