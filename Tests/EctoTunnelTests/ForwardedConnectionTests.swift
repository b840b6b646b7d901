import Glibc
import Testing

@testable import EctoTunnel

/// A stand-in for a libssh2 channel: the connection's state logic never calls it.
final class FakeChannel {}

typealias TestConnection = ForwardedConnection<FakeChannel>

/// A connection of the tests, driven to `stage` by the events that lead there (held → queued →
/// opening → open → closing), as the driver would.
enum Stage { case held, queued, opening, open, closing }

func testConnection(_ stage: Stage = .open, bufferSize: Int = 4) -> TestConnection {
    let connection = TestConnection(
        id: 1, fd: -1, peer: "127.0.0.1:1", forward: 0, holdDeadline: .now, bufferSize: bufferSize)
    if stage == .held { return connection }
    connection.queue()
    if stage == .queued { return connection }
    #expect(connection.startOpening())
    if stage == .opening { return connection }
    connection.opened(FakeChannel())
    if stage == .open { return connection }
    connection.closeClient()
    return connection
}

@Suite struct EpollInterestTests {
    private func connection(_ stage: Stage = .open) -> TestConnection { testConnection(stage) }

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
        for phase in [Stage.held, .queued, .opening] {
            // Hang-up and error come regardless; the end of their data (RDHUP) is asked for, so a
            // client that closes while it waits is let go at once.
            #expect(connection(phase).wantedEvents(sessionUp: true) == .readHangUp)
            #expect(connection(phase).wantedEvents(sessionUp: false) == .readHangUp)
            // One that sent a request and then shut down its side may want the reply: it stays,
            // and its end is not reported again (level-triggered, it would wake the loop forever).
            let halfClosed = connection(phase)
            halfClosed.sentEOFWhileWaiting()
            #expect(halfClosed.wantedEvents(sessionUp: false) == [])
        }
    }

    @Test func openConnectionsAskForWhatTheyWaitFor() {
        let open = connection()
        // A new channel starts with the client taken as readable (it may have sent while it
        // waited): level-triggered input would only wake the loop again.
        #expect(open.wantedEvents(sessionUp: true) == nil)
        open.update { $0.clientReadable = false }  // a read would block
        #expect(open.wantedEvents(sessionUp: true) == .input)
        #expect(open.wantedEvents(sessionUp: false) == nil)  // nowhere to send it
        open.clientReady(.input)
        #expect(open.wantedEvents(sessionUp: true) == nil)
        open.update { $0.clientWriteBlocked = true }
        #expect(open.wantedEvents(sessionUp: true) == .output)
        open.update { $0.clientReadable = false }
        #expect(open.wantedEvents(sessionUp: true) == [.input, .output])
        // The client half-closed: nothing more to read from it.
        open.update { $0.clientEOF = true }
        #expect(open.wantedEvents(sessionUp: true) == .output)
        open.clientReady(.output)  // it can take more
        #expect(open.wantedEvents(sessionUp: true) == nil)
    }

    @Test func aFullBufferStopsReadingTheClient() {
        let open = connection()
        open.update { $0.clientReadable = false }
        _ = open.up.fill { $0.count }
        let full = !open.up.hasSpace
        #expect(full)
        #expect(open.wantedEvents(sessionUp: true) == nil)
        _ = open.up.drain { $0.count }
        #expect(open.wantedEvents(sessionUp: true) == .input)
    }

    @Test func closedClientsAreNotWatched() {
        for phase in [Stage.held, .queued, .opening, .open] {
            let closed = connection(phase)
            closed.closeClient()
            #expect(!closed.isClientOpen)
            #expect(closed.wantedEvents(sessionUp: true) == nil)
        }
        #expect(connection(.closing).wantedEvents(sessionUp: true) == nil)
    }

    @Test func countersFollowStateAndClose() {
        let counters = ConnectionCounters(forwards: 1)
        let held = connection(.held)
        let open = connection(.open)
        held.counters = counters
        open.counters = counters
        #expect(counters.openClients == 2 && counters.held == 1)
        held.queue()
        #expect(counters.held == 0)
        #expect(held.startOpening())
        held.sessionLost()  // the session died before its channel opened: held again
        #expect(held.isHeld)
        #expect(counters.openClients == 2 && counters.held == 1)
        _ = held.release()  // handed over
        #expect(counters.openClients == 1 && counters.held == 0)
        open.closeClient()
        open.closeClient()  // a second close changes nothing
        #expect(counters.openClients == 0 && counters.held == 0)
        open.channelClosed()
        #expect(counters.openClients == 0 && counters.held == 0)
        #expect(counters.openByForward == [0])
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
    private func settled() -> TestConnection {
        let connection = testConnection(.open)
        connection.update {
            $0.clientReadable = false
            $0.channelQuiet = true
        }
        return connection
    }

    @Test func anIdleConnectionIsSettled() {
        #expect(!settled().needsVisit)
    }

    @Test func aNewChannelIsVisited() {
        // Not known quiet, and the client may have sent while it waited.
        #expect(testConnection(.open).needsVisit)
    }

    @Test func aChannelNotKnownQuietIsReadAgain() {
        let connection = settled()
        connection.update { $0.channelQuiet = false }  // its last read returned data or filled the buffer
        #expect(connection.needsVisit)
        connection.update {
            $0.remoteEOF = true  // nothing more will come from it
            $0.clientShutdown = true
        }
        #expect(!connection.needsVisit)
    }

    @Test func bufferedOrPendingWorkKeepsItScheduled() {
        let readable = settled()
        readable.clientReady(.input)
        #expect(readable.needsVisit)

        let waitingForWindow = settled()
        _ = waitingForWindow.up.fill { $0.count }
        #expect(waitingForWindow.needsVisit)

        let toDeliver = settled()
        _ = toDeliver.down.fill { $0.count }
        #expect(toDeliver.needsVisit)
        toDeliver.update { $0.clientWriteBlocked = true }  // epoll reports when the client can take more
        #expect(!toDeliver.needsVisit)

        let eofToSend = settled()
        eofToSend.update { $0.clientEOF = true }
        #expect(eofToSend.needsVisit)
        eofToSend.update { $0.eofSent = true }
        #expect(!eofToSend.needsVisit)

        let shutdownToPass = settled()
        shutdownToPass.update { $0.remoteEOF = true }
        #expect(shutdownToPass.needsVisit)
    }

    @Test func statesOutsideForwarding() {
        let closing = testConnection(.closing)
        #expect(closing.needsVisit)  // until its channel is freed
        closing.channelClosed()
        #expect(!closing.needsVisit)
        for stage in [Stage.held, .queued, .opening] {
            #expect(!testConnection(stage).needsVisit)  // the open queue serves these
        }
    }
}

/// The life of a connection, event by event, without a session.
@Suite struct ConnectionStateTests {
    @Test func aClientThatLeavesWhileItsChannelOpensHasTheChannelClosed() throws {
        let connection = testConnection(.opening)
        connection.closeClient()
        guard case .abandoned = connection.state else { throw Unexpected(connection.state) }
        #expect(connection.startOpening())  // the open in flight is finished first
        let channel = FakeChannel()
        connection.opened(channel)
        guard case .closing(let toClose) = connection.state else { throw Unexpected(connection.state) }
        #expect(toClose === channel)
        #expect(connection.channel === channel)
        connection.channelClosed()
        guard case .gone = connection.state else { throw Unexpected(connection.state) }
    }

    @Test func waitingClientsClosedBeforeTheirOpenAreDoneAtOnce() throws {
        for stage in [Stage.held, .queued] {
            let connection = testConnection(stage)
            connection.closeClient()
            guard case .gone = connection.state else { throw Unexpected(connection.state) }
            #expect(!connection.startOpening())  // the open queue skips it
        }
    }

    @Test func aRefusedChannelEndsTheConnection() throws {
        let connection = testConnection(.opening)
        connection.openRefused()
        guard case .gone = connection.state else { throw Unexpected(connection.state) }
        #expect(!connection.isClientOpen)
    }

    @Test func aLostSessionHoldsWaitingClientsAndClosesOpenOnes() throws {
        for stage in [Stage.held, .queued, .opening] {
            let connection = testConnection(stage)
            connection.sentEOFWhileWaiting()
            connection.sessionLost()
            guard case .held(let waiting) = connection.state else { throw Unexpected(connection.state) }
            #expect(waiting.sentEOF)  // what it did while it waited is kept
        }
        for stage in [Stage.open, .closing] {
            let connection = testConnection(stage)
            connection.sessionLost()
            guard case .gone = connection.state else { throw Unexpected(connection.state) }
            #expect(connection.channel == nil)
        }
        let abandoned = testConnection(.opening)
        abandoned.closeClient()
        abandoned.sessionLost()
        guard case .gone = abandoned.state else { throw Unexpected(abandoned.state) }
    }

    @Test func releaseGivesTheHoldDeadlineAndLetsGo() throws {
        let deadline = ContinuousClock.now.advanced(by: .seconds(30))
        let connection = TestConnection(
            id: 2, fd: -1, peer: "127.0.0.1:2", forward: 0, holdDeadline: deadline, bufferSize: 4)
        #expect(connection.holdDeadline == deadline)
        connection.queue()
        #expect(connection.holdDeadline == nil)  // only a held client has one that runs
        #expect(connection.release() == deadline)
        guard case .gone = connection.state else { throw Unexpected(connection.state) }
        connection.closeClient()  // not ours any more: nothing happens
        #expect(!connection.isClientOpen)
    }

    @Test func readinessOfAWaitingClientIsNotForwardingState() {
        let connection = testConnection(.queued)
        connection.clientReady([.input, .output])  // ignored: it has nothing to read into yet
        #expect(connection.startOpening())
        connection.opened(FakeChannel())
        let forwarding = connection.forwarding
        #expect(forwarding?.clientReadable == true && forwarding?.clientWriteBlocked == false)
    }

    @Test func aCompleteConnectionHasSentAndDeliveredTheEnd() {
        let connection = testConnection(.open)
        #expect(connection.forwarding?.isComplete == false)
        connection.update { $0.eofSent = true }
        #expect(connection.forwarding?.isComplete == false)
        connection.update { $0.clientShutdown = true }
        #expect(connection.forwarding?.isComplete == true)
    }

    struct Unexpected: Error, CustomStringConvertible {
        let description: String
        init(_ state: TestConnection.State) { description = "unexpected state \(state)" }
    }
}
