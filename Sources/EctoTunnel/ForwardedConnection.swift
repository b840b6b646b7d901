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
    var phase: Phase = .held
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
    /// A write to the client would block: wait for POLLOUT.
    var clientWriteBlocked = false
    /// The client socket is closed (fd no longer valid).
    var clientClosed = false

    init(id: UInt64, fd: Int32, peer: String, holdDeadline: ContinuousClock.Instant, bufferSize: Int) {
        self.id = id
        self.fd = fd
        self.peer = peer
        self.holdDeadline = holdDeadline
        self.up = ByteBuffer(capacity: bufferSize)
        self.down = ByteBuffer(capacity: bufferSize)
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
