import EctoTestSupport
import Foundation
import Testing

/// Keepalives of an idle session (no client connected) against a real sshd: replies left unread
/// in the socket still count as signs of life, and what the server itself asks is answered at
/// once (`IdleReplies`, docs/performance.md "Idle wake-ups").
@Suite struct KeepaliveTests {
    /// sshd logs, at DEBUG, each global request it gets (our keepalives) and each channel open
    /// (the drain opens that take its replies in). Nothing in the daemon's status counts either,
    /// so the server's log is where they are counted.
    static let debugLog = ["LogLevel DEBUG1"]

    /// How the session reaches sshd: straight over TCP, through a jump host (the session runs
    /// over the chain's socketpair), or over a proxy command's stdio.
    enum Route: String, CaseIterable, CustomTestStringConvertible {
        case direct, jump, proxyCommand
        var testDescription: String { rawValue }
    }

    @Test(
        "idle, keepalive 2 s × 2: replies left in the socket keep the session alive, and most are never drained",
        arguments: Route.allCases)
    func repliesLeftUnreadAreSignsOfLife(route: Route) async throws {
        let fixture = try TunnelFixture(sshdOptions: Self.debugLog)
        defer { fixture.cleanup() }
        var extra = ["keepalive_interval = \"2s\"", "keepalive_count_max = 2"]
        var bastion: SSHServer?
        switch route {
        case .direct: break
        case .jump:
            let server = try JumpTests.bastion(fixture)
            bastion = server
            extra.append("jump = [\"127.0.0.1:\(server.port)\"]")
        case .proxyCommand: extra.append("proxy_command = \"socat - TCP:%h:%p\"")
        }
        defer { bastion?.cleanup() }
        let (echo, localPort) = try await fixture.startEchoTunnel(extra: extra)
        defer { echo.stop() }
        let events = try await fixture.watchEvents()
        defer { events.close() }
        let before = fixture.server.log()
        let keepalivesBefore = before.occurrences(of: "rtype keepalive@")
        let drainsBefore = before.occurrences(of: "ctype drain@ecto-tunnel")

        // 6 keepalive rounds (libssh2's shortest interval) with no client: the dead-peer limit
        // (4 s) passes three times over.
        try await Task.sleep(for: .seconds(13))

        let log = fixture.server.log()
        let keepalives = log.occurrences(of: "rtype keepalive@") - keepalivesBefore
        let drains = log.occurrences(of: "ctype drain@ecto-tunnel") - drainsBefore
        #expect(events.sessionsEnded() == 0, "the session was replaced: \(fixture.daemonLog)")
        #expect(keepalives >= 5, "keepalives sent in 13 s at 2 s: \(keepalives)")
        // One drain per `IdleReplies.maxDeferred` + 1 replies at most (the one that drains);
        // without the rule, one per reply.
        #expect(
            drains * 2 <= keepalives, "\(drains) drain opens for \(keepalives) keepalives: the replies were not left")
        #expect(drains >= 1, "the replies must be taken in now and then: \(drains) drains in \(keepalives) rounds")
        print("[figure] idle 13 s, keepalive 2 s, \(route): \(keepalives) keepalives, \(drains) drain opens")
        #expect(try await offload { try echoRoundTrip(port: localPort, seed: 171, count: 10_000) })
        #expect(events.sessionsEstablished() == 0, "no reconnect")
    }

    @Test("the server's own keepalives (ClientAliveInterval 1, CountMax 1) are answered at once by an idle session")
    func serverKeepalivesAreAnswered() async throws {
        let fixture = try TunnelFixture(
            sshdOptions: Self.debugLog + ["ClientAliveInterval 1", "ClientAliveCountMax 1"])
        defer { fixture.cleanup() }
        // Our keepalive is far apart: only answers keep sshd from ending the session after 2 s.
        let (echo, localPort) = try await fixture.startEchoTunnel(
            extra: ["keepalive_interval = \"10s\"", "keepalive_count_max = 3"])
        defer { echo.stop() }
        let events = try await fixture.watchEvents()
        defer { events.close() }
        try await Task.sleep(for: .seconds(6))
        #expect(events.sessionsEnded() == 0, "sshd ended the idle session: \(fixture.server.log())")
        #expect(!fixture.server.log().contains("Timeout, client not responding"), "\(fixture.server.log())")
        #expect(try await offload { try echoRoundTrip(port: localPort, seed: 172, count: 10_000) })
    }
}
