import EctoControl
import EctoTestSupport
import Foundation
import Glibc
import Testing
import EctoStatus

/// `connect` → `status --deep` → `disconnect`, against a real sshd and a stand-in OpenClaw gateway
/// on the remote side's loopback, with a private HOME (keys, known_hosts, config, state).
@Suite("Operator flow: connect, status --deep, disconnect", .serialized)
struct OperatorFlowTests {
    final class World: @unchecked Sendable {
        let directory: TestDirectory
        let home: String
        let server: SSHServer
        let gateway: StandInGateway
        let localPort: UInt16
        let socket: String
        let configPath: String
        /// OPENCLAW_GATEWAY_TOKEN as the CLI sees it (nil: unset).
        var environmentToken: String? = "s3cret-gateway-token"

        init() throws {
            directory = try TestDirectory(prefix: "ecto-op")
            home = directory.path
            mkdir(home + "/.ssh", 0o700)
            mkdir(home + "/run", 0o700)
            server = try SSHServer()
            let key = try KeyPair.generate(type: "ed25519", at: home + "/.ssh/id_ed25519", comment: "operator")
            try server.authorize(key)
            try server.start()
            gateway = try StandInGateway(token: "s3cret-gateway-token")
            localPort = try FreePort.probe()
            socket = home + "/run/ecto.sock"
            configPath = home + "/.config/ecto-tunnel/config.toml"
        }

        var environment: [String: String] {
            var env = ProcessInfo.processInfo.environment
            env["SSH_AUTH_SOCK"] = nil
            env["HOME"] = home
            env["XDG_CONFIG_HOME"] = home + "/.config"
            env["XDG_STATE_HOME"] = home + "/.local/state"
            // No systemd user manager answers here: connect must fall back to a background daemon.
            env["XDG_RUNTIME_DIR"] = home + "/run"
            env["ECTO_TUNNEL_SOCKET"] = socket
            env["OPENCLAW_GATEWAY_TOKEN"] = environmentToken
            env["OPENCLAW_GATEWAY_PORT"] = nil
            return env
        }

        func cli(_ arguments: [String], timeout: Duration = .seconds(90)) throws -> CommandResult {
            try Subprocess.run(
                try ProductLocator.binary("ecto-tunnel"), arguments, environment: environment, timeout: timeout)
        }

        /// `connect` to `target` (default: the server as user@127.0.0.1:port) on this world's ports.
        func connect(_ extra: [String] = [], target: String? = nil) throws -> CommandResult {
            try cli(
                [
                    "connect", target ?? "\(server.user)@127.0.0.1:\(server.port)", "--port", "\(localPort)",
                    "--remote-port", "\(gateway.port)", "--timeout", "30",
                ] + extra)
        }

        /// The background daemon's pid, from the control socket.
        var daemonPID: Int32? {
            guard let answer = try? ControlClient(path: socket, timeout: 2).request("GET", "/v1/version"),
                case .success(let version) = answer.decode(VersionReport.self)
            else { return nil }
            return version.pid
        }

        func cleanup() {
            if let pid = daemonPID {
                kill(pid, SIGTERM)
                for _ in 0..<50 where kill(pid, 0) == 0 { usleep(100_000) }
                kill(pid, SIGKILL)
            }
            gateway.stop()
            server.cleanup()
            directory.cleanup()
        }
    }

    @Test(
        "connect (refused fingerprint first), request through the tunnel, status --deep, gateway down, re-run, disconnect, purge"
    )
    func endToEnd() async throws {
        let world = try World()
        defer { world.cleanup() }
        try FileManager.default.createDirectory(
            atPath: world.home + "/.config/ecto-tunnel", withIntermediateDirectories: true)
        try "# operator notes: keep me\n".write(toFile: world.configPath, atomically: true, encoding: .utf8)

        // A wrong fingerprint: refused, nothing written.
        let wrong = try world.connect(["--fingerprint", "SHA256:" + String(repeating: "A", count: 43)])
        #expect(wrong.status == 1, "\(wrong)")
        #expect(
            wrong.stderr.contains("refused: the server's host key is \(world.server.hostKeyFingerprint)"),
            "\(wrong.stderr)")
        #expect(!FileManager.default.fileExists(atPath: world.home + "/.ssh/known_hosts"))
        #expect(try String(contentsOfFile: world.configPath, encoding: .utf8) == "# operator notes: keep me\n")
        // Without a terminal and without --yes: refused too.
        let unconfirmed = try world.connect()
        #expect(unconfirmed.status == 1 && unconfirmed.stderr.contains("--yes"), "\(unconfirmed)")

        // The right fingerprint: connected.
        let connected = try world.connect(["--fingerprint", world.server.hostKeyFingerprint])
        #expect(connected.status == 0, "\(connected)")
        let out = connected.stdout
        for expected in [
            "[1/6] target", "[3/6] host key", "matches --fingerprint", "[4/6] config", "written", "[5/6] daemon",
            "started in the background", "[6/6] tunnel up; the gateway answers",
            "ws://127.0.0.1:\(world.localPort)", "http://127.0.0.1:\(world.localPort)/v1/chat/completions",
            "token:      <redacted, 20 characters> from $OPENCLAW_GATEWAY_TOKEN", "curl -sS",
        ] {
            #expect(out.contains(expected), "\(expected) in:\n\(out)")
        }
        #expect(!out.contains("s3cret-gateway-token"), "the token is never printed unless asked")
        #expect(
            try String(contentsOfFile: world.home + "/.ssh/known_hosts", encoding: .utf8).contains(
                world.server.hostPublicKey))
        let config = try String(contentsOfFile: world.configPath, encoding: .utf8)
        #expect(config.hasPrefix("# operator notes: keep me\n") && config.contains("[tunnels.gateway]"), "\(config)")

        // A real request through the tunnel, with the token, as the example shows.
        let client = try TCPClient.connect(port: world.localPort, ioTimeout: .seconds(10))
        let body = #"{"model":"openclaw","messages":[{"role":"user","content":"Hello"}]}"#
        try client.sendAll(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer s3cret-gateway-token\r\n"
                + "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        )
        let answer = try client.receiveAllString()
        client.close()
        #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer)")

        // status --deep: up, gateway answers, with a latency.
        let deep = try world.cli(["status", "--deep"])
        #expect(deep.status == 0, "\(deep)")
        #expect(deep.stdout.contains("GATEWAY") && deep.stdout.contains(" ok "), "\(deep.stdout)")

        // Gateway stopped, tunnel still up: visible, and exit 3.
        world.gateway.stop()
        let down = try world.cli(["status", "--deep", "--json"])
        #expect(down.status == 3, "\(down)")
        let report = try ControlProtocol.decoder().decode(StatusReport.self, from: Data(down.stdout.utf8))
        let tunnel = try #require(report.tunnels.first)
        #expect(tunnel.state == .up, "the SSH tunnel itself is fine")
        #expect(
            tunnel.gateway?.ok == false && tunnel.gateway?.outcome == .closedByTunnel,
            "\(String(describing: tunnel.gateway))")
        let table = try world.cli(["status", "--deep"]).stdout
        #expect(table.contains("DOWN (closed-by-tunnel)") && table.contains("↳ gateway (http:/)"), "\(table)")
        try world.gateway.restart()

        // Re-running connect is safe: the key is trusted, the config unchanged, the daemon kept.
        let pid = try #require(world.daemonPID)
        let again = try world.connect()
        #expect(again.status == 0, "\(again)")
        #expect(again.stdout.contains("already trusted") && again.stdout.contains("unchanged"), "\(again.stdout)")
        #expect(world.daemonPID == pid)

        // disconnect: disabled in the config, the daemon stopped (no enabled tunnel left).
        let disconnect = try world.cli(["disconnect"])
        #expect(disconnect.status == 0, "\(disconnect)")
        #expect(try String(contentsOfFile: world.configPath, encoding: .utf8).contains("enabled = false"))
        // The test process is a subreaper: the exited daemon is our zombie to reap.
        try await waitUntil(timeout: .seconds(10), "the daemon to stop") {
            var status: Int32 = 0
            return waitpid(pid, &status, WNOHANG) == pid || kill(pid, 0) != 0
        }
        #expect(try world.cli(["status"]).status == 2)
        #expect(throws: (any Error).self) { try TCPClient.connect(port: world.localPort, ioTimeout: .seconds(2)) }

        // --purge removes the table and nothing else.
        let purge = try world.cli(["disconnect", "--purge"])
        #expect(purge.status == 0, "\(purge)")
        #expect(try String(contentsOfFile: world.configPath, encoding: .utf8) == "# operator notes: keep me\n")
    }

    @Test(
        "connect through an ssh alias with ProxyJump: keys not yet in known_hosts stop it (exit 1, nothing written, `ssh gw true`); once known, the tunnel goes through the jump host and the gateway answers"
    )
    func connectThroughJumpHost() throws {
        let world = try World()
        defer { world.cleanup() }
        // The same sshd serves as bastion and as gateway host: the target's channel is opened by
        // the bastion session (loopback to itself), as in JumpTests' loopback chain.
        try """
        Host bastion
          HostName 127.0.0.1
          Port \(world.server.port)
          User \(world.server.user)
        Host gw
          HostName 127.0.0.1
          Port \(world.server.port)
          User \(world.server.user)
          ProxyJump bastion

        """.write(toFile: world.home + "/.ssh/config", atomically: true, encoding: .utf8)
        let unknown = try world.connect(target: "gw")
        #expect(unknown.status == 1, "\(unknown)")
        #expect(unknown.stderr.contains("[127.0.0.1]:\(world.server.port)"), "\(unknown.stderr)")
        #expect(unknown.stderr.contains("ssh gw true"), "\(unknown.stderr)")
        #expect(!FileManager.default.fileExists(atPath: world.configPath))

        // What `ssh gw true` would have recorded.
        try world.server.writeKnownHosts(to: world.home + "/.ssh/known_hosts", host: "127.0.0.1")
        let result = try world.connect(target: "gw")
        #expect(result.status == 0, "\(result)")
        #expect(
            result.stdout.contains("through jump host \(world.server.user)@127.0.0.1:\(world.server.port)"),
            "\(result.stdout)")
        #expect(result.stdout.contains("and 1 jump host found in"), "\(result.stdout)")
        let written = try String(contentsOfFile: world.configPath, encoding: .utf8)
        #expect(written.contains("jump = [\"\(world.server.user)@127.0.0.1:\(world.server.port)\"]"), "\(written)")
        // The daemon went through the bastion: two logins for one tunnel (the hop, then the target).
        #expect(world.server.log().occurrences(of: "Accepted publickey") >= 2)
    }

    @Test("connect through an ssh alias with ProxyCommand: the command carries the session, the gateway answers")
    func connectThroughProxyCommand() throws {
        let world = try World()
        defer { world.cleanup() }
        try """
        Host gw
          HostName 192.0.2.7
          Port \(world.server.port)
          User \(world.server.user)
          ProxyCommand socat - TCP:127.0.0.1:%p

        """.write(toFile: world.home + "/.ssh/config", atomically: true, encoding: .utf8)
        // 192.0.2.7 (TEST-NET-1) is reachable only through the command; its key is the server's.
        try world.server.writeKnownHosts(to: world.home + "/.ssh/known_hosts", host: "192.0.2.7")
        let result = try world.connect(target: "gw")
        #expect(result.status == 0, "\(result)")
        #expect(result.stdout.contains("through ProxyCommand socat - TCP:127.0.0.1:%p"), "\(result.stdout)")
        let written = try String(contentsOfFile: world.configPath, encoding: .utf8)
        #expect(written.contains("proxy_command = \"socat - TCP:127.0.0.1:%p\""), "\(written)")
    }

    @Test("a changed host key is refused by connect, loudly, with the fix")
    func changedHostKeyRefused() throws {
        let world = try World()
        defer { world.cleanup() }
        mkdir(world.home + "/.ssh", 0o700)
        let other = try SSHServer()
        defer { other.cleanup() }
        // known_hosts says another key belongs to this host and port.
        try "[127.0.0.1]:\(world.server.port) \(other.hostPublicKey)\n".write(
            toFile: world.home + "/.ssh/known_hosts", atomically: true, encoding: .utf8)
        let result = try world.connect(["--yes"])
        #expect(result.status == 1, "\(result)")
        #expect(result.stderr.contains("HAS CHANGED") && result.stderr.contains("ssh-keygen -R"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: world.configPath))
    }

    @Test(
        "token truth: a gateway that wants a token (401) is 'gateway refused the token' (exit 4), never 'Connected'; --token reaches the probes and the example references it"
    )
    func tokenTruth() async throws {
        let world = try World()
        defer { world.cleanup() }
        world.environmentToken = nil
        let trust = ["--fingerprint", world.server.hostKeyFingerprint]

        // No token anywhere: the gateway refuses the WebSocket (401).
        let none = try world.connect(trust)
        #expect(none.status == 4, "\(none)")
        #expect(none.stderr.contains("the gateway wants a token and none was found"), "\(none.stderr)")
        #expect(!none.stdout.contains("Connected"), "\(none.stdout)")

        // A wrong --token: refused, and said so with where the token came from.
        let wrong = try world.connect(["--token", "not-the-token"])
        #expect(wrong.status == 4, "\(wrong)")
        #expect(wrong.stderr.contains("gateway refused the token from --token"), "\(wrong.stderr)")
        #expect(!wrong.stdout.contains("Connected") && !(wrong.stdout + wrong.stderr).contains("not-the-token"))

        // The right --token: connected; the example references it, never prints it.
        let right = try world.connect(["--token", "s3cret-gateway-token"])
        #expect(right.status == 0, "\(right)")
        #expect(right.stdout.contains("Connected") && right.stdout.contains("from --token"), "\(right.stdout)")
        #expect(
            right.stdout.contains("TOKEN=…  # the token from --token") && right.stdout.contains("Bearer $TOKEN"),
            "\(right.stdout)")
        #expect(
            !right.stdout.contains("OPENCLAW_GATEWAY_TOKEN\"") && !right.stdout.contains("s3cret-gateway-token"),
            "\(right.stdout)")
        // The stand-in saw the token on the WebSocket upgrade of the right run.
        #expect(world.gateway.requests.contains { $0.hasPrefix("GET /") }, "\(world.gateway.requests)")

        // The token from the environment: the example names that variable.
        world.environmentToken = "s3cret-gateway-token"
        let fromEnvironment = try world.connect()
        #expect(fromEnvironment.status == 0, "\(fromEnvironment)")
        #expect(fromEnvironment.stdout.contains("Bearer $OPENCLAW_GATEWAY_TOKEN"), "\(fromEnvironment.stdout)")

        // Re-run with a remote port where nothing listens: the running tunnel's change fails its
        // pre-flight (channel), so it keeps serving and the file is put back as it was.
        let before = try String(contentsOfFile: world.configPath, encoding: .utf8)
        let closed = try FreePort.probe()
        let broken = try world.cli(
            [
                "connect", "\(world.server.user)@127.0.0.1:\(world.server.port)", "--port", "\(world.localPort)",
                "--remote-port", "\(closed)", "--timeout", "30",
            ])
        #expect(broken.status == 1, "\(broken)")
        #expect(broken.stderr.contains("channel failed") && broken.stderr.contains("as it was"), "\(broken.stderr)")
        #expect(try String(contentsOfFile: world.configPath, encoding: .utf8) == before)
        let status = try world.cli(["status", "--json"])
        #expect(
            status.stdout.contains("127.0.0.1:\(world.gateway.port)") && status.stdout.contains("\"state\":\"up\""),
            "\(status.stdout)")
    }

    @Test("status --deep: a probe answered 401 is TOKEN REFUSED (exit 4), never ok; the token source is shown")
    func statusDeepTokenRefused() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let gateway = try StandInGateway(token: "deep-token")
        defer { gateway.stop() }
        let port = try FreePort.probe()
        try fixture.writeConfig(
            fixture.tunnel(localPort: port, remotePort: gateway.port, extra: ["probe = \"websocket:/\""]))
        try fixture.startDaemon(environment: ["OPENCLAW_GATEWAY_TOKEN": "", "HOME": fixture.directory.path])
        try await fixture.waitForUp()
        let refused = try fixture.runCLI(["status", "--deep"])
        #expect(refused.status == 4, "\(refused)")
        #expect(
            refused.stdout.contains("TOKEN REFUSED") && refused.stdout.contains("gateway token: none found"),
            "\(refused.stdout)")
        let json = try fixture.statusJSON(["--deep"])
        let tunnel = try #require(json.report?.tunnels.first)
        #expect(
            tunnel.gateway?.ok == false && tunnel.gateway?.outcome == .tokenRefused
                && tunnel.gateway?.tokenSource == "none", "\(tunnel)")
        _ = fixture.daemon?.terminate(grace: .seconds(5))

        try fixture.startDaemon(environment: ["OPENCLAW_GATEWAY_TOKEN": "deep-token", "HOME": fixture.directory.path])
        try await fixture.waitForUp()
        let ok = try fixture.runCLI(["status", "--deep"])
        #expect(ok.status == 0, "\(ok)")
        #expect(ok.stdout.contains("gateway token: from $OPENCLAW_GATEWAY_TOKEN"), "\(ok.stdout)")
    }

    @Test("smaller truths: the no-key hint's ssh-copy-id has -p PORT; check and import do not offer --socket")
    func smallerTruths() throws {
        let world = try World()
        defer { world.cleanup() }
        unlink(world.home + "/.ssh/id_ed25519")
        unlink(world.home + "/.ssh/id_ed25519.pub")
        let noKey = try world.connect(["--yes"])
        #expect(noKey.status == 1, "\(noKey)")
        #expect(
            noKey.stderr.contains(
                "ssh-copy-id -i ~/.ssh/id_ed25519.pub -p \(world.server.port) \(world.server.user)@127.0.0.1"),
            "\(noKey.stderr)")
        for command in [["check"], ["import", "ssh-config"], ["import", "openclaw"]] {
            let help = try world.cli(command + ["--help"])
            #expect(
                help.status == 0 && help.stdout.contains("--config") && !help.stdout.contains("--socket"),
                "\(command): \(help.stdout)")
        }
        #expect(try world.cli(["status", "--help"]).stdout.contains("--socket"))
    }
}
