import Dispatch
import EctoControl
import EctoTestSupport
import Foundation
import Testing
import EctoStatus

/// Make-before-break: `target` and `reload` prove the new session before it takes over; a change
/// that fails its pre-flight changes nothing (old session serving, file untouched).
@Suite("Pre-flighted changes", .serialized)
struct PreflightTests {
    func tunnelReport(_ fixture: TunnelFixture, _ name: String) throws -> TunnelStatus {
        let report = try #require(fixture.statusJSON([name]).report)
        return try #require(report.tunnels.first)
    }

    @Test(
        "target: unknown host key, closed port, refused key each change nothing; a good target switches; a transfer in flight survives all"
    )
    func retargetPreflight() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        // Unknown host key: a real sshd that accepts our key, but known_hosts does not know it.
        let stranger = try SSHServer()
        defer { stranger.cleanup() }
        try stranger.authorize(fixture.clientKey)
        try stranger.start()
        // Refused key: known host, our key not authorized.
        let locked = try SSHServer()
        defer { locked.cleanup() }
        try locked.writeKnownHosts(to: fixture.knownHosts, append: true)
        try locked.start()
        // Good: known host, our key authorized.
        let good = try SSHServer()
        defer { good.cleanup() }
        try good.authorize(fixture.clientKey)
        try good.writeKnownHosts(to: fixture.knownHosts, append: true)
        try good.start()

        let count = 16 << 20
        let sink = try SinkServer(seed: 33)
        defer { sink.stop() }
        let port = try FreePort.probe()
        let original = "# comment kept\n" + fixture.tunnel(localPort: port, remotePort: sink.port)
        try fixture.writeConfig(original)
        try fixture.startDaemon(arguments: ["--log-level", "info"])
        try await fixture.waitForUp()

        // A transfer that is in flight across every change below.
        let halfway = DispatchSemaphore(value: 0)
        let sentHalf = DispatchSemaphore(value: 0)
        let transfer = Task.detached {
            let client = try TCPClient.connect(port: port, ioTimeout: .seconds(120))
            defer { client.close() }
            var generator = PatternGenerator(seed: 33)
            while generator.offset < count {
                if generator.offset == count / 2 {
                    sentHalf.signal()
                    _ = halfway.wait(timeout: .now() + 90)
                }
                try client.sendAll(generator.next(1 << 20))
            }
            try client.shutdownWrite()
            return try client.receiveVerdict()
        }
        defer { halfway.signal() }
        #expect(sentHalf.wait(timeout: .now() + 30) == .success, "the transfer got halfway")

        func refused(_ newTarget: String, stage: String, _ more: [String] = []) throws {
            let result = try fixture.runCLI(["target", "t", newTarget, "--wait", "10"])
            #expect(result.status == 1, "\(newTarget): \(result)\n\(fixture.daemonLog)")
            #expect(result.stderr.contains("\(stage) failed"), "stage \(stage): \(result.stderr)")
            #expect(
                result.stderr.contains("stays on \(fixture.target)") && result.stderr.contains("unchanged"),
                "\(result.stderr)")
            for text in more { #expect(result.stderr.contains(text), "\(text): \(result.stderr)") }
            #expect(
                try String(contentsOfFile: fixture.configPath, encoding: .utf8) == original, "the file is untouched")
            let report = try tunnelReport(fixture, "t")
            #expect(
                report.target == fixture.target && report.state == .up && report.change == nil,
                "still on the old session: \(report)")
            #expect(report.connections == 1, "the transfer is still open: \(report)")
            #expect(try echoRoundTripThroughSink(port: port), "new clients are still served by the old session")
        }
        try refused(
            "\(stranger.user)@127.0.0.1:\(stranger.port)", stage: "host key",
            ["HOST KEY UNKNOWN", stranger.hostKeyFingerprint, "trust it with"])
        try refused(
            "\(fixture.server.user)@127.0.0.1:\(try FreePort.probe())", stage: "connect", ["Connection refused"])
        try refused("\(locked.user)@127.0.0.1:\(locked.port)", stage: "authentication", ["refused authentication"])

        let newTarget = "\(good.user)@127.0.0.1:\(good.port)"
        let switched = try fixture.runCLI(["target", "t", newTarget, "--wait", "20"])
        #expect(switched.status == 0, "\(switched)\n\(fixture.daemonLog)")
        #expect(
            switched.stdout.contains("proven first") && switched.stdout.contains("up on \(newTarget)"),
            "\(switched.stdout)")
        #expect(
            try String(contentsOfFile: fixture.configPath, encoding: .utf8)
                == original.replacingOccurrences(
                    of: "target = \"\(fixture.target)\"", with: "target = \"\(newTarget)\""))
        let after = try tunnelReport(fixture, "t")
        #expect(after.target == newTarget && after.state == .up)
        #expect(after.draining.first?.connections == 1, "the transfer finishes on the old session: \(after)")

        halfway.signal()
        let verdict = try await transfer.value
        #expect(verdict.isIntact(count: count), "the transfer in flight across four changes: \(verdict)")

        // --force switches to a failing target anyway, and says so.
        let forced = try fixture.runCLI([
            "target", "t", "\(stranger.user)@127.0.0.1:\(stranger.port)", "--force", "--wait", "5",
        ])
        #expect(forced.status != 0, "\(forced)")
        #expect(forced.stdout.contains("FORCED") && forced.stdout.contains("host key"), "\(forced.stdout)")
        #expect(try String(contentsOfFile: fixture.configPath, encoding: .utf8).contains("127.0.0.1:\(stranger.port)"))
    }

    /// One short pattern through the sink: the tunnel still serves new clients.
    func echoRoundTripThroughSink(port: UInt16) throws -> Bool {
        let client = try TCPClient.connect(port: port, ioTimeout: .seconds(20))
        defer { client.close() }
        try client.sendPattern(seed: 33, count: 1000)
        try client.shutdownWrite()
        return try client.receiveVerdict().isIntact(count: 1000)
    }

    @Test(
        "reload: a good change applies, a failing one (remote port closed: channel) keeps its session; the answer lists each"
    )
    func reloadOneGoodOneFailing() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let echo = try EchoServer()
        defer { echo.stop() }
        let (portA, portB) = (try FreePort.probe(), try FreePort.probe())
        let tunnelA = fixture.tunnel("a", localPort: portA, remotePort: echo.port)
        let tunnelB = fixture.tunnel("b", localPort: portB, remotePort: echo.port)
        try fixture.writeConfig(tunnelA + tunnelB)
        try fixture.startDaemon()
        try await fixture.waitForUp(["a", "b"])
        let held = try TCPClient.connect(port: portB, ioTimeout: .seconds(10))
        defer { held.close() }
        try held.sendAll([1, 2, 3])
        #expect(try held.receive(exactly: 3) == [1, 2, 3])

        let closed = try FreePort.probe()
        let edited =
            tunnelA.replacingOccurrences(of: "connect_timeout = \"5s\"", with: "connect_timeout = \"6s\"")
            + tunnelB.replacingOccurrences(
                of: "remote = \"127.0.0.1:\(echo.port)\"", with: "remote = \"127.0.0.1:\(closed)\"")
        try fixture.writeConfig(edited)
        let reload = try fixture.runCLI(["reload"])
        #expect(reload.status == 1, "\(reload)\n\(fixture.daemonLog)")
        #expect(reload.stdout.contains("changed a") && reload.stdout.contains("not changed b"), "\(reload.stdout)")
        #expect(reload.stderr.contains("b: not changed, pre-flight failed at channel"), "\(reload.stderr)")
        let b = try tunnelReport(fixture, "b")
        #expect(b.remote == "127.0.0.1:\(echo.port)" && b.state == .up, "b keeps its running settings: \(b)")
        try held.sendAll([4, 5, 6])
        #expect(try held.receive(exactly: 3) == [4, 5, 6], "b's open connection was never touched")
        #expect(try echoRoundTrip(port: portB, seed: 2, count: 1000))
        #expect(try echoRoundTrip(port: portA, seed: 3, count: 1000))

        // JSON lists the failure with its stage.
        let answer = try ControlClient(path: fixture.socketPath, timeout: 60).request("POST", "/v1/reload")
        guard case .success(let report) = answer.decode(ReloadReport.self) else {
            Issue.record("reload answer: \(answer)")
            return
        }
        #expect(
            !report.ok && report.failed.map(\.tunnel) == ["b"] && report.failed.first?.stage == "channel", "\(report)")
        #expect(report.unchanged == ["a"])

        // --force applies it anyway.
        let forced = try fixture.runCLI(["reload", "--force"])
        #expect(forced.status == 0, "\(forced)")
        #expect(forced.stdout.contains("forced b"), "\(forced.stdout)")
        #expect(try tunnelReport(fixture, "b").remote == "127.0.0.1:\(closed)")
    }

    @Test("status shows a change while it is pre-flighted (a server that never speaks SSH)")
    func statusShowsChangeInProgress() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let (echo, port) = try await fixture.startEchoTunnel(extra: ["connect_timeout = \"3s\""])
        defer { echo.stop() }
        // A listener that never accepts: TCP connects (backlog), the SSH banner never comes.
        let silent = silentListener()
        defer { close(silent.socket) }
        #expect(silent.listening)
        let silentPort = silent.port
        let change = try Subprocess(
            try ProductLocator.binary("ecto-tunnel"), ["target", "t", "nobody@127.0.0.1:\(silentPort)"],
            extraEnvironment: ["ECTO_TUNNEL_SOCKET": fixture.socketPath])
        try await waitUntil(timeout: .seconds(5), "status to show the change") {
            (try? self.tunnelReport(fixture, "t").change?.stage) == "handshake"
        }
        let table = try fixture.runCLI(["status"])
        #expect(
            table.stdout.contains("changing to nobody@127.0.0.1:\(silentPort): pre-flight handshake"), "\(table.stdout)"
        )
        #expect(try echoRoundTrip(port: port, seed: 4, count: 1000), "the old session serves meanwhile")
        #expect(await change.waitExit(timeout: .seconds(20)) == 1)
        #expect(change.stderr().contains("failed") && change.stderr().contains("timed out"), "\(change.stderr())")
        #expect(try tunnelReport(fixture, "t").change == nil)
    }
}
