import EctoControl
import EctoTestSupport
import Foundation
import Glibc
import Testing
import EctoStatus

/// The control socket and the CLI over it, against the real daemon and a real sshd.
@Suite("Control socket and CLI", .serialized)
struct ControlTests {
    /// `status` as parsed JSON.
    func statusJSON(_ fixture: TunnelFixture, _ extra: [String] = []) throws -> (code: Int32, report: StatusReport?) {
        try fixture.statusJSON(extra)
    }

    func tunnelReport(_ fixture: TunnelFixture, _ name: String) throws -> TunnelStatus {
        let (_, report) = try statusJSON(fixture, [name])
        return try #require(report?.tunnels.first, "no status for \(name)")
    }

    @Test("status: table, JSON and exit codes 0/3/1/2")
    func statusAndExitCodes() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let echo = try EchoServer()
        defer { echo.stop() }
        let (portA, portB) = (try FreePort.probe(), try FreePort.probe())
        let deadPort = try FreePort.probe()  // nothing listens: this tunnel stays in backoff
        var dead = fixture.tunnel("dead", localPort: try FreePort.probe(), remotePort: echo.port)
        dead = dead.replacingOccurrences(of: ":\(fixture.server.port)\"", with: ":\(deadPort)\"")
        try fixture.writeConfig(
            fixture.tunnel("a", localPort: portA, remotePort: echo.port)
                + fixture.tunnel("b", localPort: portB, remotePort: echo.port)
                + dead)
        try fixture.startDaemon()
        try await fixture.waitForUp(["a", "b"])
        #expect(try echoRoundTrip(port: portA, seed: 1, count: 100_000))

        let table = try fixture.runCLI(["status"])
        #expect(table.status == 3, "a tunnel in backoff makes status exit 3: \(table)")
        let lines = table.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("TUNNEL") == true, "\(table.stdout)")
        let rowA = try #require(lines.first { $0.hasPrefix("a ") }, "\(table.stdout)")
        #expect(rowA.contains(" up "))
        #expect(rowA.contains(fixture.target))
        #expect(rowA.contains("127.0.0.1:\(portA) → 127.0.0.1:\(echo.port)"))
        #expect(rowA.contains("100 kB"), "bytes in/out of the 100,000-byte echo: \(rowA)")
        let rowDead = try #require(lines.first { $0.hasPrefix("dead ") }, "\(table.stdout)")
        #expect(rowDead.contains("backoff") || rowDead.contains("connecting"))
        #expect(rowDead.contains("Connection refused"), "the last error is shown: \(rowDead)")

        let (code, report) = try statusJSON(fixture)
        #expect(code == 3)
        let status = try #require(report)
        #expect(status.version == 1)
        #expect(status.tunnels.map(\.name) == ["a", "b", "dead"], "config order")
        let a = try #require(status.tunnels.first)
        #expect(a.state == .up && a.enabled && a.target == fixture.target)
        #expect(a.local == "127.0.0.1:\(portA)" && a.remote == "127.0.0.1:\(echo.port)")
        #expect(a.bytesIn == 100_000 && a.bytesOut == 100_000, "\(a)")
        #expect(a.lastError == nil && a.connections == 0)
        // The raw JSON has the contract's keys, last_error included as null.
        let raw = try fixture.runCLI(["status", "--json", "a"]).stdout
        for key in [
            "\"bytes_in\":", "\"bytes_out\":", "\"last_error\":null", "\"since\":\"", "\"reconnects\":0",
            "\"version\":1",
        ] {
            #expect(raw.contains(key), "\(key) in \(raw)")
        }
        // The daemon's version, the one `--version` prints, in the status and in GET /v1/version.
        let version = try fixture.runCLI(["--version"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(raw.contains("\"daemon_version\":\"\(version)\""), "\(raw)")
        let versionAnswer = try ControlClient(path: fixture.socketPath, timeout: 2).request("GET", "/v1/version")
        guard case .success(let versionReport) = versionAnswer.decode(VersionReport.self) else {
            Issue.record("GET /v1/version: \(versionAnswer)")
            return
        }
        #expect(versionReport.daemonVersion == version && versionReport.version == 1, "\(versionReport)")

        #expect(try fixture.runCLI(["status", "a"]).status == 0, "one tunnel that is up: exit 0")
        #expect(try fixture.runCLI(["status", "dead"]).status == 3)
        let unknown = try fixture.runCLI(["status", "nope"])
        #expect(unknown.status == 1)
        #expect(unknown.stderr.contains("no tunnel named nope"))
        // A disabled tunnel is not a problem: down the dead one and everything is fine.
        let down = try fixture.runCLI(["down", "dead"])
        #expect(down.status == 0, "\(down)")
        #expect(try fixture.runCLI(["status"]).status == 0)

        // No daemon: exit 2 with a message that says so.
        _ = fixture.daemon?.terminate(grace: .seconds(5))
        let none = try fixture.runCLI(["status"])
        #expect(none.status == 2, "\(none)")
        #expect(none.stderr.contains("no ecto-tunnel daemon answers on \(fixture.socketPath)"))
        #expect(!FileManager.default.fileExists(atPath: fixture.socketPath), "the socket is removed at exit")
    }

    @Test("status --watch follows state changes live")
    func watch() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let (echo, _) = try await fixture.startEchoTunnel()
        defer { echo.stop() }
        let watcher = try Subprocess(
            try ProductLocator.binary("ecto-tunnel"), ["status", "--watch", "--json"],
            environment: ProcessInfo.processInfo.environment.merging(["ECTO_TUNNEL_SOCKET": fixture.socketPath]) { $1 },
            stdoutPath: fixture.directory.file("watch.out"), stderrPath: fixture.directory.file("watch.err"))
        defer { _ = watcher.kill() }
        try await waitUntil(timeout: .seconds(10), "the snapshot line") {
            watcher.stdout().contains("\"event\":\"snapshot\"")
        }
        #expect(try fixture.runCLI(["down", "t"]).status == 0)
        try await waitUntil(timeout: .seconds(10), "a down event\n\(watcher.stdout())") {
            watcher.stdout().split(separator: "\n").contains {
                $0.contains("\"event\":\"tunnel\"") && $0.contains("\"state\":\"down\"")
            }
        }
        #expect(try fixture.runCLI(["up", "t"]).status == 0)
        try await waitUntil(timeout: .seconds(10), "an up event\n\(watcher.stdout())") {
            let lines = watcher.stdout().split(separator: "\n")
            guard let down = lines.lastIndex(where: { $0.contains("\"state\":\"down\"") }) else { return false }
            return lines[down...].contains { $0.contains("\"state\":\"up\"") }
        }
        // The daemon going away ends the watch with exit 2.
        _ = fixture.daemon?.terminate(grace: .seconds(5))
        #expect(await watcher.waitExit(timeout: .seconds(10)) == 2)
    }

    @Test("target: a 64 MiB transfer on the old server completes while new connections go to the new one")
    func retargetKeepsTransfersInFlight() async throws {
        let fixture = try TunnelFixture(sshdOptions: ["LogLevel DEBUG1"])
        defer { fixture.cleanup() }
        let second = try SSHServer(extraConfig: ["LogLevel DEBUG1"])
        defer { second.cleanup() }
        try second.authorize(fixture.clientKey)
        try second.writeKnownHosts(to: fixture.knownHosts, append: true)
        try second.start()
        let count = 64 << 20
        let sink = try SinkServer(seed: 21)
        defer { sink.stop() }
        let port = try FreePort.probe()
        let original = """
            # ecto-tunnel test config: this comment stays
            [tunnels.t]   # the tunnel under test
            \(fixture.tunnel(localPort: port, remotePort: sink.port).split(separator: "\n").dropFirst().joined(separator: "\n"))
            # trailing comment
            """
        try fixture.writeConfig(original + "\n")
        try fixture.startDaemon(arguments: ["--log-level", "info"])
        try await fixture.waitForUp()
        func directTCPIP(_ server: SSHServer) -> Int {
            server.log().components(separatedBy: "server_request_direct_tcpip").count - 1
        }

        // The transfer sends half, waits until the retarget is done, then sends the rest: it is
        // in flight across the retarget for sure, whatever the machine's speed.
        let halfway = DispatchSemaphore(value: 0)
        let transfer = Task.detached {
            let client = try TCPClient.connect(port: port, ioTimeout: .seconds(120))
            defer { client.close() }
            var generator = PatternGenerator(seed: 21)
            while generator.offset < count {
                if generator.offset == count / 2 { _ = halfway.wait(timeout: .now() + 60) }
                try client.sendAll(generator.next(1 << 20))
            }
            try client.shutdownWrite()
            return try client.receiveVerdict()
        }
        defer { halfway.signal() }  // never leave it waiting, whatever fails below
        try await waitUntil(timeout: .seconds(10), "the transfer to start") { directTCPIP(fixture.server) == 1 }
        try await Task.sleep(for: .milliseconds(200))

        let newTarget = "\(second.user)@127.0.0.1:\(second.port)"
        let result = try fixture.runCLI(["target", "t", newTarget, "--wait", "20"])
        #expect(result.status == 0, "\(result)\n\(fixture.daemonLog)")
        #expect(result.stdout.contains("up on \(newTarget)"), "\(result.stdout)")

        let during = try tunnelReport(fixture, "t")
        #expect(during.target == newTarget && during.state == .up)
        let stillRunning = during.draining.first?.connections == 1
        #expect(stillRunning, "the transfer still runs on the old session: \(during)")
        #expect(during.draining.first?.target == fixture.target)

        // A new connection reaches the new server.
        let fresh = try TCPClient.connect(port: port, ioTimeout: .seconds(30))
        try fresh.sendPattern(seed: 21, count: 1000)
        try fresh.shutdownWrite()
        #expect(try fresh.receiveVerdict().isIntact(count: 1000))
        fresh.close()
        #expect(
            directTCPIP(second) == 2, "the pre-flight's channel, then the new connection, went through the new server")
        #expect(directTCPIP(fixture.server) == 1, "and not through the old one")

        halfway.signal()
        let verdict = try await transfer.value
        #expect(verdict.isIntact(count: count), "the 64 MiB transfer on the old session: \(verdict)")
        try await waitUntil(timeout: .seconds(10), "the old session to finish draining") {
            (try? self.tunnelReport(fixture, "t").draining.isEmpty) == true
        }
        try await waitUntil(timeout: .seconds(10), "the old server to see the disconnect\n\(fixture.server.logTail())")
        {
            fixture.server.log().contains("Disconnected from") || fixture.server.log().contains("Received disconnect")
        }

        // The file has the new target and everything else, comments included.
        let saved = try String(contentsOfFile: fixture.configPath, encoding: .utf8)
        #expect(
            saved == original.replacingOccurrences(
                of: "target = \"\(fixture.target)\"", with: "target = \"\(newTarget)\"") + "\n")
        let mode = try FileManager.default.attributesOfItem(atPath: fixture.configPath)[.posixPermissions] as? Int
        #expect(mode == 0o644 || mode == 0o600, "permissions kept (\(String(mode ?? 0, radix: 8)))")
    }

    @Test("target --force: an unreachable target is saved anyway and the tunnel says it is in backoff on it")
    func retargetUnreachable() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let (_, port) = try await fixture.startEchoTunnel()
        let nowhere = "nobody@127.0.0.1:\(try FreePort.probe())"
        let result = try fixture.runCLI(["target", "t", nowhere, "--force", "--wait", "2"])
        #expect(result.status == 3, "\(result)")
        #expect(
            result.stderr.contains("not up on \(nowhere)") && result.stderr.contains("Connection refused"),
            "\(result.stderr)")
        let report = try tunnelReport(fixture, "t")
        #expect(report.target == nowhere && report.state != .up)
        #expect(try String(contentsOfFile: fixture.configPath, encoding: .utf8).contains("target = \"\(nowhere)\""))
        // Clients are held (not refused) while the tunnel retries.
        let client = try TCPClient.connect(port: port, ioTimeout: .seconds(5))
        client.close()

        let bad = try fixture.runCLI(["target", "t", "user@host:notaport"])
        #expect(bad.status == 1)
        #expect(bad.stderr.contains("invalid target"), "\(bad.stderr)")
    }

    @Test("down, up, reconnect and reload change only what they name")
    func lifecycleCommandsAreScoped() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let echo = try EchoServer()
        defer { echo.stop() }
        let (portA, portB, portC) = (try FreePort.probe(), try FreePort.probe(), try FreePort.probe())
        let tunnelA = fixture.tunnel("a", localPort: portA, remotePort: echo.port)
        let tunnelB = fixture.tunnel("b", localPort: portB, remotePort: echo.port)
        try fixture.writeConfig(tunnelA + tunnelB)
        try fixture.startDaemon()
        try await fixture.waitForUp(["a", "b"])

        // A connection on b stays open through everything done to a.
        let held = try TCPClient.connect(port: portB, ioTimeout: .seconds(10))
        defer { held.close() }
        func heldStillEchoes(_ seed: UInt8) throws -> Bool {
            try held.sendAll([seed, seed, seed])
            return try held.receive(exactly: 3) == [seed, seed, seed]
        }
        #expect(try heldStillEchoes(1))
        let bBefore = try tunnelReport(fixture, "b")

        #expect(try fixture.runCLI(["down", "a"]).status == 0)
        #expect(try tunnelReport(fixture, "a").state == .down)
        #expect(throws: (any Error).self, "a's port is closed while down") {
            try TCPClient.connect(port: portA, ioTimeout: .seconds(2))
        }
        #expect(try heldStillEchoes(2))

        #expect(try fixture.runCLI(["up", "a"]).status == 0)
        try await waitUntil(timeout: .seconds(10), "a up again") { (try? self.tunnelReport(fixture, "a").state) == .up }
        #expect(try echoRoundTrip(port: portA, seed: 3, count: 1000))

        let aBefore = try tunnelReport(fixture, "a")
        #expect(try fixture.runCLI(["reconnect", "a"]).status == 0)
        try await waitUntil(timeout: .seconds(10), "a reconnected") {
            guard let a = try? self.tunnelReport(fixture, "a") else { return false }
            return a.state == .up && a.reconnects == aBefore.reconnects + 1
        }
        #expect(try heldStillEchoes(4))

        // Reload: c added, a changed, b unchanged even though a comment moved it down a line.
        let reloaded =
            tunnelA.replacingOccurrences(of: "connect_timeout = \"5s\"", with: "connect_timeout = \"6s\"")
            + "# b is untouched\n" + tunnelB + fixture.tunnel("c", localPort: portC, remotePort: echo.port)
        try fixture.writeConfig(reloaded)
        let reload = try fixture.runCLI(["reload"])
        #expect(reload.status == 0, "\(reload)")
        #expect(reload.stdout.contains("added c; changed a; 1 unchanged"), "\(reload.stdout)")
        try await waitUntil(timeout: .seconds(10), "a and c up") {
            guard let report = try? self.statusJSON(fixture).report else { return false }
            return report.tunnels.map(\.name) == ["a", "b", "c"] && report.tunnels.allSatisfy { $0.state == .up }
        }
        #expect(try echoRoundTrip(port: portC, seed: 5, count: 1000))
        #expect(try echoRoundTrip(port: portA, seed: 6, count: 1000), "a's listener was handed over")
        #expect(try heldStillEchoes(7))

        // A bad config is refused with its errors; nothing changes.
        try fixture.writeConfig(reloaded + "[tunnels.d]\nlocal = 5\n")
        let refused = try fixture.runCLI(["reload"])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("\(fixture.configPath):"), "\(refused.stderr)")
        #expect(refused.stderr.contains("tunnels.d.local"), "\(refused.stderr)")
        #expect(try statusJSON(fixture).report?.tunnels.map(\.name) == ["a", "b", "c"])
        #expect(try echoRoundTrip(port: portC, seed: 8, count: 1000))

        // SIGHUP does the same as reload: c goes away.
        try fixture.writeConfig(
            reloaded.replacingOccurrences(of: fixture.tunnel("c", localPort: portC, remotePort: echo.port), with: ""))
        let events = try await fixture.watchEvents()
        defer { events.close() }
        fixture.daemon?.signal(SIGHUP)
        try await events.waitForRemoved("c")
        #expect(try statusJSON(fixture).report?.tunnels.map(\.name) == ["a", "b"])
        try await waitUntil(timeout: .seconds(5), "c's port to close") {
            (try? TCPClient.connect(port: portC, ioTimeout: .seconds(1)))?.close() == nil
        }
        #expect(try heldStillEchoes(9))
        let bAfter = try tunnelReport(fixture, "b")
        #expect(
            bAfter.reconnects == bBefore.reconnects && bAfter.since == bBefore.since, "b was never touched: \(bAfter)")
    }

    @Test("only the owner may use the socket; garbage, a 10 MiB request and 200 idle clients change nothing")
    func socketSecurityAndAbuse() async throws {
        ResourceLimits.raiseOpenFileLimit()
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let (echo, port) = try await fixture.startEchoTunnel()
        defer { echo.stop() }  // keeps it alive to the end of the test

        var info = stat()
        #expect(stat(fixture.socketPath, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600, "socket mode \(String(info.st_mode & 0o777, radix: 8))")

        // Another uid is turned away (by the file mode first; SO_PEERCRED is tested below).
        let other = try Subprocess.run(
            "/usr/bin/setpriv",
            ["--reuid=65534", "--regid=65534", "--clear-groups", "socat", "-", "UNIX-CONNECT:\(fixture.socketPath)"],
            stdin: "GET /v1/status HTTP/1.1\r\n\r\n", timeout: .seconds(10))
        #expect(other.status != 0 && other.stderr.contains("Permission denied"), "\(other)")
        #expect(!other.stdout.contains("tunnels"))

        // Random bytes: an error answer, nothing else.
        var random = [UInt8](repeating: 0, count: 4096)
        for i in random.indices { random[i] = UInt8.random(in: 0...255) }
        let garbage = try RawControlClient.exchange(fixture.socketPath, random)
        #expect(garbage.hasPrefix("HTTP/1.1 400") || garbage.isEmpty, "\(garbage)")

        // 10 MiB: refused as too large, early, with an answer the client can read.
        let huge =
            Array("POST /v1/reload HTTP/1.1\r\nContent-Length: \(10 << 20)\r\n\r\n".utf8)
            + [UInt8](repeating: 0x41, count: 10 << 20)
        let tooLarge = try RawControlClient.exchange(fixture.socketPath, huge)
        #expect(tooLarge.hasPrefix("HTTP/1.1 413"), "\(tooLarge)")
        let hugeHead = Array("GET /v1/status HTTP/1.1\r\nX-Filler: ".utf8) + [UInt8](repeating: 0x41, count: 10 << 20)
        #expect(try RawControlClient.exchange(fixture.socketPath, hugeHead).hasPrefix("HTTP/1.1 431"))
        let notFound = try RawControlClient.exchange(
            fixture.socketPath, Array("DELETE /v1/everything HTTP/1.1\r\n\r\n".utf8))
        #expect(notFound.hasPrefix("HTTP/1.1 404"), "\(notFound)")

        // 200 idle clients: status still answers, the tunnel still forwards.
        var idle: [Int32] = []
        defer { for fd in idle { close(fd) } }
        for _ in 0..<200 { idle.append(try RawControlClient.connect(fixture.socketPath)) }
        let status = try fixture.runCLI(["status"], timeout: .seconds(10))
        #expect(status.status == 0, "\(status)")
        let forwarded = (try? echoRoundTrip(port: port, seed: 9, count: 100_000)) ?? false
        #expect(forwarded, "the tunnel forwards while 200 clients sit on the control socket\n\(fixture.daemonLog)")
        // A slow client that never finishes its request is answered 408 and closed.
        let slow = try RawControlClient.connect(fixture.socketPath)
        defer { close(slow) }
        _ = "GET /v1/sta".withCString { send(slow, $0, 11, Int32(MSG_NOSIGNAL)) }
        let slowAnswer = RawControlClient.readAll(slow, timeout: 10)
        #expect(slowAnswer.hasPrefix("HTTP/1.1 408"), "\(slowAnswer)")
        #expect(fixture.daemon?.isRunning == true)
        #expect(try fixture.runCLI(["status"]).status == 0)
    }

    @Test("status --deep whose probe hangs does not hold up other clients: plain status, down and up answer meanwhile")
    func deepStatusDoesNotStallTheControlSocket() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        // The remote end: a listener that never accepts. The SSH server's connect succeeds (the
        // kernel's backlog), the probe's HTTP request is never answered: it hangs until its 5 s
        // timeout, with one connection open through the tunnel meanwhile.
        let silent = silentListener()
        defer { close(silent.socket) }
        try #require(silent.listening)
        let localPort = try FreePort.probe()
        try fixture.writeConfig(
            fixture.tunnel(
                "g", localPort: localPort, remotePort: silent.port,
                extra: ["probe = \"http:/\"", "probe_interval = \"0s\""])
                + fixture.tunnel("e", localPort: try FreePort.probe(), remotePort: 9))
        try fixture.startDaemon()
        try await fixture.waitForUp(["g", "e"])
        #expect(try tunnelReport(fixture, "g").connections == 0)

        let deep = try Subprocess(
            try ProductLocator.binary("ecto-tunnel"), ["status", "--deep", "--json"],
            extraEnvironment: ["ECTO_TUNNEL_SOCKET": fixture.socketPath])
        // Another client's plain status sees the deep request's probe in flight: it was answered
        // while the deep one waits.
        try await waitUntil(timeout: .seconds(4), "plain status to show the probe's connection") {
            (try? self.tunnelReport(fixture, "g").connections) == 1
        }
        #expect(deep.isRunning, "the deep status still waits for its probe")
        // Commands that wait for a driver (down, up) are answered meanwhile too.
        #expect(try fixture.runCLI(["down", "e"]).status == 0)
        #expect(try fixture.runCLI(["up", "e"]).status == 0)
        #expect(deep.isRunning, "the probe hangs until its timeout")
        #expect(await deep.waitExit(timeout: .seconds(30)) == 3, "gateway down: exit 3")
        let report = try ControlProtocol.decoder().decode(StatusReport.self, from: Data(deep.stdout().utf8))
        let gateway = try #require(report.tunnels.first { $0.name == "g" }?.gateway)
        #expect(gateway.outcome == .timeout, "\(gateway)")
    }

    @Test("SO_PEERCRED: a daemon of another user refuses even root")
    func peerCredentials() async throws {
        let directory = try TestDirectory(prefix: "ecto-cred")
        defer { directory.cleanup() }
        // Everything the nobody daemon needs must be readable by it.
        chmod(directory.path, 0o755)
        let binary = try ProductLocator.binary("ecto-tunnel")
        let config = try directory.write("config.toml", "# no tunnels\n")
        chmod(config, 0o644)
        let socketDirectory = directory.file("sock")
        mkdir(socketDirectory, 0o700)
        chown(socketDirectory, 65534, 65534)
        let socket = socketDirectory + "/control.sock"
        let daemon = try Subprocess(
            "/usr/bin/setpriv",
            [
                "--reuid=65534", "--regid=65534", "--clear-groups", binary, "run", "--config", config, "--socket",
                socket,
            ],
            environment: ["PATH": "/usr/bin:/bin", "HOME": "/nonexistent"],
            stdoutPath: directory.file("out"), stderrPath: directory.file("err"))
        defer { _ = daemon.terminate(grace: .seconds(3)) }
        try await waitUntil(timeout: .seconds(10), "the socket\n\(daemon.stderr())") {
            FileManager.default.fileExists(atPath: socket)
        }
        // Root passes the file permissions, but the daemon checks who is calling.
        let answer = try RawControlClient.exchange(socket, Array("GET /v1/status HTTP/1.1\r\n\r\n".utf8))
        #expect(answer.hasPrefix("HTTP/1.1 403"), "\(answer)")
        #expect(answer.contains("only uid 65534"))
        let cli = try Subprocess.run(binary, ["status", "--socket", socket], timeout: .seconds(10))
        #expect(cli.status == 1 && cli.stderr.contains("only uid 65534"), "\(cli)")
        #expect(daemon.stderr().contains("refused a control connection from uid 0"))
    }
}

/// Raw socket access for the abuse tests.
enum RawControlClient {
    static func connect(_ path: String) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in path.utf8.enumerated() { raw[i] = byte }
        }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard rc == 0 else {
            close(fd)
            throw TestSupportError(.system(errno: errno), "connect \(path): \(String(cString: strerror(errno)))")
        }
        return fd
    }

    /// Sends `bytes` (stopping early if the daemon closes), then reads the answer.
    static func exchange(_ path: String, _ bytes: [UInt8]) throws -> String {
        let fd = try connect(path)
        defer { close(fd) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes {
                send(fd, $0.baseAddress! + offset, min(65536, bytes.count - offset), Int32(MSG_NOSIGNAL))
            }
            if n <= 0 { break }  // the daemon stopped listening to us: read its answer
            offset += n
        }
        shutdown(fd, Int32(SHUT_WR))
        return readAll(fd, timeout: 10)
    }

    static func readAll(_ fd: Int32, timeout seconds: Int) -> String {
        var timeout = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            received += buffer[0..<n]
        }
        return String(decoding: received, as: UTF8.self)
    }
}
