import Glibc
import Testing

@testable import EctoTunnel

@Suite struct EpollInterestTests {
    private func connection(_ phase: ForwardedConnection.Phase = .open) -> ForwardedConnection {
        let connection = ForwardedConnection(
            id: 1, fd: -1, peer: "127.0.0.1:1", forward: 0, holdDeadline: .now, bufferSize: 4)
        connection.phase = phase
        return connection
    }

    @Test func interestChangesOnlyWhenItChanges() {
        #expect(EpollChange.from(nil, to: nil) == nil)
        #expect(EpollChange.from(nil, to: []) == .add([]))
        #expect(EpollChange.from(nil, to: .input) == .add(.input))
        #expect(EpollChange.from(.input, to: .input) == nil)
        #expect(EpollChange.from([], to: []) == nil)
        #expect(EpollChange.from(.input, to: [.input, .output]) == .modify([.input, .output]))
        #expect(EpollChange.from([], to: .input) == .modify(.input))
        #expect(EpollChange.from(.output, to: nil) == .remove)
        #expect(EpollChange.from([], to: nil) == .remove)
    }

    @Test func waitingClientsAreWatchedForTheirEndOnly() {
        for phase in [ForwardedConnection.Phase.held, .queued, .opening] {
            // Hang-up and error come regardless; the end of their data (RDHUP) is asked for, so a
            // client that closes while it waits is let go at once.
            #expect(connection(phase).wantedEvents(sessionUp: true) == .readHangUp)
            #expect(connection(phase).wantedEvents(sessionUp: false) == .readHangUp)
            // One that sent a request and then shut down its side may want the reply: it stays,
            // and its end is not reported again (level-triggered, it would wake the loop forever).
            let halfClosed = connection(phase)
            halfClosed.sentEOFWhileWaiting = true
            #expect(halfClosed.wantedEvents(sessionUp: false) == [])
        }
    }

    @Test func openConnectionsAskForWhatTheyWaitFor() {
        let open = connection()
        #expect(open.wantedEvents(sessionUp: true) == .input)
        // Already known readable: level-triggered input would only wake the loop again.
        open.clientReadable = true
        #expect(open.wantedEvents(sessionUp: true) == nil)
        open.clientWriteBlocked = true
        #expect(open.wantedEvents(sessionUp: true) == .output)
        open.clientReadable = false
        #expect(open.wantedEvents(sessionUp: true) == [.input, .output])
        // The client half-closed: nothing more to read from it.
        open.clientEOF = true
        #expect(open.wantedEvents(sessionUp: true) == .output)
        open.clientWriteBlocked = false
        #expect(open.wantedEvents(sessionUp: true) == nil)
    }

    @Test func aFullBufferStopsReadingTheClient() {
        let open = connection()
        _ = open.up.fill { $0.count }
        let full = !open.up.hasSpace
        #expect(full)
        #expect(open.wantedEvents(sessionUp: true) == nil)
        _ = open.up.drain { $0.count }
        #expect(open.wantedEvents(sessionUp: true) == .input)
    }

    @Test func closedClientsAreNotWatched() {
        for phase in [ForwardedConnection.Phase.held, .open, .closing] {
            let closed = connection(phase)
            closed.clientClosed = true
            #expect(closed.wantedEvents(sessionUp: true) == nil)
        }
    }

    @Test func countersFollowPhaseAndClose() {
        let counters = ConnectionCounters(forwards: 1)
        let held = connection(.held)
        let open = connection(.open)
        held.counters = counters
        open.counters = counters
        #expect(counters.openClients == 2 && counters.held == 1)
        held.phase = .queued
        #expect(counters.held == 0)
        held.phase = .held  // the session died before its channel opened
        held.phase = .held
        #expect(counters.held == 1)
        held.clientClosed = true  // handed over or closed
        #expect(counters.openClients == 1 && counters.held == 0)
        open.phase = .closing
        open.clientClosed = true
        open.clientClosed = true
        #expect(counters.openClients == 0 && counters.held == 0)
    }

    /// The kernel side of the rules above: a socket registered for nothing reports a peer that is
    /// gone, but neither data nor a half-close.
    @Test func registeredForNothingReportsOnlyHangUp() throws {
        var pair: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { Glibc.close(pair[0]) }
        let poller = try Epoll()
        try poller.apply(.add([]), fd: pair[0], token: 7)
        #expect(Glibc.write(pair[1], "x", 1) == 1)
        #expect(try poller.wait(timeoutMilliseconds: 0).isEmpty)
        #expect(shutdown(pair[1], Int32(SHUT_WR)) == 0)
        #expect(try poller.wait(timeoutMilliseconds: 0).isEmpty)
        try poller.apply(.modify(.input), fd: pair[0], token: 7)
        let readable = try poller.wait(timeoutMilliseconds: 0)
        #expect(readable.count == 1 && readable[0].token == 7 && readable[0].readiness.contains(.input))
        try poller.apply(.modify([]), fd: pair[0], token: 7)
        Glibc.close(pair[1])
        let gone = try poller.wait(timeoutMilliseconds: 0)
        #expect(gone.count == 1 && gone[0].readiness.contains(.hangUp))
        poller.remove(pair[0])
        #expect(try poller.wait(timeoutMilliseconds: 0).isEmpty)
    }
}

/// Which connections a forwarding pass visits: settled ones wait for epoll or libssh2.
@Suite struct PassSchedulingTests {
    private func settled() -> ForwardedConnection {
        let connection = ForwardedConnection(
            id: 1, fd: -1, peer: "127.0.0.1:1", forward: 0, holdDeadline: .now, bufferSize: 4)
        connection.phase = .open
        connection.channelQuiet = true
        return connection
    }

    @Test func anIdleConnectionIsSettled() {
        #expect(!settled().needsVisit)
    }

    @Test func aChannelNotKnownQuietIsReadAgain() {
        let connection = settled()
        connection.channelQuiet = false  // new, or its last read returned data or filled the buffer
        #expect(connection.needsVisit)
        connection.remoteEOF = true  // nothing more will come from it
        connection.clientShutdown = true
        #expect(!connection.needsVisit)
    }

    @Test func bufferedOrPendingWorkKeepsItScheduled() {
        let readable = settled()
        readable.clientReadable = true
        #expect(readable.needsVisit)

        let waitingForWindow = settled()
        _ = waitingForWindow.up.fill { $0.count }
        #expect(waitingForWindow.needsVisit)

        let toDeliver = settled()
        _ = toDeliver.down.fill { $0.count }
        #expect(toDeliver.needsVisit)
        toDeliver.clientWriteBlocked = true  // epoll reports when the client can take more
        #expect(!toDeliver.needsVisit)

        let eofToSend = settled()
        eofToSend.clientEOF = true
        #expect(eofToSend.needsVisit)
        eofToSend.eofSent = true
        #expect(!eofToSend.needsVisit)

        let shutdownToPass = settled()
        shutdownToPass.remoteEOF = true
        #expect(shutdownToPass.needsVisit)
    }

    @Test func phasesOutsideForwarding() {
        let connection = settled()
        connection.phase = .closing
        #expect(connection.needsVisit)  // until its channel is freed
        for phase in [ForwardedConnection.Phase.held, .queued, .opening] {
            connection.phase = phase
            #expect(!connection.needsVisit)  // the open queue serves these
        }
    }
}
