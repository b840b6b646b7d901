import EctoTestSupport
import Foundation
import Testing

/// Sends `count` pattern bytes of `seed` through `port`, half-closes, and checks the echo.
func echoRoundTrip(port: UInt16, seed: UInt64, count: Int, timeout: Duration = .seconds(30)) throws -> Bool {
    let client = try TCPClient.connect(port: port, ioTimeout: timeout)
    defer { client.close() }
    try client.sendPattern(seed: seed, count: count)
    try client.shutdownWrite()
    return try client.receivePattern(seed: seed).isIntact(count: count)
}

@Suite("Forwarding through a real sshd", .serialized)
struct ForwardingTests {
    @Test("64 MiB of pattern bytes each way arrive intact")
    func integrityEachWay() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let count = 64 << 20
        let sink = try SinkServer(seed: 11)
        defer { sink.stop() }  // keeps it alive to the end of the test
        let source = try SourceServer(seed: 12, byteCount: count)
        defer { source.stop() }  // keeps it alive to the end of the test
        let upPort = try FreePort.probe()
        let downPort = try FreePort.probe()
        try fixture.writeConfig(
            fixture.tunnel("up", localPort: upPort, remotePort: sink.port)
                + fixture.tunnel("down", localPort: downPort, remotePort: source.port))
        try fixture.startDaemon(arguments: ["--log-level", "info"])
        try await fixture.waitForUp(["up", "down"])

        let (upCheck, upTime) = try await offload {
            let client = try TCPClient.connect(port: upPort, ioTimeout: .seconds(60))
            let start = ContinuousClock.now
            try client.sendPattern(seed: 11, count: count)
            try client.shutdownWrite()
            let verdict = try client.receiveVerdict()
            return (verdict, start.duration(to: .now))
        }
        #expect(upCheck.isIntact(count: count), "client → remote: \(upCheck)")

        let (downCheck, downTime) = try await offload {
            let client = try TCPClient.connect(port: downPort, ioTimeout: .seconds(60))
            let start = ContinuousClock.now
            let check = try client.receivePattern(seed: 12)
            return (check, start.duration(to: .now))
        }
        #expect(downCheck.isIntact(count: count), "remote → client: \(downCheck)")
        print(
            "[figure] 64 MiB client→remote in \(upTime) (\(mbPerSecond(count, upTime))); remote→client in \(downTime) (\(mbPerSecond(count, downTime))) [debug build]"
        )
    }

    @Test("200 concurrent connections, each echoing its own data")
    func concurrentEchoes() async throws {
        ResourceLimits.raiseOpenFileLimit()
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let (echo, port) = try await fixture.startEchoTunnel(arguments: ["--log-level", "info"])
        defer { echo.stop() }  // keeps it alive to the end of the test

        let results = try await withThrowingTaskGroup(of: (Int, Bool).self) { group in
            for index in 0..<200 {
                group.addTask {
                    try await offload {
                        (index, try echoRoundTrip(port: port, seed: UInt64(1000 + index), count: 48 * 1024 + index))
                    }
                }
            }
            var results: [Int: Bool] = [:]
            for try await (index, ok) in group { results[index] = ok }
            return results
        }
        let failed = results.filter { !$0.value }.map(\.key).sorted()
        #expect(results.count == 200)
        #expect(failed.isEmpty, "connections with corrupted echoes: \(failed)")
        #expect(echo.connectionsAccepted == 200)
    }

    @Test("half-close: the client shuts down its write side and still gets the whole reply")
    func halfClose() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let (echo, port) = try await fixture.startEchoTunnel()
        defer { echo.stop() }  // keeps it alive to the end of the test
        let (received, sawEOF) = try await offload { () -> ([UInt8], Bool) in
            let client = try TCPClient.connect(port: port, ioTimeout: .seconds(20))
            defer { client.close() }
            let payload = PatternGenerator.bytes(seed: 5, count: 3 << 20)
            try client.sendAll(payload)
            try client.shutdownWrite()
            // The echo server finishes echoing after our EOF, then shuts down its side: the reply
            // must arrive complete and then end with EOF (channel EOF → shutdown on our socket).
            let reply = try client.receiveAll()
            return (reply, true)
        }
        #expect(received == PatternGenerator.bytes(seed: 5, count: 3 << 20))
        #expect(sawEOF)
    }

    @Test("500 clients that leave while their channel opens: every open is finished and closed, the session survives")
    func clientsLeavingDuringOpen() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let (echo, localPort) = try await fixture.startEchoTunnel(arguments: ["--log-level", "info"])
        defer { echo.stop() }
        // Connect, send a byte, reset at once: most leave while their channel open is in flight,
        // some before it starts, some after it completed.
        try await offload {
            for index in 0..<500 {
                let client = try TCPClient.connect(port: localPort)
                if index % 2 == 0 { try? client.sendAll("x") }
                client.abort()
                client.close()
            }
        }
        #expect(try await offload { try echoRoundTrip(port: localPort, seed: 78, count: 100_000) })
        let log = fixture.daemonLog
        #expect(!log.contains("session lost"), "the session must survive clients leaving mid-open: \(log)")
        #expect(log.components(separatedBy: "] connected").count - 1 == 1, "no reconnect")
        // Every abandoned channel was closed: nothing is left open on the daemon's side.
        try await waitUntil(timeout: .seconds(10), "no connections left open") {
            (try? fixture.runCLI(["status", "--json"]))?.stdout.contains("\"connections\":0,") == true
        }
    }

    @Test("a refused channel closes only that connection; the tunnel stays up")
    func remoteRefused() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let deadPort = try FreePort.probe()  // nothing listens there (yet)
        let localPort = try FreePort.probe()
        try fixture.writeConfig(fixture.tunnel(localPort: localPort, remotePort: deadPort))
        try fixture.startDaemon()
        try await fixture.waitForUp()

        let closed = try await offload { () -> Bool in
            let client = try TCPClient.connect(port: localPort)
            defer { client.close() }
            try? client.sendAll("hello?")
            return client.waitForClose(timeout: .seconds(5))
        }
        #expect(closed, "the client connection must be closed when the server refuses the channel")
        // The log, not an event: a refused channel changes no status field (only the metric
        // ecto_tunnel_channel_refusals_total), so it publishes no event.
        try await fixture.waitForLog("refused the channel")

        // Now something listens there: the same tunnel (same session) serves the next connection.
        let echo = try EchoServer(port: deadPort)
        defer { echo.stop() }
        let ok = try await offload { try echoRoundTrip(port: localPort, seed: 77, count: 100_000) }
        #expect(ok)
        #expect(
            fixture.daemonLog.components(separatedBy: "] connected").count - 1 == 1,
            "no reconnect: \(fixture.daemonLog)")
    }

    @Test("the server forbids forwarding: the connection closes, the tunnel stays up")
    func forwardingProhibited() async throws {
        let fixture = try TunnelFixture(sshdOptions: ["AllowTcpForwarding no"])
        defer { fixture.cleanup() }
        let (echo, localPort) = try await fixture.startEchoTunnel()
        defer { echo.stop() }  // keeps it alive to the end of the test
        for _ in 0..<2 {
            let closed = try await offload { () -> Bool in
                let client = try TCPClient.connect(port: localPort)
                defer { client.close() }
                return client.waitForClose(timeout: .seconds(5))
            }
            #expect(closed)
        }
        // The log, not an event: a refused channel changes only a counter (see `remoteRefused`).
        try await fixture.waitForLog("refused the channel", count: 2)
        #expect(echo.connectionsAccepted == 0)
        #expect(fixture.daemon?.isRunning == true)
    }

    @Test("a client that connects before the session is up is held, then served")
    func heldUntilConnected() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let (echo, localPort) = try fixture.writeEchoTunnel()
        defer { echo.stop() }  // keeps it alive to the end of the test
        try fixture.startDaemon()
        // Connect as soon as the listener exists, racing the SSH handshake.
        let ok = try await offload { () -> Bool in
            let client = try TCPClient.connect(port: localPort, timeout: .seconds(5), retryRefused: true)
            defer { client.close() }
            try client.sendAll("early bird")
            try client.shutdownWrite()
            return try client.receiveAllString() == "early bird"
        }
        #expect(ok)
    }
}
