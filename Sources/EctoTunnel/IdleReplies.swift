/// Whether an idle session's incoming bytes may wait in the socket instead of being taken in at
/// once: the rule that saves one wake-up per keepalive round (issue 17, docs/performance.md).
///
/// libssh2 1.10 reads only through a channel call or a channel open. With no channel open, the
/// keepalive reply is taken in by a "drain" open that the server refuses, and that refusal is a
/// packet of its own: three wake-ups per keepalive round (the timer, the reply, the refusal)
/// against `ssh`'s two. Yet the reply needs no processing: libssh2 ignores it, and what the
/// dead-peer check wants is proof that the peer still sends, which bytes arriving in the socket
/// after our keepalive already are. So one small packet's worth of new bytes after each keepalive
/// is counted as a sign of life and left where it is (the socket then watched edge-triggered, so
/// it does not wake the loop again); the drain runs when anything else arrives, or after
/// `maxDeferred` such replies, so a server's own requests (its keepalives, a rekey) are answered
/// as soon as they come unless one arrives in the very same packet train as our reply, and then
/// within `maxDeferred` keepalive rounds.
///
/// Pure logic: the driver feeds it what it sees (keepalives sent, the socket's queued byte
/// count on each readiness report, libssh2 reading) and does what it answers.
struct IdleReplies: Equatable {
    /// Replies left in the socket before the next readiness report drains it anyway.
    static let maxDeferred = 4
    /// At most this many new bytes per report count as a keepalive reply: one small packet
    /// (a 1-byte payload padded to a cipher block or two, plus a MAC of up to 64 bytes). A
    /// rekey or anything of size is larger and is taken in at once.
    static let maxReplyBytes = 128

    enum Decision: Equatable {
        /// Nothing new since the last report (the registration changed, or a spurious report).
        case ignore
        /// A keepalive reply: the peer is alive; leave the bytes where they are.
        case leave
        /// Let libssh2 take everything in now.
        case drain
    }

    /// Keepalives sent since bytes were last seen arriving.
    private(set) var keepalivesUnanswered = 0
    /// The socket's queued bytes when replies were last left there; nil: nothing left.
    private(set) var leftBytes: Int?
    /// Replies left since libssh2 last read the socket.
    private(set) var leftReplies = 0

    /// Bytes are waiting that libssh2 has not read: the socket must be watched edge-triggered.
    var holdsBytes: Bool { leftBytes != nil }

    /// A keepalive went out (its bytes are on the socket).
    mutating func keepaliveSent() {
        keepalivesUnanswered += 1
    }

    /// The socket was reported readable (`closing`: the peer shut down, or an error) with
    /// `queued` bytes waiting (FIONREAD; negative when it could not be read).
    mutating func readable(queued: Int, closing: Bool) -> Decision {
        if closing || queued < 0 { return .drain }
        let before = leftBytes ?? 0
        if queued <= before { return leftBytes == nil ? .drain : .ignore }
        guard keepalivesUnanswered > 0, leftReplies < Self.maxDeferred, queued - before <= Self.maxReplyBytes
        else { return .drain }
        keepalivesUnanswered = 0
        leftReplies += 1
        leftBytes = queued
        return .leave
    }

    /// libssh2 read from the socket: whatever was left is taken in, and any reply awaited may be
    /// among what it read.
    mutating func taken() {
        keepalivesUnanswered = 0
        leftBytes = nil
        leftReplies = 0
    }
}
