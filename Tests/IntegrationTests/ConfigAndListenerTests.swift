import EctoTestSupport
import Foundation
import Testing

/// Writes `text` (with `KNOWN_HOSTS` replaced by an empty known_hosts file's path) as a config in
/// `directory` and runs `ecto-tunnel check` on it.
func checkConfig(in directory: TestDirectory, _ text: String) throws -> (path: String, result: CommandResult) {
    let knownHosts = try directory.write("known_hosts", "")
    let path = try directory.write("config.toml", text.replacingOccurrences(of: "KNOWN_HOSTS", with: knownHosts))
    return (path, try Subprocess.run(try ProductLocator.binary("ecto-tunnel"), ["check", "--config", path]))
}

@Suite("check, config errors and local ports (real binary)")
struct ConfigAndListenerTests {
    @Test("check reports every error with file, line and key, and exits 1")
    func checkReportsErrors() throws {
        let directory = try TestDirectory()
        defer { directory.cleanup() }
        let path = try directory.write(
            "config.toml",
            """
            # a config with three mistakes
            [tunnels.gw]
            target = "ops@gw.example.net:22"
            locl = "127.0.0.1:18789"
            local = "127.0.0.1:99999"
            remote = "127.0.0.1:18789"
            known_hosts = "\(directory.path)/no-such-known-hosts"

            """)
        let result = try Subprocess.run(try ProductLocator.binary("ecto-tunnel"), ["check", "--config", path])
        #expect(result.status == 1)
        #expect(result.stderr.contains("\(path):4"), "unknown key at line 4: \(result.stderr)")
        #expect(result.stderr.contains("locl"))
        #expect(result.stderr.contains("did you mean local"))
        #expect(result.stderr.contains("\(path):5"), "bad port at line 5: \(result.stderr)")
        #expect(result.stderr.contains("tunnels.gw.local"))
        #expect(result.stderr.contains("\(path):7"), "missing known_hosts at line 7: \(result.stderr)")
    }

    @Test(
        "check refuses what the daemon would refuse (key modes, unusable or encrypted keys, passphrase file modes), with file:line and key; the daemon says the same at start"
    )
    func checkRefusesWhatTheDaemonRefuses() async throws {
        let directory = try TestDirectory()
        defer { directory.cleanup() }
        let good = try KeyPair.generate(type: "ed25519", in: directory, name: "id_good")
        let open = try KeyPair.generate(type: "ed25519", in: directory, name: "id_open")
        chmod(open.privatePath, 0o644)
        let locked = try KeyPair.generate(type: "ed25519", in: directory, name: "id_locked", passphrase: "secret")
        let rsa = try KeyPair.generate(type: "rsa", in: directory, name: "id_rsa")
        let putty = try directory.write(
            "id_putty", "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n", mode: 0o600)
        let looseSecret = try directory.write("passphrase", "secret\n", mode: 0o644)
        // The daemon below starts these tunnels: every address is ours on loopback (free ports for the
        // listeners; the target is a free port nobody listens on, so its connects are refused at once).
        let closedTarget = try FreePort.probe()
        func table(_ name: String, port: UInt16, _ lines: [String]) -> String {
            ([
                "[tunnels.\(name)]", "target = \"ops@127.0.0.1:\(closedTarget)\"", "local = \"127.0.0.1:\(port)\"",
                "remote = \"127.0.0.1:1\"",
                "known_hosts = \"KNOWN_HOSTS\"",
            ] + lines).joined(separator: "\n") + "\n"
        }
        let ports = try (0..<7).map { _ in try FreePort.probe() }
        let text =
            table("ok", port: ports[0], ["identity_file = \"\(good.privatePath)\""])
            + table("open", port: ports[1], ["identity_file = \"\(open.privatePath)\""])
            + table("locked", port: ports[2], ["identity_file = \"\(locked.privatePath)\""])
            + table("pub", port: ports[3], ["identity_file = \"\(good.publicPath)\""])
            + table("putty", port: ports[4], ["identity_file = \"\(putty)\""])
            + table(
                "loose", port: ports[5],
                ["identity_file = \"\(locked.privatePath)\"", "identity_passphrase_file = \"\(looseSecret)\""])
            + table("rsa", port: ports[6], ["identity_file = \"\(rsa.privatePath)\""])
        let (path, result) = try checkConfig(in: directory, text)
        #expect(result.status == 1, "\(result)")
        let expected = [
            "\(path):12: tunnels.open.identity_file: permissions 0644 for \"\(open.privatePath)\" are too open",
            "\(path):18: tunnels.locked.identity_file: \"\(locked.privatePath)\" is encrypted: set identity_passphrase_file",
            "\(path):24: tunnels.pub.identity_file: \"\(good.publicPath)\": this is a public key",
            "\(path):30: tunnels.putty.identity_file: \"\(putty)\": a PuTTY key",
            "\(path):37: tunnels.loose.identity_passphrase_file: UNPROTECTED PASSPHRASE FILE: permissions 0644",
        ]
        for line in expected { #expect(result.stderr.contains(line), "\(line)\nin:\n\(result.stderr)") }
        #expect(!result.stderr.contains("tunnels.ok.") && !result.stderr.contains("tunnels.rsa."), "\(result.stderr)")

        // The RSA key is usable (rsa-sha2 signatures): no warning about it; no host entry is a warning only.
        let rsaOnly = try directory.write(
            "rsa.toml",
            table("rsa", port: ports[6], ["identity_file = \"\(rsa.privatePath)\""])
                .replacingOccurrences(of: "KNOWN_HOSTS", with: directory.file("known_hosts")))
        let warned = try Subprocess.run(try ProductLocator.binary("ecto-tunnel"), ["check", "--config", rsaOnly])
        #expect(warned.status == 0, "\(warned)")
        #expect(!warned.stdout.contains("tunnels.rsa.identity_file:"), "\(warned.stdout)")
        #expect(
            warned.stdout.contains("tunnels.rsa.known_hosts:")
                && warned.stdout.contains("has no entry for [127.0.0.1]:\(closedTarget)"), "\(warned.stdout)")

        // The daemon says the same at start, with file:line and key.
        let socket = directory.file("control.sock")
        let daemon = try Subprocess(
            try ProductLocator.binary("ecto-tunnel"), ["run", "--config", path, "--socket", socket],
            stdoutPath: directory.file("out"), stderrPath: directory.file("err"))
        defer { _ = daemon.terminate(grace: .seconds(5)) }
        try await waitUntil(timeout: .seconds(10), "the daemon running\n\(daemon.stderr())") {
            daemon.stderr().contains("ecto-tunnel running")
        }
        for line in expected { #expect(daemon.stderr().contains(line), "daemon: \(line)") }
    }

    @Test("check accepts a good config and lists the tunnels")
    func checkAcceptsGoodConfig() throws {
        let directory = try TestDirectory()
        defer { directory.cleanup() }
        let (_, result) = try checkConfig(
            in: directory,
            """
            [tunnels.gw]
            target = "ops@gw.example.net:2222"
            local = "127.0.0.1:18789"
            remote = "127.0.0.1:18789"
            known_hosts = "KNOWN_HOSTS"

            """)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("gw: 127.0.0.1:18789 -> ops@gw.example.net:2222 -> 127.0.0.1:18789"))
    }

    @Test("run refuses an invalid config with its errors")
    func runRefusesBadConfig() throws {
        let directory = try TestDirectory()
        defer { directory.cleanup() }
        let path = try directory.write("config.toml", "[tunnels.gw]\ntarget = 42\n")
        let result = try Subprocess.run(
            try ProductLocator.binary("ecto-tunnel"), ["run", "--config", path], timeout: .seconds(20))
        #expect(result.status == 78, "invalid config is EX_CONFIG, which the unit does not restart")
        #expect(result.stderr.contains("\(path):2"))
    }

    @Test(
        "the daemon's exit statuses: 78 invalid config (never restarted), 1 control socket taken (restarted), 0 clean stop"
    )
    func daemonExitStatuses() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let (echo, _) = try await fixture.startEchoTunnel()
        defer { echo.stop() }
        // A second daemon on the same control socket: a start failure a restart may fix.
        let second = try Subprocess.run(
            try ProductLocator.binary("ecto-tunnel"),
            ["run", "--config", fixture.configPath, "--socket", fixture.socketPath],
            timeout: .seconds(20))
        #expect(second.status == 1, "\(second)")
        #expect(second.stderr.contains("another ecto-tunnel daemon"), "\(second.stderr)")
        // The units restart on everything but 78.
        for unit in ["ecto-tunnel.service", "ecto-tunnel@.service"] {
            let root = URL(fileURLWithPath: "\(#filePath)").deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent()
            let text = try String(contentsOfFile: root.appendingPathComponent("units/\(unit)").path, encoding: .utf8)
            #expect(text.contains("\nRestartPreventExitStatus=78\n"), "\(unit)")
        }
        #expect(fixture.daemon?.terminate(grace: .seconds(10)) == .exited(0), "a clean stop exits 0")
    }

    @Test("check names a missing config file")
    func missingConfigFile() throws {
        let result = try Subprocess.run(
            try ProductLocator.binary("ecto-tunnel"), ["check", "--config", "/nonexistent/ecto.toml"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("/nonexistent/ecto.toml"))
    }

    @Test("a local port already in use is named with its holder; the other tunnels keep running")
    func portInUse() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let busyPort = try FreePort.probe()
        let squatter = try EchoServer(port: busyPort)  // holds the port
        defer { squatter.stop() }
        let echo = try EchoServer()
        defer { echo.stop() }  // keeps it alive to the end of the test
        let goodPort = try FreePort.probe()
        try fixture.writeConfig(
            fixture.tunnel("busy", localPort: busyPort, remotePort: echo.port)
                + fixture.tunnel("good", localPort: goodPort, remotePort: echo.port))
        try fixture.startDaemon()
        try await fixture.waitForStatus("busy", "backoff, its port held") {
            $0.state == .backoff
                && $0.lastError?.contains("cannot listen on 127.0.0.1:\(busyPort): address already in use") == true
        }
        #expect(
            fixture.daemonLog.contains("held by pid \(getpid())"), "the holder should be named: \(fixture.daemonLog)")
        try await fixture.waitForUp(["good"])
        #expect(try await offload { try echoRoundTrip(port: goodPort, seed: 21, count: 10_000) })
        #expect(squatter.connectionsAccepted == 0)
    }

    @Test("listeners bind loopback only by default")
    func loopbackOnly() throws {
        let directory = try TestDirectory()
        defer { directory.cleanup() }
        let (path, result) = try checkConfig(
            in: directory,
            """
            [tunnels.gw]
            target = "ops@gw.example.net"
            local = "0.0.0.0:18789"
            remote = "127.0.0.1:18789"
            known_hosts = "KNOWN_HOSTS"

            """)
        #expect(result.status == 1)
        #expect(result.stderr.contains("\(path):3"))
        #expect(result.stderr.contains("allow_non_loopback"))
    }

    @Test("SIGTERM stops the daemon cleanly with connections open")
    func gracefulStop() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let (echo, localPort) = try await fixture.startEchoTunnel(arguments: ["--stop-grace", "1"])
        defer { echo.stop() }  // keeps it alive to the end of the test
        let daemon = try #require(fixture.daemon)
        let client = try TCPClient.connect(port: localPort)
        defer { client.close() }
        try client.sendAll("ping")
        #expect(try client.receive(exactly: 4) == Array("ping".utf8))
        daemon.signal(SIGTERM)
        let code = await daemon.waitExit(timeout: .seconds(10))
        #expect(code == 0, "exit code \(String(describing: code)); log:\n\(fixture.daemonLog)")
        #expect(client.waitForClose(timeout: .seconds(2)))
        #expect(fixture.daemonLog.contains("tunnel stopped"))
    }
}
