import EctoControl
import EctoStatus
import EctoTestSupport
import Foundation
import Testing

/// Several forwards in one tunnel (`forwards = [...]`): one SSH session, one driver, a listener each.
@Suite("Several forwards in one session", .serialized)
struct MultiForwardTests {
    /// The fixture's tunnel table with `forwards` instead of `local`/`remote`.
    func table(_ fixture: TunnelFixture, _ name: String = "t", forwards: [String], extra: [String] = []) -> String {
        let base = fixture.tunnel(name, localPort: 1, remotePort: 1, extra: extra)
            .split(separator: "\n").filter { !$0.hasPrefix("local =") && !$0.hasPrefix("remote =") }
        let list = forwards.map { "\"\($0)\"" }.joined(separator: ", ")
        return (base + ["forwards = [\(list)]"]).joined(separator: "\n") + "\n"
    }

    func report(_ fixture: TunnelFixture, _ name: String = "t") throws -> TunnelStatus {
        let report = try #require(fixture.statusJSON([name]).report, "no status\n\(fixture.daemonLog)")
        return try #require(report.tunnels.first)
    }

    func logins(_ server: SSHServer) -> Int { server.log().components(separatedBy: "Accepted publickey").count - 1 }

    @Test("100 connections spread over 3 forwards, each byte-checked, through one SSH session; status per forward")
    func hundredOverThree() async throws {
        ResourceLimits.raiseOpenFileLimit()
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let echoes = try (0..<3).map { _ in try EchoServer() }
        defer { for echo in echoes { echo.stop() } }
        let ports = try (0..<3).map { _ in try FreePort.probe() }
        let forwards = [
            "\(ports[0]):127.0.0.1:\(echoes[0].port)",
            "127.0.0.1:\(ports[1]):localhost:\(echoes[1].port)",
            "127.0.0.1:\(ports[2]):127.0.0.1:\(echoes[2].port)",
        ]
        try fixture.writeConfig(table(fixture, forwards: forwards))
        #expect(try fixture.runCLI(["check", "--config", fixture.configPath]).status == 0)
        try fixture.startDaemon(arguments: ["--log-level", "info"])
        try await fixture.waitForUp()

        let results = try await withThrowingTaskGroup(of: (Int, Bool).self) { group in
            for index in 0..<100 {
                group.addTask {
                    try await offload {
                        let forward = index % 3
                        let client = try TCPClient.connect(port: ports[forward], ioTimeout: .seconds(30))
                        defer { client.close() }
                        let count = 32 * 1024 + index
                        try client.sendPattern(seed: UInt64(500 + index), count: count)
                        try client.shutdownWrite()
                        return (index, try client.receivePattern(seed: UInt64(500 + index)).isIntact(count: count))
                    }
                }
            }
            var results: [Int: Bool] = [:]
            for try await (index, ok) in group { results[index] = ok }
            return results
        }
        #expect(results.count == 100)
        #expect(results.filter { !$0.value }.isEmpty, "corrupted echoes: \(results.filter { !$0.value }.keys.sorted())")
        #expect(echoes.map(\.connectionsAccepted) == [34, 33, 33], "each forward reached its own remote")
        #expect(logins(fixture.server) == 1, "one SSH session for all three forwards\n\(fixture.server.logTail())")

        // Per forward: bytes each way are exactly what went through it.
        var expected = [UInt64](repeating: 0, count: 3)
        for index in 0..<100 { expected[index % 3] += UInt64(32 * 1024 + index) }
        try await waitUntil(timeout: .seconds(10), "the status to count every byte") {
            let t = try self.report(fixture)
            return t.forwards.map(\.bytesOut) == expected && t.forwards.map(\.bytesIn) == expected && t.connections == 0
        }
        let t = try report(fixture)
        #expect(t.state == .up && t.sessionsUp == 1)
        #expect(t.forwards.map(\.state.rawValue) == ["listening", "listening", "listening"])
        #expect(t.forwards.map(\.local) == ["127.0.0.1:\(ports[0])", "127.0.0.1:\(ports[1])", "127.0.0.1:\(ports[2])"])
        #expect(
            t.forwards.map(\.remote) == [
                "127.0.0.1:\(echoes[0].port)", "localhost:\(echoes[1].port)", "127.0.0.1:\(echoes[2].port)",
            ])
        #expect(
            t.local == t.forwards[0].local && t.remote == t.forwards[0].remote, "local/remote are the first forward's")
        #expect(t.bytesOut == expected.reduce(0, +))

        // The table shows one line per forward.
        let table = try fixture.runCLI(["status", "t"])
        #expect(table.stdout.contains("3 forwards:"), "\(table.stdout)")
        #expect(table.stdout.contains("↳ 127.0.0.1:\(ports[2]) → 127.0.0.1:\(echoes[2].port)"), "\(table.stdout)")
    }

    @Test("a busy port fails only its forward, named with its holder; the other two serve; it listens once freed")
    func busyPortOneOfThree() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let echo = try EchoServer()
        defer { echo.stop() }
        let ports = try (0..<3).map { _ in try FreePort.probe() }
        let squatter = try EchoServer(port: ports[1])  // holds the second forward's port
        try fixture.writeConfig(table(fixture, forwards: ports.map { "\($0):127.0.0.1:\(echo.port)" }))
        try fixture.startDaemon(arguments: ["--log-level", "info"])
        try await fixture.waitForUp()
        #expect(
            fixture.daemonLog.contains(
                "cannot listen on 127.0.0.1:\(ports[1]): address already in use (held by pid \(getpid())"))

        for (seed, port) in [ports[0], ports[2]].enumerated() {
            #expect(try await offload { try echoRoundTrip(port: port, seed: UInt64(seed + 7), count: 20_000) })
        }
        var t = try report(fixture)
        #expect(t.state == .up, "the tunnel serves its other forwards: \(t)")
        #expect(t.forwards.map(\.state.rawValue) == ["listening", "retrying", "listening"])
        #expect(t.forwards[1].lastError?.contains("held by pid \(getpid())") == true, "\(t.forwards[1])")
        #expect(t.lastError?.contains("127.0.0.1:\(ports[1])") == true, "the tunnel names its failing forward: \(t)")
        let table = try fixture.runCLI(["status", "t"])
        #expect(table.status == 0, "up is healthy")
        #expect(table.stdout.contains("(2/3 listening)") && table.stdout.contains("retrying"), "\(table.stdout)")
        #expect(squatter.connectionsAccepted == 0)

        // Freed: the forward's own retry (every 5 s) binds it; the session was never dropped.
        let events = try await fixture.watchEvents()
        squatter.stop()
        try await events.waitForForward(1, .listening, timeout: .seconds(15))
        events.close()
        #expect(fixture.daemonLog.contains("listening again"), "\(fixture.daemonLog)")
        #expect(try await offload { try echoRoundTrip(port: ports[1], seed: 9, count: 20_000) })
        t = try report(fixture)
        #expect(t.forwards.map(\.state.rawValue) == ["listening", "listening", "listening"])
        #expect(t.reconnects == 0)
        #expect(logins(fixture.server) == 1)
    }

    @Test("all forwards busy: backoff (local), as with one forward")
    func allBusy() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let ports = try (0..<2).map { _ in try FreePort.probe() }
        let squatters = try ports.map { try EchoServer(port: $0) }
        defer { for s in squatters { s.stop() } }
        try fixture.writeConfig(table(fixture, forwards: ports.map { "\($0):127.0.0.1:9" }))
        try fixture.startDaemon(arguments: ["--log-level", "info"])
        try await fixture.waitForStatus("t", "forward 1 retrying, its port held") {
            $0.forwards.count == 2 && $0.forwards[1].state == .retrying
                && $0.forwards[1].lastError?.contains("cannot listen on 127.0.0.1:\(ports[1])") == true
        }
        try await waitUntil(timeout: .seconds(5), "backoff (local)") {
            let t = try self.report(fixture)
            return t.state == .backoff && t.retryCause == .local
        }
        let t = try report(fixture)
        #expect(t.lastError?.contains("(and 1 more forward)") == true, "\(t)")
        #expect(t.forwards.map(\.state.rawValue) == ["retrying", "retrying"])
        #expect(logins(fixture.server) == 0, "no session while nothing listens")
    }

    @Test("a reload that adds a forward keeps the unchanged listeners open: no refused connection during the switch")
    func reloadKeepsListeners() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let echo = try EchoServer()
        defer { echo.stop() }
        let ports = try (0..<3).map { _ in try FreePort.probe() }
        let two = ports[0..<2].map { "\($0):127.0.0.1:\(echo.port)" }
        try fixture.writeConfig(table(fixture, forwards: two))
        try fixture.startDaemon(arguments: ["--log-level", "debug"])
        try await fixture.waitForUp()

        // Clients hammer the two forwards across the reload.
        let stop = Shared(false)
        let failures = Shared<[String]>([])
        let rounds = Shared(0)
        let hammer = Task.detached {
            var seed: UInt64 = 100
            while !stop.withLock({ $0 }) {
                for port in ports[0..<2] {
                    seed += 1
                    do {
                        if !(try echoRoundTrip(port: port, seed: seed, count: 2000, timeout: .seconds(20))) {
                            failures.withLock { $0.append("\(port): corrupted") }
                        }
                    } catch {
                        failures.withLock { $0.append("\(port): \(error)") }
                    }
                    rounds.withLock { $0 += 1 }
                }
            }
        }
        try await waitUntil(timeout: .seconds(10), "some rounds before the reload") { rounds.withLock { $0 } >= 20 }
        try fixture.writeConfig(table(fixture, forwards: two + ["\(ports[2]):127.0.0.1:\(echo.port)"]))
        let reload = try fixture.runCLI(["reload"])
        #expect(reload.status == 0, "\(reload)\n\(fixture.daemonLog)")
        try await waitUntil(timeout: .seconds(10), "the new generation to serve") {
            (try? self.report(fixture).forwards.count) == 3
        }
        let atSwitch = rounds.withLock { $0 }
        try await waitUntil(timeout: .seconds(10), "rounds after the reload") {
            rounds.withLock { $0 } >= atSwitch + 20
        }
        stop.withLock { $0 = true }
        _ = await hammer.value
        #expect(failures.withLock { $0 }.isEmpty, "refused or broken during the switch: \(failures.withLock { $0 })")
        #expect(
            fixture.daemonLog.components(separatedBy: "took over the listener").count - 1 == 2,
            "both unchanged listeners were handed over")
        #expect(try await offload { try echoRoundTrip(port: ports[2], seed: 3, count: 5000) }, "the new forward serves")
        let t = try report(fixture)
        #expect(t.forwards.map(\.state.rawValue) == ["listening", "listening", "listening"])
    }

    @Test("sessions = 2 with two forwards: the primary owns both listeners, clients of both forwards are served")
    func lanesWithForwards() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let echoes = try (0..<2).map { _ in try EchoServer() }
        defer { for echo in echoes { echo.stop() } }
        let ports = try (0..<2).map { _ in try FreePort.probe() }
        try fixture.writeConfig(
            table(
                fixture, forwards: (0..<2).map { "\(ports[$0]):127.0.0.1:\(echoes[$0].port)" }, extra: ["sessions = 2"])
        )
        try fixture.startDaemon(arguments: ["--log-level", "info"])
        try await fixture.waitForStatus("t", "both sessions up") { $0.sessionsUp == 2 }
        let results = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<20 {
                group.addTask {
                    try await offload { try echoRoundTrip(port: ports[index % 2], seed: UInt64(index), count: 8000) }
                }
            }
            var all: [Bool] = []
            for try await ok in group { all.append(ok) }
            return all
        }
        #expect(results.count == 20 && results.allSatisfy { $0 })
        #expect(echoes.map(\.connectionsAccepted) == [10, 10])
        try await waitUntil(timeout: .seconds(10), "per-forward bytes added over both sessions") {
            let t = try self.report(fixture)
            return t.forwards.map(\.bytesOut) == [80_000, 80_000] && t.sessionsUp == 2
        }
    }
}

/// A value shared between a test and its background task.
final class Shared<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
