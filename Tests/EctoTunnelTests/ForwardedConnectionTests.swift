import EctoConfig
import EctoPlatform
import Glibc
import Testing

@testable import EctoTunnel

/// A stand-in for a libssh2 channel: the connection's state logic never calls it.
final class FakeChannel {}

typealias TestState = ConnectionState

/// Where a test's connection state is driven to, by the events that lead there (held → queued →
/// opening → open → closing), as the driver would.
enum Stage { case held, queued, opening, open, closing }

func testState(_ stage: Stage = .open) -> TestState {
    var state = TestState.held(.init())
    if stage == .held { return state }
    state.queue()
    if stage == .queued { return state }
    let started = state.startOpening()
    #expect(started)
    if stage == .opening { return state }
    state.opened(FakeChannel())
    if stage == .open { return state }
    state.clientClosed()
    return state
}

/// The life of a connection, event by event, without a session.
@Suite struct ConnectionStateTests {
    @Test func aClientThatLeavesWhileItsChannelOpensHasTheChannelClosed() throws {
        var state = testState(.opening)
        state.clientClosed()
        guard case .abandoned = state else { throw Unexpected(state) }
        #expect(!state.isClientOpen)
        let started = state.startOpening()
        #expect(started)  // the open in flight is finished first
        let channel = FakeChannel()
        state.opened(channel)
        guard case .closing(let toClose) = state else { throw Unexpected(state) }
        #expect(ObjectIdentifier(toClose) == ObjectIdentifier(channel))
        #expect(state.channel.map(ObjectIdentifier.init) == ObjectIdentifier(channel))
        state.channelClosed()
        #expect(state.isGone)
    }

    @Test func waitingClientsClosedBeforeTheirOpenAreDoneAtOnce() {
        for stage in [Stage.held, .queued] {
            var state = testState(stage)
            state.clientClosed()
            #expect(state.isGone)
            let started = state.startOpening()
            #expect(!started)  // the open queue skips it
        }
    }

    @Test func anOpenConnectionClosedKeepsItsChannelToClose() throws {
        var state = testState(.open)
        let channel = try #require(state.channel)
        state.clientClosed()
        guard case .closing(let toClose) = state else { throw Unexpected(state) }
        #expect(ObjectIdentifier(toClose) == ObjectIdentifier(channel))
        state.clientClosed()  // a second close changes nothing
        guard case .closing = state else { throw Unexpected(state) }
        let started = state.startOpening()
        #expect(!started)
    }

    @Test func aLostSessionHoldsWaitingClientsAndEndsTheRest() throws {
        for stage in [Stage.held, .queued, .opening] {
            var state = testState(stage)
            state.sentEOFWhileWaiting()
            state.sessionLost()
            guard case .held(let waiting) = state else { throw Unexpected(state) }
            #expect(waiting.sentEOF)  // what it did while it waited is kept
        }
        for stage in [Stage.open, .closing] {
            var state = testState(stage)
            state.sessionLost()
            #expect(state.isGone)
            #expect(state.channel == nil)
        }
        var abandoned = testState(.opening)
        abandoned.clientClosed()
        abandoned.sessionLost()
        #expect(abandoned.isGone)
    }

    @Test func releaseGivesTheHoldDeadline() {
        let deadline = BootInstant.now.advanced(by: .seconds(30))
        let connection = ForwardedConnection(
            id: 3, fd: -1, peer: Endpoint(host: "127.0.0.1", port: 3), forward: 0, holdDeadline: deadline,
            bufferSize: 4)
        #expect(connection.holdDeadline == deadline)
        #expect(connection.isWaitingForTurn)
        connection.queue()
        #expect(connection.holdDeadline == nil)  // only a held client has one that runs
        #expect(connection.isWaitingForTurn)
        #expect(connection.release() == deadline)  // it goes with the client
        #expect(connection.state.isGone)
        #expect(!testState(.opening).isWaitingForTurn)  // its open is in flight: not handed over
    }

    @Test func aNewChannelStartsReadableAndNotBlocked() {
        var state = testState(.queued)
        state.clientReady([.input, .output])  // ignored: nothing to read into yet
        let started = state.startOpening()
        #expect(started)
        state.opened(FakeChannel())
        #expect(state.forwarding?.clientReadable == true)
        #expect(state.forwarding?.clientWriteBlocked == false)
    }

    /// The client socket is registered once, edge-triggered: the flags remember each readiness
    /// until a call would block.
    @Test func readinessFlagsFollowTheEdges() {
        var state = testState(.open)
        state.update {
            $0.clientReadable = false  // a read would block
            $0.clientWriteBlocked = true  // a write would block
        }
        state.clientReady(.output)  // room again
        #expect(state.forwarding?.clientWriteBlocked == false)
        #expect(state.forwarding?.clientReadable == false)
        state.clientReady(.input)
        #expect(state.forwarding?.clientReadable == true)
        state.update {
            $0.clientReadable = false
            $0.clientWriteBlocked = true
        }
        state.clientReady(.readHangUp)  // the end of its data alone: nothing to read or write yet
        #expect(state.forwarding?.clientReadable == false)
        state.clientReady(.hangUp)  // gone: a read and a write find out
        #expect(state.forwarding?.clientReadable == true)
        #expect(state.forwarding?.clientWriteBlocked == false)
        state.update { $0.clientReadable = false }
        state.clientReady(.error)
        #expect(state.forwarding?.clientReadable == true)
    }

    @Test func aCompleteConnectionHasSentAndDeliveredTheEnd() {
        var state = testState(.open)
        #expect(state.forwarding?.isComplete == false)
        state.update { $0.eofSent = true }
        #expect(state.forwarding?.isComplete == false)
        state.update { $0.clientShutdown = true }
        #expect(state.forwarding?.isComplete == true)
    }

    @Test func countersFollowStateAndClose() {
        let counters = ConnectionCounters(forwards: 2)
        let held = ForwardedConnection(
            id: 1, fd: -1, peer: Endpoint(host: "127.0.0.1", port: 1), forward: 0, holdDeadline: .now, bufferSize: 4)
        let opening = ForwardedConnection(
            id: 2, fd: -1, peer: Endpoint(host: "127.0.0.1", port: 2), forward: 1, holdDeadline: .now, bufferSize: 4)
        held.counters = counters
        opening.counters = counters
        #expect(counters.openClients == 2 && counters.held == 2)
        #expect(counters.openByForward == [1, 1])
        held.queue()
        #expect(counters.held == 1)
        let started = held.startOpening()
        #expect(started)
        held.sessionLost()  // the session died before its channel opened: held again
        #expect(held.isHeld)
        #expect(counters.openClients == 2 && counters.held == 2)
        _ = held.release()  // handed over
        #expect(counters.openClients == 1 && counters.held == 1)
        #expect(counters.openByForward == [0, 1])
        opening.queue()
        let openingStarted = opening.startOpening()
        #expect(openingStarted)
        opening.closeClient()  // abandoned: its open finishes first, but the client is not open
        opening.closeClient()  // a second close changes nothing
        #expect(counters.openClients == 0 && counters.held == 0)
        opening.openRefused()
        #expect(counters.openClients == 0 && counters.held == 0)
        #expect(counters.openByForward == [0, 0])
    }

    struct Unexpected: Error, CustomStringConvertible {
        let description: String
        init(_ state: TestState) { description = "unexpected state \(state)" }
    }
}

/// Which connections a forwarding pass visits: settled ones wait for epoll or libssh2.
@Suite struct PassSchedulingTests {
    private func settled() -> TestState {
        var state = testState(.open)
        state.update {
            $0.clientReadable = false
            $0.channelQuiet = true
        }
        return state
    }

    private func visits(_ state: TestState, upEmpty: Bool = true, downEmpty: Bool = true) -> Bool {
        state.needsVisit(upEmpty: upEmpty, downEmpty: downEmpty)
    }

    @Test func anIdleConnectionIsSettled() {
        #expect(!visits(settled()))
    }

    @Test func aNewChannelIsVisited() {
        // Not known quiet, and the client may have sent while it waited.
        #expect(visits(testState(.open)))
    }

    @Test func aChannelNotKnownQuietIsReadAgain() {
        var state = settled()
        state.update { $0.channelQuiet = false }  // its last read returned data or filled the buffer
        #expect(visits(state))
        state.update {
            $0.remoteEOF = true  // nothing more will come from it
            $0.clientShutdown = true
        }
        #expect(!visits(state))
    }

    @Test func bufferedOrPendingWorkKeepsItScheduled() {
        var readable = settled()
        readable.clientReady(.input)
        #expect(visits(readable))

        // Waiting for the peer's window or for the channel write.
        #expect(visits(settled(), upEmpty: false))

        var toDeliver = settled()
        #expect(visits(toDeliver, downEmpty: false))
        toDeliver.update { $0.clientWriteBlocked = true }  // epoll reports when the client can take more
        #expect(!visits(toDeliver, downEmpty: false))

        var eofToSend = settled()
        eofToSend.update { $0.clientEOF = true }
        #expect(visits(eofToSend))
        eofToSend.update { $0.eofSent = true }
        #expect(!visits(eofToSend))

        var shutdownToPass = settled()
        shutdownToPass.update { $0.remoteEOF = true }
        #expect(visits(shutdownToPass))
    }

    @Test func statesOutsideForwarding() {
        var closing = testState(.closing)
        #expect(visits(closing))  // until its channel is freed
        closing.channelClosed()
        #expect(!visits(closing))
        for stage in [Stage.held, .queued, .opening] {
            #expect(!visits(testState(stage)))  // the open queue serves these
        }
    }
}

/// Listeners, the SSH socket and relays are level-triggered and re-registered only on a change.
@Suite struct EpollInterestTests {
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
}

/// The kernel side of the client registration (`ForwardedConnection.events`: input, output and
/// the end of data, edge-triggered, registered once): each readiness is reported once, when it
/// arises, so a client the driver has no use for yet cannot wake the loop over and over.
@Suite struct EdgeTriggeredClientTests {
    /// A non-blocking socket pair whose first end is registered as a client is (token 7).
    private func registeredPair() throws -> (pair: [Int32], poller: Epoll) {
        var pair: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue), 0, &pair) == 0)
        let poller = try Epoll()
        try poller.apply(.add(ForwardedConnection.events), fd: pair[0], token: 7)
        return (pair, poller)
    }

    @Test func eachReadinessIsReportedOnceWhenItArises() throws {
        let (pair, poller) = try registeredPair()
        defer { Glibc.close(pair[0]) }
        // Room to write, at once; then nothing more until something changes.
        let first = try poller.wait(timeoutMilliseconds: 0)
        #expect(first.count == 1 && first[0].token == 7 && first[0].readiness == .output)
        #expect(try poller.wait(timeoutMilliseconds: 0).isEmpty)
        // Data: once, though it stays unread.
        #expect(Glibc.write(pair[1], "x", 1) == 1)
        let data = try poller.wait(timeoutMilliseconds: 0)
        #expect(data.count == 1 && data[0].readiness.contains(.input))
        #expect(try poller.wait(timeoutMilliseconds: 0).isEmpty)
        // More data: a new edge.
        #expect(Glibc.write(pair[1], "y", 1) == 1)
        #expect(try poller.wait(timeoutMilliseconds: 0).count == 1)
        // The end of its data: once.
        #expect(shutdown(pair[1], Int32(SHUT_WR)) == 0)
        let end = try poller.wait(timeoutMilliseconds: 0)
        #expect(end.count == 1 && end[0].readiness.contains(.readHangUp))
        #expect(try poller.wait(timeoutMilliseconds: 0).isEmpty)
        // Gone: once.
        Glibc.close(pair[1])
        let gone = try poller.wait(timeoutMilliseconds: 0)
        #expect(gone.count == 1 && gone[0].readiness.contains(.hangUp))
        #expect(try poller.wait(timeoutMilliseconds: 0).isEmpty)
    }

    @Test func aFullSocketReportsRoomWhenItDrains() throws {
        let (pair, poller) = try registeredPair()
        defer {
            Glibc.close(pair[0])
            Glibc.close(pair[1])
        }
        _ = try poller.wait(timeoutMilliseconds: 0)  // the first report of room
        var chunk = [UInt8](repeating: 0, count: 65536)
        while Glibc.write(pair[0], &chunk, chunk.count) > 0 {}  // until it would block
        #expect(errno == EAGAIN)
        #expect(try poller.wait(timeoutMilliseconds: 0).isEmpty)
        while Glibc.read(pair[1], &chunk, chunk.count) > 0 {}  // the peer takes it all
        let room = try poller.wait(timeoutMilliseconds: 100)
        #expect(room.count == 1 && room[0].readiness.contains(.output))
    }
}

/// A client's address from accept: numbers kept apart for the channel open, joined for logs.
@Suite struct PeerEndpointTests {
    /// `address` (a `sockaddr_in` or `sockaddr_in6`) as accept fills a `sockaddr_storage`.
    private func storage<Address>(_ address: Address) -> sockaddr_storage {
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { $0.storeBytes(of: address, as: Address.self) }
        return storage
    }

    @Test func ipv4() {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(40_123).bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let peer = Endpoint(storage(address))
        #expect(peer == Endpoint(host: "127.0.0.1", port: 40_123))
        #expect(peer.description == "127.0.0.1:40123")
    }

    @Test func ipv6() {
        var address = sockaddr_in6()
        address.sin6_family = sa_family_t(AF_INET6)
        address.sin6_port = UInt16(8).bigEndian
        address.sin6_addr = in6addr_loopback
        let peer = Endpoint(storage(address))
        #expect(peer == Endpoint(host: "::1", port: 8))
        #expect(peer.description == "[::1]:8")
    }

    @Test func anotherFamilyIsUnknown() {
        var storage = sockaddr_storage()
        storage.ss_family = sa_family_t(AF_UNIX)
        #expect(Endpoint(storage).host == "?")
    }
}
