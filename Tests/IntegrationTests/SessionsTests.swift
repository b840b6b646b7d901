import EctoControl
import EctoTestSupport
import Foundation
import Glibc
import Testing
import EctoStatus

/// `sessions = N`: several SSH sessions per tunnel, against a real sshd.
@Suite("Several sessions per tunnel", .serialized)
struct SessionsTests {
    func report(_ fixture: TunnelFixture, _ name: String = "t") throws -> TunnelStatus? {
        try fixture.statusJSON([name]).report?.tunnels.first
    }

    func waitForSessionsUp(_ fixture: TunnelFixture, _ count: Int, timeout: Duration = .seconds(10)) async throws {
        try await waitUntil(
            timeout: timeout, "\(count) sessions up; status: \(String(describing: try? report(fixture)))"
        ) {
            (try? self.report(fixture))?.sessionsUp == count
        }
    }

    /// Opens a connection and proves it with a short echo; the connection stays open.
    func openEchoed(port: UInt16, _ tag: Int) throws -> TCPClient {
        let client = try TCPClient.connect(port: port, ioTimeout: .seconds(10))
        let message = Array("hello \(tag)\n".utf8)
        try client.sendAll(message)
        let reply = try client.receive(exactly: message.count)
        #expect(reply == message, "connection \(tag) echoed \(reply)")
        return client
    }

    func stillEchoes(_ client: TCPClient, _ tag: Int) -> Bool {
        let message = Array("again \(tag)\n".utf8)
        guard (try? client.sendAll(message)) != nil else { return false }
        return (try? client.receive(exactly: message.count)) == message
    }

    @Test(
        "sessions = 3: connections spread evenly; a session killed takes only its share, the tunnel stays up, the session comes back"
    )
    func spreadAndPartialLoss() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        // A lost session waits 0.75-1.5 s before it reconnects: long enough to see the others serve.
        let (echo, port) = try fixture.writeEchoTunnel(extra: [
            "sessions = 3", "backoff_initial = \"1500ms\"", "backoff_max = \"3s\"",
        ])
        defer { echo.stop() }
        try fixture.startDaemon()
        try await waitForSessionsUp(fixture, 3)
        #expect(fixture.server.sessionProcesses.count == 3, "one SSH connection per session")
        let table = try fixture.runCLI(["status"])
        #expect(table.stdout.contains("up 3/3"), "the table shows the sessions: \(table.stdout)")

        // One after the other, so each goes to the least busy session: two each.
        let clients = try await offload { try (0..<6).map { try openEchoed(port: port, $0) } }
        defer { for client in clients { client.close() } }
        #expect(try report(fixture)?.connections == 6)

        // Kill one session's sshd (its whole process subtree): its connections end, no others.
        let victim = try #require(fixture.server.sessionProcesses.dropFirst().first)
        let doomed = [victim] + ProcessTree.descendants(of: victim)
        let events = try await fixture.watchEvents()
        defer { events.close() }
        for pid in doomed { kill(pid, SIGKILL) }
        try await events.waitForSessionsEnded(1)
        let during = try report(fixture)
        #expect(during?.state == .up, "the other sessions keep the tunnel up: \(String(describing: during))")
        let closed = try await offload { clients.filter { $0.waitForClose(timeout: .milliseconds(1500)) }.count }
        #expect(closed == 2, "only the killed session's share ended (\(closed) of 6 did)")
        let alive = try await offload { clients.enumerated().filter { stillEchoes($0.element, $0.offset) }.count }
        #expect(alive == 4, "the other connections still forward")
        // New connections are served meanwhile, and the lost session reconnects.
        #expect(try await offload { try echoRoundTrip(port: port, seed: 31, count: 100_000) })
        try await waitForSessionsUp(fixture, 3)
        #expect(fixture.server.sessionProcesses.count == 3)

        // Parallel transfers over all sessions arrive intact.
        let results = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<6 {
                group.addTask { try echoRoundTrip(port: port, seed: 40 + UInt64(index), count: 200_000) }
            }
            return try await group.reduce(into: [Bool]()) { $0.append($1) }
        }
        #expect(results == Array(repeating: true, count: 6))

        // The first session (it owns the port; the oldest sshd process) is lost: while it waits
        // to reconnect, it keeps accepting and hands every new client to the others.
        // A session that carried traffic reconnects at once, so sshd's listener is stopped
        // (SIGSTOP: new connections wait in its backlog, the other sessions' processes run on)
        // to keep the first session away while the others serve.
        let primary = try #require(fixture.server.sessionProcesses.first)
        let listener = try #require(fixture.server.pid)
        kill(listener, SIGSTOP)
        defer { kill(listener, SIGCONT) }
        let primaryEvents = try await fixture.watchEvents()
        defer { primaryEvents.close() }
        for pid in [primary] + ProcessTree.descendants(of: primary) { kill(pid, SIGKILL) }
        try await primaryEvents.waitForSessionsEnded(1)
        let served = try await offload {
            (0..<5).filter {
                (try? echoRoundTrip(port: port, seed: 60 + UInt64($0), count: 10_000, timeout: .seconds(5))) == true
            }.count
        }
        let meanwhile = try report(fixture)
        #expect(served == 5, "new connections are served by the other sessions")
        #expect(meanwhile?.state == .up)
        // Served while the first session was still away (it waits ≥ 0.75 s), not held for it.
        #expect(
            meanwhile?.sessionsUp == 2, "served before the first session came back: \(String(describing: meanwhile))")
        kill(listener, SIGCONT)
        try await waitForSessionsUp(fixture, 3)
    }

    @Test("a reload from 3 sessions to 2: open connections finish on the old sessions, new ones go to the new")
    func reloadChangesTheSessionCount() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let echo = try EchoServer()
        defer { echo.stop() }
        let port = try FreePort.probe()
        let config = fixture.tunnel(localPort: port, remotePort: echo.port, extra: ["sessions = 3"])
        try fixture.writeConfig(config)
        try fixture.startDaemon()
        try await waitForSessionsUp(fixture, 3)
        let clients = try await offload { try (0..<3).map { try openEchoed(port: port, $0) } }

        try fixture.writeConfig(config.replacingOccurrences(of: "sessions = 3", with: "sessions = 2"))
        let reload = try fixture.runCLI(["reload"])
        #expect(reload.status == 0, "\(reload)")
        try await waitForSessionsUp(fixture, 2)
        let now = try #require(try report(fixture))
        #expect(now.sessions == 2)
        #expect(
            now.draining.count == 1 && now.draining.first?.connections == 3, "the old sessions drain: \(now.draining)")
        #expect(fixture.server.sessionProcesses.count == 5, "3 old sessions draining + 2 new")
        let alive = try await offload { clients.enumerated().filter { stillEchoes($0.element, $0.offset) }.count }
        #expect(alive == 3, "open connections keep their old sessions")
        #expect(try await offload { try echoRoundTrip(port: port, seed: 51, count: 100_000) })

        for client in clients { client.close() }
        try await waitUntil(timeout: .seconds(10), "the old sessions end once their connections closed") {
            fixture.server.sessionProcesses.count == 2
        }
        #expect(try report(fixture)?.draining.isEmpty == true)
    }

    @Test("a key the server refuses with sessions = 3: only the first session tries (3 attempts), then failed")
    func onlyThePrimaryMeetsAuthenticationFailures() async throws {
        let fixture = try TunnelFixture(authorize: false)
        defer { fixture.cleanup() }
        try fixture.writeConfig(fixture.tunnel(localPort: try FreePort.probe(), remotePort: 9, extra: ["sessions = 3"]))
        try fixture.startDaemon()
        try await fixture.waitForState(.failed)
        try await Task.sleep(for: .seconds(1))
        let log = fixture.daemonLog
        #expect(
            log.components(separatedBy: "connection attempt failed").count - 1 == 3,
            "three tries in all, not nine: \(log)")
        #expect(!log.contains("tunnel.session=2/3] connection attempt"), "the other sessions never tried")
        #expect(try report(fixture)?.state == .failed)
    }
}
