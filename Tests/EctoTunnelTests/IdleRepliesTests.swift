import Testing

@testable import EctoTunnel

/// The rule that lets an idle session's keepalive replies wait in the socket (`IdleReplies`).
@Suite struct IdleRepliesTests {
    /// The steady state: each keepalive's reply is left, a sign of life without a drain, until
    /// `maxDeferred` replies wait; the next one drains them all.
    @Test func repliesAreLeftUntilTheLimitThenDrained() {
        var replies = IdleReplies()
        var queued = 0
        for round in 1...IdleReplies.maxDeferred {
            replies.keepaliveSent()
            queued += 48
            #expect(replies.readable(queued: queued, closing: false) == .leave, "round \(round)")
            #expect(replies.holdsBytes)
        }
        replies.keepaliveSent()
        queued += 48
        #expect(replies.readable(queued: queued, closing: false) == .drain)
        replies.taken()
        #expect(!replies.holdsBytes)
        #expect(replies == IdleReplies())
    }

    /// Bytes that no keepalive asked for (the server's own keepalive, its host keys message) are
    /// taken in at once: the server may be waiting for an answer.
    @Test func bytesNobodyAskedForAreDrained() {
        var replies = IdleReplies()
        #expect(replies.readable(queued: 48, closing: false) == .drain)
        replies.keepaliveSent()
        #expect(replies.readable(queued: 48, closing: false) == .leave)
        // A second packet after the one reply: not ours.
        #expect(replies.readable(queued: 96, closing: false) == .drain)
    }

    /// Anything larger than one small packet (a rekey's KEXINIT) is not a keepalive reply.
    @Test func aLargeArrivalIsDrained() {
        var replies = IdleReplies()
        replies.keepaliveSent()
        #expect(replies.readable(queued: IdleReplies.maxReplyBytes + 1, closing: false) == .drain)
        var second = IdleReplies()
        second.keepaliveSent()
        #expect(second.readable(queued: 40, closing: false) == .leave)
        second.keepaliveSent()
        #expect(second.readable(queued: 40 + IdleReplies.maxReplyBytes + 1, closing: false) == .drain)
    }

    /// A report with no new bytes while replies are left (the registration turned edge-triggered,
    /// which reports the socket once) changes nothing; with nothing left, it is the peer's end of
    /// the stream (readable, nothing to read) and libssh2 must see it.
    @Test func noNewBytesIsIgnoredOnlyWhileRepliesAreLeft() {
        var replies = IdleReplies()
        replies.keepaliveSent()
        #expect(replies.readable(queued: 48, closing: false) == .leave)
        let before = replies
        #expect(replies.readable(queued: 48, closing: false) == .ignore)
        #expect(replies == before)
        #expect(IdleReplies().readableOnce(queued: 0) == .drain)
    }

    /// The peer shutting down, a socket error, or a count that could not be read: drained, so
    /// libssh2 finds out what happened, however many replies wait.
    @Test func theEndOfTheStreamIsNeverLeft() {
        var replies = IdleReplies()
        replies.keepaliveSent()
        #expect(replies.readable(queued: 48, closing: false) == .leave)
        replies.keepaliveSent()
        #expect(replies.readable(queued: 96, closing: true) == .drain)
        var unknown = IdleReplies()
        unknown.keepaliveSent()
        #expect(unknown.readable(queued: -1, closing: false) == .drain)
    }

    /// When libssh2 reads the socket (a client's channel open, a drain), what was left is gone and
    /// an awaited reply may have been read with it: the next arrival is not taken for one.
    @Test func aReadForgetsTheAwaitedReply() {
        var replies = IdleReplies()
        replies.keepaliveSent()
        replies.taken()
        #expect(replies.readable(queued: 48, closing: false) == .drain)
    }
}

extension IdleReplies {
    fileprivate func readableOnce(queued: Int) -> Decision {
        var copy = self
        return copy.readable(queued: queued, closing: false)
    }
}
