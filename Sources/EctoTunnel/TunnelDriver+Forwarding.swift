import CEctoLinux
import EctoSSH
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Moving bytes: one pass over the connections of an established session that have something to
/// do (`scheduled`); settled ones cost nothing until epoll reports their client or libssh2 has
/// something for their channel.
///
/// libssh2 rules this respects (measured on 1.10):
/// - after a call returns EAGAIN with part of a packet unsent (`blockDirections` has
///   `.outbound`), that same call must be the next one on the session: it is remembered in
///   `pending` and retried first, and the pass stops until it completes;
/// - one channel open at a time per session;
/// - a read on one channel can pull other channels' data into libssh2's buffers, so a pass that
///   made progress is followed by another without sleeping, and after bytes arrived every quiet
///   channel is checked for data libssh2 now holds (`collectArrivals`).
extension TunnelDriver {
    func pump(_ session: SSHSession, events: EpollEvents) {
        session.beginPass()
        awaitingSendRoom = false
        let socketReadable = !events.isDisjoint(with: [.input, .hangUp, .error, .readHangUp])
        do {
            try runPass(session, socketReadable: socketReadable)
            // Bytes waiting with no channel to read them through: let libssh2 take them in.
            // Without this, the server's own requests would go unanswered and its keepalive
            // replies unread, except those `IdleReplies` lets wait (a sign of life as they are).
            if socketReadable || drainInFlight, pending == nil, openQueue.isEmpty, !session.receivedDuringPass,
                !connections.values.contains(where: { $0.channel != nil })
            {
                if drainInFlight {
                    _ = try drain(session)
                } else if socketReadable {
                    let closing = !events.isDisjoint(with: [.hangUp, .error, .readHangUp])
                    switch idleReplies.readable(queued: ecto_input_queue_bytes(session.socket), closing: closing) {
                    case .ignore: break
                    case .leave: session.noteBytesWaiting()
                    case .drain: _ = try drain(session)
                    }
                }
            }
        } catch {
            sessionLost(error.description)
            return
        }
        if session.receivedDuringPass {
            progress = true
            idleReplies.taken()
        }
        if let probe = livenessProbe, session.lastReceiveBootNanos > probe.started { endLivenessProbe(session) }
    }

    private func runPass(_ session: SSHSession, socketReadable: Bool) throws(SSHError) {
        if let call = pending {
            guard try retry(call, session) else { return }
        }
        guard try openChannels(session) else { return }
        if socketReadable || session.bytesReceived != arrivalsCheckedAt {
            guard try collectArrivals(session) else { return }
        }
        guard try visitScheduled(session) else { return }
        guard try keepalive(session) else { return }
    }

    /// Puts `connection` on the list the next pass visits (once).
    func schedule(_ connection: ForwardedConnection) {
        guard !connection.scheduled else { return }
        connection.scheduled = true
        scheduled.append(connection)
    }

    /// Visits this pass's connections; each goes back on the list while it still has work.
    private func visitScheduled(_ session: SSHSession) throws(SSHError) -> Bool {
        swap(&scheduled, &visiting)
        defer { visiting.removeAll(keepingCapacity: true) }
        for index in visiting.indices {
            let connection = visiting[index]
            connection.scheduled = false
            guard connections[connection.id] === connection else { continue }
            let carryOn: Bool
            switch connection.state {
            case .open: carryOn = try service(connection, session)
            case .closing: carryOn = try closeChannel(connection, session)
            case .held, .queued, .opening, .abandoned, .gone: continue
            }
            if connection.needsVisit && connections[connection.id] === connection { schedule(connection) }
            if !carryOn {
                // A half-sent call ends the pass: the rest keep their turn for the next one.
                for rest in visiting[(index + 1)...] {
                    rest.scheduled = false
                    schedule(rest)
                }
                return false
            }
        }
        return true
    }

    /// Lets libssh2 take in everything the SSH socket holds, then marks for a read every quiet
    /// channel that libssh2 now has data or EOF for. A read on one channel takes in the packets of
    /// all of them, and the socket no longer shows those; this check (a walk over libssh2's unread
    /// packets, no syscall) is what lets passes skip idle channels without ever missing one.
    /// It runs when the socket is readable and after any pass where bytes arrived that no check has
    /// seen yet (`arrivalsCheckedAt`), so packets that another call took in but left unprocessed
    /// (a channel open stops at its confirmation) are processed here.
    private func collectArrivals(
        _ session: SSHSession, through retried: ForwardedConnection? = nil
    ) throws(SSHError)
        -> Bool
    {
        // Any open channel will do (a read of 0 bytes takes nothing from it); a half-sent one is
        // retried on the same channel.
        guard let probe = retried ?? connections.values.first(where: { $0.isOpen }),
            let channel = probe.channel
        else { return true }  // no channel: the drain (or the open or close in flight) takes the bytes in
        let result: SSHResult<Void>
        do {
            result = try channel.receivePending()
        } catch {
            guard error.isChannelScoped else { throw error }
            abort(probe, "channel read: \(error.message)")
            return true  // not checked: the next pass tries again
        }
        if case .wouldBlock = result, stalled(.pull(probe.id), session) { return false }
        guard session.receiveDrained else {
            progress = true  // libssh2 stopped before the socket was empty: look again at once
            return true
        }
        arrivalsCheckedAt = session.bytesReceived
        for connection in connections.values {
            guard let forwarding = connection.forwarding, forwarding.channelQuiet, !forwarding.remoteEOF,
                let channel = connection.channel, channel.hasInput
            else { continue }
            connection.update { $0.channelQuiet = false }
            schedule(connection)
        }
        return true
    }

    /// After `.wouldBlock`: true when libssh2 holds a half-sent packet for `call`, which then
    /// becomes the pending call and ends the pass.
    private func stalled(_ call: PendingCall, _ session: SSHSession) -> Bool {
        if session.blockDirections.contains(.outbound) {
            pending = call
            return true
        }
        return false
    }

    private func retry(_ call: PendingCall, _ session: SSHSession) throws(SSHError) -> Bool {
        pending = nil
        switch call {
        case .open:
            return try openChannels(session)
        case .keepalive:
            return try keepalive(session, force: true)
        case .drain:
            return try drain(session)
        case .write(let id), .read(let id), .pull(let id), .sendEOF(let id), .close(let id):
            guard let connection = connections[id] else { return true }
            schedule(connection)
            switch call {
            case .write: return try pushToChannel(connection, session)
            case .read: return try pullFromChannel(connection, session)
            case .pull: return try collectArrivals(session, through: connection)
            case .sendEOF: return try sendEOF(connection, session, retrying: true)
            default: return try closeChannel(connection, session, retrying: true)
            }
        }
    }

    // MARK: Channel opens

    /// Runs (or continues) a drain open; false when the pass must stop.
    private func drain(_ session: SSHSession) throws(SSHError) -> Bool {
        drainInFlight = true
        guard case .done = try session.drainIncoming() else { return !stalled(.drain, session) }
        drainInFlight = false
        progress = true
        return true
    }

    private func openChannels(_ session: SSHSession) throws(SSHError) -> Bool {
        // A drain open in flight holds the session's only open slot: finish it first.
        if drainInFlight {
            guard try drain(session) else { return false }  // half-sent: nothing else until it is out
            if drainInFlight { return true }  // awaiting the answer: no new open, the rest may go on
        }
        while let id = openQueue.first {
            guard let connection = connections[id], connection.startOpening() else {
                openQueue.removeFirst()
                continue
            }
            let remote = config.forwards[connection.forward].remote
            let result: SSHResult<SSHChannel>
            do {
                result = try session.openDirectTCPIP(
                    host: remote.host, port: remote.port, originHost: connection.peer.host,
                    originPort: connection.peer.port)
            } catch {
                guard error.isChannelScoped else { throw error }
                openQueue.removeFirst()
                refusedTotal += 1
                logger.warning(
                    "the server refused the channel to \(remote): \(error.message); closing that client",
                    metadata: ["client": "\(connection.peer)"])
                connection.openRefused()
                connections[id] = nil
                progress = true
                continue
            }
            guard case .done(let channel) = result else {
                return !stalled(.open(id), session)  // one open in flight: wait for it
            }
            openQueue.removeFirst()
            progress = true
            machine.sessionProven()  // the server forwards: losing this session is an outage
            connection.opened(channel)  // open, or closing if the client left while it opened
            schedule(connection)
        }
        return true
    }

    // MARK: One connection

    /// Bytes one connection may move per direction in one pass before the others get their turn.
    /// Several buffers' worth: a busy connection needs fewer rounds of poll and pass bookkeeping
    /// per byte, and one busy connection still cannot starve the others.
    static let passBudget = 256 * 1024

    /// Moves what can be moved for one open connection; false when the pass must stop.
    private func service(_ connection: ForwardedConnection, _ session: SSHSession) throws(SSHError) -> Bool {
        // Remote → client: read the channel into the buffer, deliver it; again while a whole
        // buffer went through and the budget allows.
        var budget = Self.passBudget
        while true {
            let before = bytesIn
            guard try pullFromChannel(connection, session) else { return false }
            flushToClient(connection)
            guard let forwarding = connection.forwarding else { return true }  // aborted
            let moved = Int(truncatingIfNeeded: bytesIn &- before)
            budget -= moved
            guard moved > 0, budget > 0, connection.down.isEmpty, !forwarding.clientWriteBlocked else { break }
        }
        // Client → remote, the same way.
        budget = Self.passBudget
        while true {
            readFromClient(connection)
            guard connection.isOpen else { return true }  // aborted
            let before = bytesOut
            guard try pushToChannel(connection, session) else { return false }
            guard let forwarding = connection.forwarding else { return true }
            let moved = Int(truncatingIfNeeded: bytesOut &- before)
            budget -= moved
            guard moved > 0, budget > 0, connection.up.isEmpty, forwarding.clientReadable else { break }
        }
        guard var forwarding = connection.forwarding else { return true }
        // The client has nothing more right now: an empty buffer goes back (idle connections hold
        // no buffer memory). The channel side does the same in its next read that finds nothing.
        if !forwarding.clientReadable { connection.up.releaseIfEmpty() }
        if forwarding.clientEOF && connection.up.isEmpty && !forwarding.eofSent {
            guard try sendEOF(connection, session) else { return false }
            guard let now = connection.forwarding else { return true }
            forwarding = now
        }
        if forwarding.isComplete {
            logger.trace("connection finished", metadata: ["client": "\(connection.peer)"])
            connection.closeClient()
            return try closeChannel(connection, session)
        }
        return true
    }

    /// Reads the channel into the buffer until libssh2 has nothing more for it or the buffer is
    /// full. A quiet channel (the last read found nothing) is not read: libssh2 holds nothing for
    /// it until `collectArrivals` says otherwise. Skipping it never withholds a window adjust
    /// (libssh2 sends those from inside reads): the read that found nothing ran libssh2's
    /// adjust check first, which leaves the window at three quarters or more of its size, and
    /// the window only shrinks when we read data, which a quiet channel does not have.
    private func pullFromChannel(_ connection: ForwardedConnection, _ session: SSHSession) throws(SSHError) -> Bool {
        guard let forwarding = connection.forwarding, !forwarding.remoteEOF, !forwarding.channelQuiet,
            let channel = connection.channel
        else { return true }
        while connection.down.hasSpace {
            var result: SSHResult<Int> = .wouldBlock
            do {
                _ = try connection.down.fillAllocatingOnData { buffer throws(SSHError) -> Int in
                    result = try channel.read(into: buffer)
                    if case .done(let n) = result { return n }
                    return 0
                }
            } catch {
                guard error.isChannelScoped else { throw error }
                abort(connection, "channel read: \(error.message)")
                return true
            }
            switch result {
            case .wouldBlock:
                if stalled(.read(connection.id), session) { return false }
                settle(connection, channel)
                return true
            case .done(0):
                if channel.isEOF {
                    connection.update { $0.remoteEOF = true }
                    progress = true
                } else {
                    settle(connection, channel)
                }
                return true
            case .done(let n):
                bytesIn &+= UInt64(n)
                listeners[connection.forward].bytesIn &+= UInt64(n)
                progress = true
            }
        }
        return true
    }

    /// The channel's read found nothing: libssh2 holds nothing for it.
    private func settle(_ connection: ForwardedConnection, _ channel: SSHChannel) {
        connection.update { $0.channelQuiet = true }
        assert(channel.readWindow > 0, "a quiet channel must leave the peer room to send")
    }

    private func flushToClient(_ connection: ForwardedConnection) {
        guard var forwarding = connection.forwarding else { return }
        while !connection.down.isEmpty && !forwarding.clientWriteBlocked {
            let written: Int
            do {
                written = try connection.down.drain { buffer throws(SystemError) -> Int in
                    switch try Posix.write(connection.fd, buffer) {
                    case .wouldBlock:
                        forwarding.clientWriteBlocked = true
                        return 0
                    case .done(let n):
                        return n
                    }
                }
            } catch {
                abort(connection, "client \(connection.peer): \(error)")
                return
            }
            if written == 0 { break }
            progress = true
        }
        if forwarding.remoteEOF && connection.down.isEmpty && !forwarding.clientShutdown {
            // The remote side finished sending: pass the half-close on.
            Posix.shutdownWrite(connection.fd)
            forwarding.clientShutdown = true
            progress = true
        }
        connection.update { $0 = forwarding }
    }

    private func readFromClient(_ connection: ForwardedConnection) {
        guard var forwarding = connection.forwarding, forwarding.clientReadable, !forwarding.clientEOF,
            connection.up.hasSpace
        else { return }
        do {
            _ = try connection.up.fillAllocatingOnData { buffer throws(SystemError) -> Int in
                switch try Posix.read(connection.fd, buffer) {
                case .wouldBlock:
                    forwarding.clientReadable = false
                    return 0
                case .done(0):
                    forwarding.clientEOF = true
                    forwarding.clientReadable = false
                    return 0
                case .done(let n):
                    return n
                }
            }
            progress = true
        } catch {
            abort(connection, "client \(connection.peer): \(error)")
            return
        }
        connection.update { $0 = forwarding }
    }

    private func pushToChannel(_ connection: ForwardedConnection, _ session: SSHSession) throws(SSHError) -> Bool {
        guard connection.isOpen, let channel = connection.channel else { return true }
        while !connection.up.isEmpty {
            // Window exhausted: wait for the peer's window adjust (it arrives with some later
            // read). Never park a write that has nothing to send; that would stall other channels.
            if channel.writeWindow == 0 { return true }
            var result: SSHResult<Int> = .wouldBlock
            do {
                _ = try connection.up.drain { buffer throws(SSHError) -> Int in
                    result = try channel.write(buffer)
                    if case .done(let n) = result { return n }
                    return 0
                }
            } catch {
                guard error.isChannelScoped else { throw error }
                abort(connection, "channel write: \(error.message)")
                return true
            }
            switch result {
            case .wouldBlock:
                return !stalled(.write(connection.id), session)
            case .done(let n):
                if n == 0 { return true }
                bytesOut &+= UInt64(n)
                listeners[connection.forward].bytesOut &+= UInt64(n)
                progress = true
            }
        }
        return true
    }

    private func sendEOF(
        _ connection: ForwardedConnection, _ session: SSHSession, retrying: Bool = false
    ) throws(SSHError) -> Bool {
        // A retry goes on with the channel of a connection closed meanwhile: libssh2 wants that
        // very call repeated.
        guard let channel = connection.channel, connection.forwarding?.eofSent != true else { return true }
        guard retrying || hasSendRoom(session, connection) else { return true }
        do {
            guard case .done = try channel.sendEOF() else { return !stalled(.sendEOF(connection.id), session) }
        } catch {
            guard error.isChannelScoped else { throw error }
            abort(connection, "channel EOF: \(error.message)")
            return true
        }
        if connection.isOpen { connection.update { $0.eofSent = true } }  // closed meanwhile: stale
        progress = true
        return true
    }

    /// Closes and frees a connection's channel; removes the connection once done.
    private func closeChannel(
        _ connection: ForwardedConnection, _ session: SSHSession, retrying: Bool = false
    ) throws(SSHError) -> Bool {
        // Not closing: already closed and freed (a retry that arrived late).
        guard case .closing = connection.state, let channel = connection.channel else { return true }
        guard retrying || hasSendRoom(session, connection) else { return true }
        do {
            guard case .done = try channel.close() else { return !stalled(.close(connection.id), session) }
            guard case .done = try channel.free() else { return !stalled(.close(connection.id), session) }
        } catch {
            guard error.isChannelScoped else { throw error }
            _ = try? channel.free()
        }
        connection.channelClosed()
        connections[connection.id] = nil
        progress = true
        return true
    }

    /// libssh2 1.10 builds the EOF and close packets in a buffer on its own stack, and a half-sent
    /// packet may only be continued with the very same buffer address; a retry from another call
    /// path (another stack depth) fails with "unable to send" and ends the session. So those two
    /// are sent only when the kernel's send queue has room for them, as keepalives are: then they
    /// go out whole. Without room the connection waits for the socket to drain (`awaitingSendRoom`
    /// adds output to the SSH socket's epoll interest). Rare on TCP (its send buffer grows), common
    /// on the socketpair of a jump chain or proxy command.
    private func hasSendRoom(_ session: SSHSession, _ connection: ForwardedConnection) -> Bool {
        if sendQueueHasRoom(session) { return true }
        awaitingSendRoom = true
        schedule(connection)
        return false
    }

    /// Whether the SSH socket's send queue has room for `needed` bytes: measured (`ioctl(SIOCOUTQ)`
    /// and `getsockopt(SO_SNDBUF)`), then lowered by what libssh2 sent since
    /// (`SSHSession.bytesSent`). Nothing but our own sends takes room (ACKs only give it back), so
    /// that is a lower bound; it is measured again when it runs short, for another session, or
    /// after 100 ms (the kernel shrinks a send buffer only under memory pressure, and then a stale
    /// figure could be too high). Under churn this saves the two syscalls for most EOFs and closes
    /// (four per connection before: `strace -c`, `bench/run.py --strace-dir`).
    private func sendQueueHasRoom(_ session: SSHSession, for needed: Int = 4096) -> Bool {
        let now = clock.now
        if let known = sendRoom, known.session == ObjectIdentifier(session), now < known.until,
            session.bytesSent >= known.sentAt
        {
            let sentSince = Int(truncatingIfNeeded: session.bytesSent &- known.sentAt)
            if known.room - sentSince >= needed { return true }
        }
        let room = ecto_send_queue_room(session.socket)
        sendRoom = (ObjectIdentifier(session), room, session.bytesSent, now.advanced(by: .milliseconds(100)))
        return room >= needed
    }

    /// Ends one connection after an error on either side; the session goes on.
    private func abort(_ connection: ForwardedConnection, _ reason: String) {
        logger.debug("connection aborted: \(reason)", metadata: ["client": "\(connection.peer)"])
        connection.closeClient()
        schedule(connection)
        progress = true
    }

    // MARK: Keepalive

    /// libssh2 1.10's `libssh2_keepalive_send` swallows EAGAIN: a keepalive that did not fit in
    /// the socket is counted as sent and left half-sent, pointing at a buffer on its own stack, and
    /// the next send of anything else fails. So it is only called when the kernel's send queue has
    /// room for it (a keepalive behind a full queue would prove nothing anyway), and if it ever
    /// leaves a packet half-sent the session is replaced at once, cleanly, instead of failing
    /// later on an unrelated call.
    /// The session's next keepalive, and the jump hops' with it (one timer wake-up for all).
    func scheduleKeepalive(at next: Instant) {
        nextKeepalive = next
        if case .chain(let chain)? = carrier { chain.alignKeepalives(to: next) }
    }

    private func keepalive(_ session: SSHSession, force: Bool = false) throws(SSHError) -> Bool {
        guard let next = nextKeepalive, force || clock.now >= next else { return true }
        guard sendQueueHasRoom(session) else {
            nextKeepalive = clock.now.advanced(by: .milliseconds(250))
            return true
        }
        let sentBefore = session.bytesSent
        switch try session.sendKeepalive() {
        case .wouldBlock:
            return !stalled(.keepalive, session)
        case .done(let seconds):
            if session.bytesSent != sentBefore { idleReplies.keepaliveSent() }
            if session.blockDirections.contains(.outbound) {
                throw SSHError(
                    code: 0, message: "a keepalive was left half-sent (libssh2 1.10 limitation)",
                    operation: "send keepalive")
            }
            scheduleKeepalive(at: clock.now.advanced(by: .seconds(max(1, seconds))))
            return true
        }
    }
}
