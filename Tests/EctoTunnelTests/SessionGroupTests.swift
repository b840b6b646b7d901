import Foundation
import Testing

@testable import EctoTunnel
import EctoStatus

@Suite struct SessionGroupTests {
    typealias Lane = SessionGroup.Lane

    @Test func picksTheLeastBusyLaneThatIsUp() {
        let lanes = [
            Lane(up: true, connections: 3), Lane(up: true, connections: 1), Lane(up: false, connections: 0),
            Lane(up: true, connections: 2),
        ]
        #expect(SessionGroup.pick(lanes, preferring: 0) == 1)
        #expect(SessionGroup.pick(lanes, preferring: 3) == 1, "a preference only breaks ties")
    }

    @Test func tiesGoToThePreferredLaneThenTheLowest() {
        let even = [Lane(up: true, connections: 2), Lane(up: true, connections: 2), Lane(up: true, connections: 2)]
        #expect(SessionGroup.pick(even, preferring: 0) == 0, "a lone client stays on the accepting lane: no hop")
        #expect(SessionGroup.pick(even, preferring: 2) == 2)
        #expect(SessionGroup.pick(even, preferring: 7) == 0)
    }

    @Test func noLaneUpMeansNoChoice() {
        #expect(SessionGroup.pick([Lane(), Lane()], preferring: 0) == nil)
        #expect(
            SessionGroup.pick([Lane(up: false, connections: 0), Lane(up: true, connections: 9)], preferring: 0) == 1)
    }

    @Test func assignmentsSpreadABurstBeforeTheLanesReport() {
        let group = SessionGroup(count: 3)
        for lane in 0..<3 { group.report(lane: lane, up: true, connections: 0) }
        let chosen = (0..<9).compactMap { _ in group.assign(preferring: 0) }
        #expect(chosen == [0, 1, 2, 0, 1, 2, 0, 1, 2])
        // A lane that goes down gets nothing more.
        group.report(lane: 1, up: false, connections: 0)
        #expect((0..<4).compactMap { _ in group.assign(preferring: 0) } == [0, 2, 0, 2])
    }

    @Test func reportSaysWhenALaneComesUp() {
        let group = SessionGroup(count: 2)
        #expect(!group.primaryUp)
        #expect(group.report(lane: 0, up: true, connections: 0))
        #expect(!group.report(lane: 0, up: true, connections: 5), "already up")
        #expect(group.primaryUp)
        #expect(!group.report(lane: 0, up: false, connections: 0))
        #expect(!group.primaryUp)
    }

    @Test func combinedStatusAddsSessionsUp() {
        func status(_ state: TunnelState, connections: Int, since: TimeInterval, reconnects: Int = 0) -> TunnelStatus {
            var s = TunnelStatus(
                name: "t", state: state, enabled: true, target: "a@b:22", local: "127.0.0.1:1", remote: "127.0.0.1:2")
            s.connections = connections
            s.bytesIn = UInt64(connections * 10)
            s.since = Date(timeIntervalSince1970: since)
            s.reconnects = reconnects
            s.lastError = state == .up ? nil : "reset"
            return s
        }
        // The primary is in backoff, two others are up: the tunnel is up since the earliest of them.
        let combined = Tunnel.combine([
            status(.backoff, connections: 0, since: 50), status(.up, connections: 2, since: 20, reconnects: 1),
            status(.up, connections: 3, since: 10),
        ])
        #expect(combined.state == .up)
        #expect(combined.since == Date(timeIntervalSince1970: 10))
        #expect(combined.connections == 5 && combined.bytesIn == 50 && combined.reconnects == 1)
        #expect(combined.sessions == 3 && combined.sessionsUp == 2)
        // None up: the primary's state stands (the others wait for it).
        let failed = Tunnel.combine([
            status(.failed, connections: 0, since: 5), status(.connecting, connections: 0, since: 1),
        ])
        #expect(failed.state == .failed && failed.since == Date(timeIntervalSince1970: 5) && failed.sessionsUp == 0)
        let single = Tunnel.combine([status(.up, connections: 1, since: 1)])
        #expect(single.sessions == 1 && single.sessionsUp == 1)
    }
}
