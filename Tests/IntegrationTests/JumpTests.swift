import EctoControl
import EctoTestSupport
import Foundation
import Testing

/// Jump hosts (`jump`, ssh's ProxyJump) and proxy commands (`proxy_command`) with real sshd servers:
/// every hop a real session with its own host key check and authentication.
@Suite("Jump hosts and proxy commands", .serialized)
struct JumpTests {
    /// A further sshd that accepts the fixture's client key, trusted in the fixture's known_hosts.
    static func bastion(_ fixture: TunnelFixture, extraConfig: [String] = []) throws -> SSHServer {
        let server = try SSHServer(extraConfig: extraConfig)
        try server.authorize(fixture.clientKey)
        try server.writeKnownHosts(to: fixture.knownHosts, append: true)
        try server.start()
        return server
    }

    /// The gateway of the namespace chains: an sshd on the server namespace's own loopback (port
    /// 2222 there), which the laptop (client namespace) has no route to; it accepts the fixture's key
    /// and is trusted as 127.0.0.1 in the fixture's known_hosts.
    static func gateway(_ fixture: FaultFixture, _ lab: NetworkLab) throws -> SSHServer {
        let gateway = try SSHServer(port: 2222, namespace: lab.serverNamespace, listenAddress: "127.0.0.1")
        do {
            try gateway.authorize(fixture.clientKey)
            try gateway.writeKnownHosts(to: fixture.knownHosts, host: "127.0.0.1", append: true)
            try gateway.start()
        } catch {
            gateway.cleanup()
            throw error
        }
        return gateway
    }

    /// Tunnel t of the namespace chains: to `remotePort` on the gateway's side through the
    /// fixture's sshd (the bastion), with a fast backoff and `extra` lines.
    static func chainTunnel(
        _ fixture: FaultFixture, _ gateway: SSHServer, remotePort: UInt16, extra: [String]
    )
        -> String
    {
        ([
            "[tunnels.t]",
            "target = \"\(gateway.user)@127.0.0.1:2222\"",
            "jump = [\"\(fixture.target)\"]",
            "local = \"127.0.0.1:\(fixture.localPort)\"",
            "remote = \"127.0.0.1:\(remotePort)\"",
            "known_hosts = \"\(fixture.knownHosts)\"",
            "identity_file = \"\(fixture.clientKey.privatePath)\"",
            "backoff_initial = \"200ms\"",
            "backoff_max = \"1s\"",
        ] + extra).joined(separator: "\n") + "\n"
    }

    @Test(
        "three jump hosts on loopback: four sessions in a chain, 8 MiB each way intact, each hop in sshd's log, idle asleep"
    )
    func threeHopChain() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let first = try Self.bastion(fixture)
        defer { first.cleanup() }
        let second = try Self.bastion(fixture)
        defer { second.cleanup() }
        let third = try Self.bastion(fixture)
        defer { third.cleanup() }
        let (echo, port) = try await fixture.startEchoTunnel(extra: [
            "jump = [\"\(first.user)@127.0.0.1:\(first.port)\", \"127.0.0.1:\(second.port)\", \"127.0.0.1:\(third.port)\"]"
        ])
        defer { echo.stop() }
        #expect(fixture.daemonLog.contains("through 3 hops"))
        let intact = (try? await offload { try echoRoundTrip(port: port, seed: 41, count: 8 << 20) }) ?? false
        #expect(intact, "\(fixture.daemonLog)")
        // Each hop forwarded the next one's connection: its sshd says so.
        #expect(first.log().contains("direct-tcpip") || first.log().contains("Connection from"), "\(first.logTail())")
        #expect(second.log().contains("Accepted publickey"), "\(second.logTail())")
        #expect(third.log().contains("Accepted publickey"), "\(third.logTail())")
        #expect(fixture.server.log().contains("Accepted publickey"))
        let (code, report) = try fixture.statusJSON()
        #expect(code == 0)
        #expect(report?.tunnels.first?.hop == nil)
        // Idle means asleep, also with three sessions and two relays on the thread.
        let pid = try #require(fixture.daemon?.pid)
        try await Task.sleep(for: .milliseconds(300))
        let before = try #require(ProcessTree.cpuSeconds(pid))
        try await Task.sleep(for: .seconds(2))
        let used = try #require(ProcessTree.cpuSeconds(pid)) - before
        #expect(used <= 0.05, "\(used) s of CPU in 2 s of idling")
    }

    @Test(
        "laptop → bastion → gateway in network namespaces: only the bastion reaches the gateway; killing the bastion mid-stream cuts it without a corrupted byte and the chain recovers"
    )
    func namespaceChainSurvivesBastionCrash() async throws {
        let fixture = try FaultFixture(lab: true)  // its sshd (on the veth) is the bastion
        defer { fixture.cleanup() }
        let lab = try #require(fixture.lab)
        // The gateway: an sshd on the server namespace's own loopback, which the laptop (client
        // namespace) has no route to.
        let gateway = try Self.gateway(fixture, lab)
        defer { gateway.cleanup() }
        let direct = try await fixture.clientSide { () -> Bool in
            (try? TCPClient.connect(port: 2222, timeout: .seconds(1)))?.close() != nil
        }
        #expect(!direct, "the laptop must not reach the gateway itself")
        let count = 256 << 20
        let source = try await fixture.serverSide { try SourceServer(seed: 7, byteCount: count) }
        try fixture.writeConfig(
            Self.chainTunnel(
                fixture, gateway, remotePort: source.port, extra: ["keepalive_interval = 2", "keepalive_count_max = 2"])
        )
        try fixture.startDaemon()
        try await fixture.waitForState(.up)
        let events = try await fixture.watchEvents()

        // A long stream through the chain; the bastion dies after the first 4 MiB arrived.
        let port = fixture.localPort
        let server = fixture.server
        let partial = try await fixture.clientSide { () -> PatternCheck in
            let client = try TCPClient.connect(port: port, ioTimeout: .seconds(20))
            defer { client.close() }
            let verifier = PatternVerifier(seed: 7)
            var killed = false
            while true {
                let bytes = (try? client.receive(upTo: 1 << 16)) ?? []
                if bytes.isEmpty { break }
                verifier.check(bytes)
                if !killed && verifier.received >= 4 << 20 {
                    killed = true
                    server.kill()
                }
            }
            return verifier.result
        }
        #expect(partial.firstMismatch == nil, "corrupted byte at \(String(describing: partial.firstMismatch))")
        #expect(partial.received >= 4 << 20 && partial.received < count, "\(partial.received) bytes")
        try await events.waitForSessionsEnded(1)
        #expect(fixture.daemonLog.contains("hop 1/1"), "the lost session names the hop:\n\(fixture.daemonLog)")

        try server.start()
        try await events.waitForSessionsEstablished(1, timeout: .seconds(20))
        events.close()
        let again = try await fixture.clientSide { () -> PatternCheck in
            let client = try TCPClient.connect(port: port, ioTimeout: .seconds(30))
            defer { client.close() }
            let verifier = PatternVerifier(seed: 7)
            while verifier.received < 16 << 20 {
                let bytes = try client.receive(upTo: 1 << 16)
                if bytes.isEmpty { break }
                verifier.check(bytes)
            }
            return verifier.result
        }
        #expect(again.firstMismatch == nil && again.received >= 16 << 20, "after recovery: \(again)")
    }

    @Test(
        "a silent bastion (blackholed path): keepalives find the dead chain, a client held meanwhile is served once the path is back"
    )
    func blackholedBastion() async throws {
        let fixture = try FaultFixture(lab: true)
        defer { fixture.cleanup() }
        let lab = try #require(fixture.lab)
        let gateway = try Self.gateway(fixture, lab)
        defer { gateway.cleanup() }
        let echo = try await fixture.serverSide { try EchoServer() }
        try fixture.writeConfig(
            Self.chainTunnel(
                fixture, gateway, remotePort: echo.port,
                extra: [
                    "keepalive_interval = 2", "keepalive_count_max = 2", "connect_timeout = \"3s\"",
                    "hold_timeout = \"30s\"",
                ]))
        try fixture.startDaemon()
        try await fixture.waitForState(.up)
        let port = fixture.localPort
        let events = try await fixture.watchEvents()
        defer { events.close() }
        try lab.blackhole()
        let lostAt = ContinuousClock.now
        try await events.waitForSessionsEnded(1, timeout: .seconds(10))
        let detection = lostAt.duration(to: .now)
        #expect(detection < .seconds(6), "dead chain found after \(detection) (keepalive 2 s × 2)")
        #expect(fixture.daemonLog.contains("dead peer"), "\(fixture.daemonLog)")
        // Whichever session found the silence first, status blames hop 1 (the silent one).
        let status = try Subprocess.run(
            try ProductLocator.binary("ecto-tunnel"), ["status", "--json"],
            extraEnvironment: ["ECTO_TUNNEL_SOCKET": fixture.directory.file("control.sock")], timeout: .seconds(10))
        let report = try? ControlProtocol.decoder().decode(StatusReport.self, from: Data(status.stdout.utf8))
        #expect(report?.tunnels.first?.hop?.hasPrefix("hop 1/1") == true, "\(status.stdout)")
        // A client arriving now is held; the path comes back; it is served on the new chain.
        let held = Task {
            try await fixture.clientSide { () -> Bool in
                let client = try TCPClient.connect(port: port, ioTimeout: .seconds(25))
                defer { client.close() }
                try client.sendPattern(seed: 71, count: 100_000)
                try client.shutdownWrite()
                return try client.receivePattern(seed: 71).isIntact(count: 100_000)
            }
        }
        try await Task.sleep(for: .seconds(2))
        try lab.unblackhole()
        #expect(try await held.value, "the held client was served intact after recovery")
        #expect(fixture.daemonLog.occurrences(of: "] connected") >= 2)
    }

    @Test("a bastion with AllowTcpForwarding no: backoff naming the hop, a handful of attempts, no storm")
    func bastionRefusesForwarding() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let bastion = try Self.bastion(fixture, extraConfig: ["AllowTcpForwarding no"])
        defer { bastion.cleanup() }
        let port = try FreePort.probe()
        try fixture.writeConfig(
            fixture.tunnel(
                localPort: port, remotePort: 9,
                extra: [
                    "jump = [\"127.0.0.1:\(bastion.port)\"]", "backoff_initial = \"500ms\"", "backoff_max = \"10s\"",
                ]))
        try fixture.startDaemon()
        try await fixture.waitForStatus("t", "backoff, the bastion refused to forward") {
            $0.state == .backoff && $0.lastError?.contains("refused to forward") == true
        }
        try await Task.sleep(for: .seconds(4))
        let (_, report) = try fixture.statusJSON()
        let tunnel = try #require(report?.tunnels.first)
        #expect(tunnel.state == .backoff || tunnel.state == .connecting, "\(tunnel.state)")
        #expect(
            tunnel.hop == "hop 1/1 (\(fixture.server.user)@127.0.0.1:\(bastion.port))",
            "\(String(describing: tunnel.hop))")
        #expect(
            tunnel.lastError?.contains("refused to forward to 127.0.0.1:\(fixture.server.port)") == true,
            "\(String(describing: tunnel.lastError))")
        // Backoff from 0.5 s doubling: 0, ~0.5, ~1.5, ~3.5 s → at most 5 attempts in ~4.5 s.
        let attempts = bastion.log().occurrences(of: "Accepted publickey")
        #expect(attempts >= 2 && attempts <= 5, "\(attempts) sessions on the bastion in ~4.5 s")
        // The final host was never reached.
        #expect(!fixture.server.log().contains("Accepted publickey"))
    }

    @Test("a jump host whose key changed: failed at once, naming the hop, no retries")
    func hopHostKeyMismatch() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let bastion = try Self.bastion(fixture)
        defer { bastion.cleanup() }
        try bastion.restart(newHostKey: true)
        let port = try FreePort.probe()
        try fixture.writeConfig(
            fixture.tunnel(localPort: port, remotePort: 9, extra: ["jump = [\"127.0.0.1:\(bastion.port)\"]"]))
        try fixture.startDaemon()
        try await fixture.waitForState(.failed)
        try await Task.sleep(for: .seconds(1))
        let (code, report) = try fixture.statusJSON()
        #expect(code == 3)
        let tunnel = try #require(report?.tunnels.first)
        #expect(tunnel.state == .failed)
        #expect(tunnel.hop?.hasPrefix("hop 1/1") == true)
        #expect(tunnel.lastError?.contains("hop 1/1") == true, "\(String(describing: tunnel.lastError))")
        #expect(fixture.daemonLog.occurrences(of: "connection attempt failed") == 1, "\(fixture.daemonLog)")
    }

    @Test("authentication refused at hop 2: failed after the usual retries, naming hop 2")
    func authRefusedAtSecondHop() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let first = try Self.bastion(fixture)
        defer { first.cleanup() }
        let second = try SSHServer()  // does not know the client key
        defer { second.cleanup() }
        try second.writeKnownHosts(to: fixture.knownHosts, append: true)
        try second.start()
        let port = try FreePort.probe()
        try fixture.writeConfig(
            fixture.tunnel(
                localPort: port, remotePort: 9,
                extra: ["jump = [\"127.0.0.1:\(first.port)\", \"127.0.0.1:\(second.port)\"]"]))
        try fixture.startDaemon()
        try await fixture.waitForState(.failed, timeout: .seconds(20))
        let (_, report) = try fixture.statusJSON()
        let tunnel = try #require(report?.tunnels.first)
        #expect(tunnel.state == .failed)
        #expect(tunnel.hop?.hasPrefix("hop 2/2 (") == true, "\(String(describing: tunnel.hop))")
        #expect(tunnel.lastError?.contains("hop 2/2") == true, "\(String(describing: tunnel.lastError))")
        #expect(fixture.daemonLog.occurrences(of: "connection attempt failed") <= 4)
    }

    @Test(
        "proxy_command through socat: the session runs over the command's stdio; the command never sees our descriptors"
    )
    func proxyCommandThroughSocat() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let marker = fixture.directory.file("proxy-fds")
        // Through a shell (the redirection needs one): records the descriptors the command got.
        let (echo, port) = try await fixture.startEchoTunnel(extra: [
            "proxy_command = \"sh -c 'ls /proc/self/fd > \(marker); exec socat - TCP:%h:%p'\""
        ])
        defer { echo.stop() }
        #expect(try await offload { try echoRoundTrip(port: port, seed: 51, count: 4 << 20) })
        // ls itself opens one descriptor for reading /proc/self/fd: 0, 1, 2 and that one.
        let fds = (try? String(contentsOfFile: marker, encoding: .utf8))?.split(separator: "\n").map(String.init) ?? []
        #expect(fds.count <= 4 && fds.prefix(3) == ["0", "1", "2"], "descriptors of the proxy command: \(fds)")
        // Reconnect: the old command is killed and reaped, a new one started.
        let events = try await fixture.watchEvents()
        _ = try fixture.runCLI(["reconnect", "t"])
        try await events.waitForSessionsEstablished(1)
        events.close()
        #expect(try await offload { try echoRoundTrip(port: port, seed: 52, count: 1 << 20) })
        let pid = try #require(fixture.daemon?.pid)
        try await waitUntil(timeout: .seconds(5), "one proxy child left") {
            ProcessTree.descendants(of: pid).count == 1
        }
    }

    @Test("proxy_command = ssh -W %h:%p through a bastion: the classic ProxyCommand, run without a shell")
    func proxyCommandThroughSSHW() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let bastion = try Self.bastion(fixture)
        defer { bastion.cleanup() }
        let command = [
            "ssh", "-F", "/dev/null", "-i", fixture.clientKey.privatePath, "-o", "IdentitiesOnly=yes", "-o",
            "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=\(fixture.knownHosts)", "-p",
            "\(bastion.port)",
            "-W", "%h:%p", "\(bastion.user)@127.0.0.1",
        ].joined(separator: " ")
        let (echo, port) = try await fixture.startEchoTunnel(extra: ["proxy_command = \"\(command)\""])
        defer { echo.stop() }
        #expect(fixture.daemonLog.contains("proxy.arguments=[\"ssh\""), "run directly, not through /bin/sh")
        #expect(try await offload { try echoRoundTrip(port: port, seed: 54, count: 4 << 20) })
        #expect(bastion.log().contains("Accepted publickey"))
    }

    @Test("host_key_policy = accept-new records a new jump host under its own name and port, then trusts it")
    func acceptNewRecordsTheHop() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let bastion = try SSHServer()
        defer { bastion.cleanup() }
        try bastion.authorize(fixture.clientKey)
        try bastion.start()  // not in known_hosts
        let (echo, port) = try await fixture.startEchoTunnel(extra: [
            "jump = [\"127.0.0.1:\(bastion.port)\"]", "host_key_policy = \"accept-new\"",
        ])
        defer { echo.stop() }
        #expect(
            fixture.daemonLog.contains("permanently added jump host [127.0.0.1]:\(bastion.port)"),
            "\(fixture.daemonLog)")
        let known = (try? String(contentsOfFile: fixture.knownHosts, encoding: .utf8)) ?? ""
        #expect(known.contains("[127.0.0.1]:\(bastion.port) \(bastion.hostPublicKey)"), "\(known)")
        #expect(try await offload { try echoRoundTrip(port: port, seed: 55, count: 100_000) })
    }

    @Test("a proxy command that closes its stderr and goes on: the tunnel works and the daemon idles asleep")
    func proxyCommandClosesStderr() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let (echo, port) = try await fixture.startEchoTunnel(extra: [
            "proxy_command = \"sh -c 'echo starting >&2; exec 2>&-; exec socat - TCP:%h:%p'\""
        ])
        defer { echo.stop() }
        #expect(fixture.daemonLog.contains("proxy_command stderr: starting"))
        #expect(try await offload { try echoRoundTrip(port: port, seed: 53, count: 1 << 20) })
        let pid = try #require(fixture.daemon?.pid)
        try await Task.sleep(for: .milliseconds(300))
        let before = try #require(ProcessTree.cpuSeconds(pid))
        try await Task.sleep(for: .seconds(2))
        let used = try #require(ProcessTree.cpuSeconds(pid)) - before
        #expect(used <= 0.05, "\(used) s of CPU in 2 s of idling")
    }

    @Test("a proxy command that exits at once: backoff, its stderr in the log tagged, no storm")
    func proxyCommandExitsAtOnce() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let port = try FreePort.probe()
        try fixture.writeConfig(
            fixture.tunnel(
                localPort: port, remotePort: 9,
                extra: [
                    "proxy_command = \"sh -c 'echo no route to %h >&2; exit 3'\"", "backoff_initial = \"500ms\"",
                    "backoff_max = \"10s\"",
                ]))
        try fixture.startDaemon()
        // The log, not an event: the command's stderr is shown only there (and this test counts its runs).
        try await fixture.waitForLog("proxy_command stderr: no route to 127.0.0.1")
        try await Task.sleep(for: .seconds(4))
        let log = fixture.daemonLog
        let runs = log.occurrences(of: "proxy_command stderr: no route to 127.0.0.1")
        #expect(runs >= 2 && runs <= 5, "\(runs) runs in ~4 s:\n\(log)")
        let (_, report) = try fixture.statusJSON()
        let tunnel = try #require(report?.tunnels.first)
        #expect(tunnel.state == .backoff || tunnel.state == .connecting)
        #expect(log.contains("exited with status 3") || tunnel.lastError != nil)
        let pid = try #require(fixture.daemon?.pid)
        // Each run was killed and reaped with its attempt: no zombies pile up.
        #expect(ProcessTree.descendants(of: pid, includingZombies: true).count <= 1)
    }

    @Test(
        "check: jump and proxy_command together are an error with file:line and key; a jump host missing from known_hosts is a warning"
    )
    func checkRouteKeys() throws {
        let directory = try TestDirectory()
        defer { directory.cleanup() }
        let (path, result) = try checkConfig(
            in: directory,
            """
            [tunnels.t]
            target = "ops@10.0.5.20"
            local = "127.0.0.1:18789"
            remote = "127.0.0.1:18789"
            known_hosts = "KNOWN_HOSTS"
            jump = ["bastion.example.net"]
            proxy_command = "nc %h %p"

            """)
        #expect(result.status == 1)
        #expect(
            result.stderr.contains("\(path):7: tunnels.t.proxy_command: set either jump or proxy_command, not both"),
            "\(result.stderr)")
        let knownHosts = try directory.write(
            "known_hosts", "10.0.5.20 \(try KeyPair.generate(type: "ed25519", in: directory, name: "k").publicLine)\n")
        let good = try directory.write(
            "good.toml",
            """
            [tunnels.t]
            target = "ops@10.0.5.20"
            local = "127.0.0.1:18789"
            remote = "127.0.0.1:18789"
            known_hosts = "\(knownHosts)"
            jump = ["bastion.example.net:2200"]

            """)
        let warned = try Subprocess.run(try ProductLocator.binary("ecto-tunnel"), ["check", "--config", good])
        #expect(
            warned.stdout.contains("tunnels.t.jump:") && warned.stdout.contains("[bastion.example.net]:2200"),
            "\(warned.stdout)\(warned.stderr)")
    }

    @Test("import ssh-config of a Host behind a ProxyJump writes jump, and the tunnel goes through the bastion")
    func importProxyJumpEndToEnd() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let bastion = try Self.bastion(fixture)
        defer { bastion.cleanup() }
        let echo = try EchoServer()
        defer { echo.stop() }
        let port = try FreePort.probe()
        let sshConfig = try fixture.directory.write(
            "ssh_config",
            """
            Host bastion
                HostName 127.0.0.1
                Port \(bastion.port)
                User \(bastion.user)

            Host gw
                HostName 127.0.0.1
                Port \(fixture.server.port)
                User \(fixture.server.user)
                ProxyJump bastion
                LocalForward \(port) 127.0.0.1:\(echo.port)
                IdentityFile \(fixture.clientKey.privatePath)
                UserKnownHostsFile \(fixture.knownHosts)

            """)
        try fixture.writeConfig("")
        let imported = try fixture.runCLI([
            "import", "ssh-config", "gw", "--ssh-config", sshConfig, "--write", "--config", fixture.configPath,
        ])
        #expect(imported.status == 0, "\(imported.stdout)\(imported.stderr)")
        let written = (try? String(contentsOfFile: fixture.configPath, encoding: .utf8)) ?? ""
        #expect(written.contains("jump = [\"\(bastion.user)@127.0.0.1:\(bastion.port)\"]"), "\(written)")
        try fixture.startDaemon()
        try await fixture.waitForUp()
        #expect(try await offload { try echoRoundTrip(port: port, seed: 61, count: 1 << 20) })
        #expect(bastion.log().contains("Accepted publickey"), "the session went through the bastion")
    }
}
