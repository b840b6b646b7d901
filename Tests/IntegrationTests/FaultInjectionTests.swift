import EctoTestSupport
import Foundation
import Testing
import EctoStatus

/// Faults between the daemon and a real sshd: crashes and restarts, link cuts, half-open paths,
/// loss, a replaced host key, a revoked client key, outages, and many reconnect cycles.
///
/// Faults that need a network (link, blackhole, loss) run in a `NetworkLab`: sshd listens on port 22
/// of the lab's server namespace, the echo/sink servers on that namespace's 127.0.0.1, and the
/// daemon and its clients run in the client namespace. The others run on loopback, which is faster.
/// Every test prints what it measured on a line starting with `[figure]`.
@Suite("Fault injection against a real sshd", .serialized)
struct FaultInjectionTests {
    // MARK: The lab itself

    @Test("the network lab: isolated namespaces, TCP across the veth, and each fault acting on it")
    func networkLabWorks() async throws {
        let began = ContinuousClock.now
        let lab = try NetworkLab()
        defer { lab.cleanup() }
        let created = began.duration(to: .now)
        let names = (lab.serverNamespace, lab.clientNamespace)
        #expect(NetworkLab.namespaces().contains(names.0) && NetworkLab.namespaces().contains(names.1))
        let serverAddress = lab.serverAddress

        // A server on the server's veth address, a client in the client namespace.
        let echo = try await lab.withNamespace(lab.serverNamespace) { try EchoServer(host: serverAddress) }
        defer { echo.stop() }
        let port = echo.port
        func attempt(
            timeout: Duration = .seconds(2), ioTimeout: Duration = .seconds(5)
        ) async throws
            -> Result<Bool, TestSupportError>
        {
            try await lab.withNamespace(lab.clientNamespace) {
                do {
                    let client = try TCPClient.connect(
                        host: serverAddress, port: port, timeout: timeout, ioTimeout: ioTimeout)
                    defer { client.close() }
                    try client.sendAll("across")
                    try client.shutdownWrite()
                    return .success(try client.receiveAllString() == "across")
                } catch let error as TestSupportError {
                    return .failure(error)
                }
            }
        }
        #expect(try await attempt().succeeded)

        // The host's loopback is not the namespace's: a server of ours on 127.0.0.1 is not there.
        let hostEcho = try EchoServer()
        defer { hostEcho.stop() }
        let hostPort = hostEcho.port
        let isolated = try await lab.withNamespace(lab.clientNamespace) { () -> Bool in
            do {
                _ = try TCPClient.connect(port: hostPort, timeout: .seconds(1))
                return false
            } catch let error as TestSupportError {
                return error.isConnectionRefused
            }
        }
        #expect(isolated)

        // Blackhole: the connect times out (no answer at all), and the drops are counted.
        try lab.blackhole()
        let blackholed = try await attempt(timeout: .milliseconds(500))
        #expect(blackholed.failureKind == .timeout, "\(blackholed)")
        #expect(try lab.droppedPackets(chain: "ecto-blackhole", in: lab.serverNamespace) > 0)
        try lab.unblackhole()
        #expect(try await attempt().succeeded)

        // Reset: refused at once.
        try lab.rejectWithReset()
        let rejected = try await attempt()
        #expect(rejected.failureErrno == ECONNREFUSED, "\(rejected)")
        try lab.unreject()

        // Link down: no route; then back up.
        try lab.linkDown()
        let unreachable = try await attempt()
        #expect(unreachable.failureErrno == ENETUNREACH, "\(unreachable)")
        try lab.linkUp()
        try await waitUntil(timeout: .seconds(5), "the link to come back") {
            (try? await attempt())?.succeeded == true
        }

        // Loss: traffic still gets through, some of it dropped.
        try lab.loss(percent: 50)
        var lossDrops = 0
        for _ in 0..<20 where lossDrops == 0 {
            _ = try await attempt(timeout: .milliseconds(300), ioTimeout: .milliseconds(300))
            lossDrops =
                try lab.droppedPackets(chain: "ecto-loss", in: lab.serverNamespace)
                + lab.droppedPackets(chain: "ecto-loss", in: lab.clientNamespace)
        }
        #expect(lossDrops > 0)
        try lab.clearFaults()

        echo.stop()
        lab.cleanup()
        lab.cleanup()  // idempotent
        #expect(!NetworkLab.namespaces().contains(names.0) && !NetworkLab.namespaces().contains(names.1))
        print(
            "[figure] network lab \(names.0)/\(names.1) \(lab.subnet): created in \(created.ms); echo, isolation, blackhole, "
                + "reset, link, loss as expected; whole check \(began.duration(to: .now).ms)")
    }

    // MARK: Server crash and restart

    @Test(
        "sshd killed, restarted 2 s later on the same port, then again 1 s later: each time a new connection works within 1 s of sshd listening"
    )
    func sshdKilledAndRestarted() async throws {
        let fixture = try FaultFixture()
        defer { fixture.cleanup() }
        try await fixture.startEchoTunnel()  // default backoff: 1 s … 60 s
        let port = fixture.localPort
        #expect(try await fixture.clientSide { try echoRoundTrip(port: port, seed: 101, count: 10_000) })

        // The second outage comes 1 s after the first recovery: that session never reaches the
        // 30 s grace, which is the case that used to wait the grown backoff (4-6 s).
        let events = try await fixture.watchEvents()
        defer { events.close() }
        for (round, outage) in [(1, Duration.seconds(2)), (2, .seconds(1))] {
            let logBefore = fixture.daemonLog.count
            fixture.server.kill()
            try await events.waitForSessionsEnded(round)
            try await Task.sleep(for: outage)
            try fixture.server.start()
            let listening = ContinuousClock.now
            // Connects at once: held until the session is up, then served.
            let (ok, elapsed) = try await fixture.clientSide { () -> (Bool, Duration) in
                let ok = try echoRoundTrip(port: port, seed: 101 + UInt64(round), count: 10_000)
                return (ok, listening.duration(to: .now))
            }
            let outageLog = String(fixture.daemonLog.dropFirst(logBefore))
            let retries = outageLog.lines(containing: "retrying in").map { $0.after("retrying in ") }
            print(
                "[figure] sshd restart \(round): first forwarded echo \(elapsed.ms) after sshd listened again (contract ≤ 1000 ms); "
                    + "\(outageLog.occurrences(of: "connection attempt failed")) failed attempts during/after the \(outage) outage, waits: \(retries)"
            )
            #expect(ok)
            #expect(elapsed <= .seconds(1), "restart \(round); log:\n\(fixture.daemonLog)")
            try await Task.sleep(for: .seconds(1))
        }
    }

    // MARK: Network faults (lab)

    @Test("link down 5 s, then up: the tunnel recovers by itself")
    func linkDownThenUp() async throws {
        let fixture = try FaultFixture(lab: true)
        defer { fixture.cleanup() }
        let lab = try #require(fixture.lab)
        // A short keepalive (2 s is libssh2's shortest), so that the outage is noticed (dead peer,
        // 4 s) while the link is down.
        try await fixture.startEchoTunnel(extra: ["keepalive_interval = \"2s\"", "keepalive_count_max = 2"])
        let port = fixture.localPort
        #expect(try await fixture.clientSide { try echoRoundTrip(port: port, seed: 201, count: 10_000) })

        let logBefore = fixture.daemonLog.count
        try lab.linkDown()
        try await Task.sleep(for: .seconds(5))  // the outage
        try lab.linkUp()
        let recovered = try await fixture.echoUntilItWorks(port: port, seed: 202, within: .seconds(30))
        let outageLog = String(fixture.daemonLog.dropFirst(logBefore))
        let failures = outageLog.lines(containing: "connection attempt failed").map { $0.after("failed: ") }
        print(
            "[figure] link down 5 s: recovered \(recovered.map { $0.ms } ?? "NOT within 30 s") after link up; "
                + "session lost: \(outageLog.lines(containing: "session lost").map { $0.after("session lost: ") }); "
                + "\(failures.count) failed attempts \(Set(failures).sorted())")
        #expect(recovered != nil, "no echo within 30 s of link up; log:\n\(fixture.daemonLog)")
    }

    @Test("blackhole (half-open): dead peer detected within keepalive 2 s × 3 + 1 s, then recovery")
    func blackholeDeadPeer() async throws {
        let fixture = try FaultFixture(lab: true)
        defer { fixture.cleanup() }
        let lab = try #require(fixture.lab)
        try await fixture.startEchoTunnel(extra: ["keepalive_interval = \"2s\"", "keepalive_count_max = 3"])
        let port = fixture.localPort
        #expect(try await fixture.clientSide { try echoRoundTrip(port: port, seed: 301, count: 10_000) })

        let events = try await fixture.watchEvents()
        defer { events.close() }
        let startWall = Date()
        let start = ContinuousClock.now
        try lab.blackhole()
        try await events.waitForSessionsEnded(1, timeout: .seconds(15))
        let polled = start.duration(to: .now)
        let lostLine = fixture.daemonLog.lines(containing: "session lost").first ?? ""
        let logged = FaultFixture.timestamp(ofLogLine: lostLine).map { $0.timeIntervalSince(startWall) }
        let detected = logged.map { Duration.milliseconds(Int64($0 * 1000)) } ?? polled
        #expect(lostLine.contains("dead peer"), "expected a dead peer, got: \(lostLine)")
        #expect(detected <= .seconds(7), "dead peer after \(detected.ms); log:\n\(fixture.daemonLog)")
        #expect(try lab.droppedPackets(chain: "ecto-blackhole", in: lab.serverNamespace) > 0)

        try lab.unblackhole()
        let recovered = try await fixture.echoUntilItWorks(port: port, seed: 302, within: .seconds(30))
        print(
            "[figure] blackhole: session lost \(detected.ms) after the blackhole started (log timestamp; polled \(polled.ms)) "
                + "(contract ≤ 7000 ms): \(lostLine.after("session lost: ")); echo again \(recovered.map { $0.ms } ?? "NOT within 30 s") after unblackhole"
        )
        #expect(recovered != nil, "no recovery within 30 s; log:\n\(fixture.daemonLog)")
    }

    // 20 % of the packets carrying the data are lost (the recipe in shared/testing.md: a random
    // DROP on INPUT where the data arrives). With 20 % on both directions, a segment and its
    // retransmissions can all be lost for longer than the dead-peer time (45 s by default): TCP
    // stalls completely, our keepalive waits behind the stuck segment, and the session is
    // replaced as dead. That is the dead-peer rule working; docs/reliability.md says so.
    @Test("20 % random loss on the data path: 16 MiB arrive intact")
    func randomLoss() async throws {
        try await transferUnderLoss(bothWays: false)
    }

    // Both ways, as the issue asks, in a lab whose TCP behaves like a real lossy link's (wire-sized
    // packets, timestamps off, rto_min 10 ms: see `NetworkLab.init(lossTolerantTCP:)`). Without
    // that, on this ~20 µs veth a dropped "packet" is a 64 KiB GSO batch and retransmission timers
    // balloon (rto 29.7 s seen with `ss -ti`), so plain TCP alone (no tunnel) moved 16 MiB within
    // 60 s in only 2 of 8 runs: a stall of the kernel's TCP, not of the daemon.
    @Test("20 % random loss both ways (loss-tolerant lab TCP): 16 MiB arrive intact")
    func randomLossBothWays() async throws {
        try await transferUnderLoss(bothWays: true)
    }

    private func transferUnderLoss(bothWays: Bool) async throws {
        let fixture = try FaultFixture(lab: true, lossTolerantTCP: bothWays)
        defer { fixture.cleanup() }
        let lab = try #require(fixture.lab)
        let count = 16 << 20
        let sink = try await fixture.serverSide { try SinkServer(seed: 401) }
        try fixture.writeConfig(fixture.tunnel(remotePort: sink.port))
        try fixture.startDaemon(arguments: ["--log-level", "info"])
        try await fixture.waitForState(.up)
        let port = fixture.localPort

        try lab.loss(percent: 20, arrivingIn: bothWays ? nil : [lab.serverNamespace])
        defer { try? lab.clearLoss() }
        let (verdict, elapsed) = try await fixture.clientSide { () -> (Result<PatternCheck, Error>, Duration) in
            let start = ContinuousClock.now
            let client = try TCPClient.connect(port: port, ioTimeout: .seconds(120))
            defer { client.close() }
            // Bound the whole transfer, not only each send/receive.
            DispatchQueue.global().asyncAfter(deadline: .now() + 120) { client.abort() }
            let verdict = Result {
                try client.sendPattern(seed: 401, count: count)
                try client.shutdownWrite()
                return try client.receiveVerdict()
            }
            return (verdict, start.duration(to: .now))
        }
        let droppedToServer = try lab.droppedPackets(chain: "ecto-loss", in: lab.serverNamespace)
        let droppedToClient = try lab.droppedPackets(chain: "ecto-loss", in: lab.clientNamespace)
        print(
            "[figure] 20 % loss \(bothWays ? "both ways, loss-tolerant lab TCP" : "on the data path"): 16 MiB through "
                + "the tunnel in \(elapsed.ms) (\(mbPerSecond(count, elapsed))), packets dropped \(droppedToServer) to the server, "
                + "\(droppedToClient) to the client; verdict \(verdict); sessions lost: "
                + "\(fixture.daemonLog.lines(containing: "session lost").map { $0.after("session lost: ") })")
        guard case .success(let check) = verdict else {
            Issue.record("the transfer failed: \(verdict); daemon log:\n\(fixture.daemonLog)")
            return
        }
        #expect(check.isIntact(count: count), "\(check)")
        #expect(elapsed <= .seconds(120))
        #expect(droppedToServer > 0)
        if bothWays { #expect(droppedToClient > 0) }
    }

    // MARK: Server-side changes that must stop the retries

    @Test("host key replaced on the server: failed, both fingerprints logged, no more attempts")
    func hostKeyReplaced() async throws {
        let fixture = try FaultFixture()
        defer { fixture.cleanup() }
        try await fixture.startEchoTunnel(extra: FaultFixture.fastBackoff)
        let old = fixture.server.hostKeyFingerprint

        try fixture.server.restart(newHostKey: true)
        let new = fixture.server.hostKeyFingerprint
        #expect(old != new)
        try await fixture.waitForState(.failed, timeout: .seconds(15))
        let failedAt = ContinuousClock.now
        let log = fixture.daemonLog
        #expect(log.contains("HOST KEY CHANGED"), "log:\n\(log)")
        #expect(log.contains(old), "old fingerprint \(old) missing; log:\n\(log)")
        #expect(log.contains(new), "new fingerprint \(new) missing; log:\n\(log)")
        let attempts = log.occurrences(of: "connection attempt failed")
        try await Task.sleep(for: .seconds(3))  // the observation window
        let later = fixture.daemonLog.occurrences(of: "connection attempt failed")
        print(
            "[figure] host key replaced: failed after \(attempts) failed attempt(s); \(later - attempts) more in the "
                + "\(failedAt.duration(to: .now).ms) after failed")
        #expect(attempts == 1)
        #expect(later == attempts, "attempts after failed; log:\n\(fixture.daemonLog)")
        #expect(fixture.daemon?.isRunning == true)
    }

    @Test("authorized key removed (revoked, sessions killed): 3 authentication attempts, then failed")
    func authorizedKeyRemoved() async throws {
        let fixture = try FaultFixture()
        defer { fixture.cleanup() }
        try await fixture.startEchoTunnel(extra: FaultFixture.fastBackoff)

        try fixture.server.revokeAll()
        let killed = fixture.server.killSessions()
        #expect(killed == 1)
        let start = ContinuousClock.now
        try await fixture.waitForState(.failed, timeout: .seconds(15))
        let elapsed = start.duration(to: .now)
        let log = fixture.daemonLog
        let attempts = log.occurrences(of: "connection attempt failed")
        // Per attempt, not counting the final "tunnel failed …" line that repeats the reason.
        let refused = log.occurrences(of: "connection attempt failed: the server refused authentication")
        try await Task.sleep(for: .seconds(3))  // the observation window
        let later = fixture.daemonLog.occurrences(of: "connection attempt failed")
        print(
            "[figure] key revoked: failed \(elapsed.ms) after the sessions were killed, after \(attempts) failed attempts "
                + "(\(refused) authentication refusals); \(later - attempts) more in the 3 s after")
        #expect(attempts == 3, "log:\n\(log)")
        #expect(refused == 3, "log:\n\(log)")
        #expect(later == attempts, "no retries after failed; log:\n\(fixture.daemonLog)")
    }

    // MARK: Clients during an outage

    @Test("a client connecting during a 3 s outage is held and served after recovery")
    func clientDuringOutage() async throws {
        let fixture = try FaultFixture()
        defer { fixture.cleanup() }
        try await fixture.startEchoTunnel()  // defaults: hold_timeout 10 s, backoff 1 s …
        let port = fixture.localPort

        let events = try await fixture.watchEvents()
        defer { events.close() }
        fixture.server.stop()
        try await events.waitForSessionsEnded(1)
        let outageStart = ContinuousClock.now
        // The client connects while sshd is down; it must be accepted (not refused or reset) and
        // then served once sshd is back.
        let connected = try await fixture.clientSide { () -> Result<TCPClient, TestSupportError> in
            do {
                let client = try TCPClient.connect(port: port, timeout: .seconds(2), ioTimeout: .seconds(15))
                try client.sendPattern(seed: 501, count: 100_000)
                try client.shutdownWrite()
                return .success(client)
            } catch let error as TestSupportError {
                return .failure(error)
            }
        }
        let client = try connected.get()
        defer { client.close() }
        // The log, not an event: a held client changes only the `connections` counter, and
        // counters alone publish no event.
        try await fixture.waitForLog("holding client until the session is up")
        let remaining = Duration.seconds(3) - outageStart.duration(to: .now)
        if remaining > .zero { try await Task.sleep(for: remaining) }  // the rest of the outage
        #expect(fixture.daemonLog.occurrences(of: "] connected") == 1, "connected during the outage?")
        #expect(events.sessionsEstablished() == 0, "up during the outage?\n\(EventWatcher.describe(events.events))")
        try fixture.server.start()
        let back = ContinuousClock.now
        let check = try await offload { try client.receivePattern(seed: 501) }
        let served = back.duration(to: .now)
        print(
            "[figure] client during a 3 s outage: accepted at once, served \(served.ms) after sshd listened again "
                + "(\(outageStart.duration(to: .now).ms) after it connected)")
        #expect(check.isIntact(count: 100_000), "\(check); log:\n\(fixture.daemonLog)")
    }

    // MARK: Soak

    @Test("100 forced reconnect cycles: descriptors back to the start, RSS growth < 4 MiB")
    func reconnectCyclesLeakNothing() async throws {
        let fixture = try FaultFixture()
        defer { fixture.cleanup() }
        try await fixture.startEchoTunnel(
            extra: ["backoff_initial = \"50ms\"", "backoff_max = \"200ms\""], arguments: ["--log-level", "info"])
        let port = fixture.localPort
        let pid = try #require(fixture.daemon?.pid)
        #expect(try await fixture.clientSide { try echoRoundTrip(port: port, seed: 601, count: 10_000) })
        // Subscribed before the descriptors are counted: its connection is in both counts.
        let events = try await fixture.watchEvents()
        defer { events.close() }
        // The daemon closes a finished connection on its next pass: wait until no client socket of
        // that echo is left (at most: listener, SSH socket, eventfd, stdio, …).
        try await fixture.waitForSettledDescriptors(pid)
        let fdsStart = try #require(ProcessTree.openFileCount(pid))
        let rssStart = try #require(ProcessTree.residentKiB(pid))
        let filesStart = ProcessTree.openFiles(pid)

        let cycles = 100
        let start = ContinuousClock.now
        let deadline = start.advanced(by: .seconds(120))
        var completed = 0
        for cycle in 1...cycles {
            guard ContinuousClock.now < deadline else { break }
            // A forwarded connection is open when the session dies: it must be closed.
            let client = try await fixture.clientSide { () -> TCPClient in
                let client = try TCPClient.connect(port: port, ioTimeout: .seconds(10))
                try client.sendAll("ping \(cycle)")
                _ = try client.receive(exactly: "ping \(cycle)".utf8.count)
                return client
            }
            let killed = fixture.server.killSessions()
            #expect(killed == 1, "cycle \(cycle): \(killed) sessions")
            let closed = try await offload { client.waitForClose(timeout: .seconds(5)) }
            client.close()
            #expect(closed, "cycle \(cycle): the forwarded connection stayed open after the session died")
            try await events.waitForSessionsEstablished(cycle, timeout: .seconds(15))
            completed = cycle
        }
        let cycleTime = start.duration(to: .now)
        #expect(try await fixture.clientSide { try echoRoundTrip(port: port, seed: 602, count: 10_000) })
        try await fixture.waitForSettledDescriptors(pid, atMost: fdsStart + 2)
        let fdsEnd = try #require(ProcessTree.openFileCount(pid))
        let rssEnd = try #require(ProcessTree.residentKiB(pid))
        let growth = rssEnd - rssStart
        print(
            "[figure] \(completed) reconnect cycles in \(cycleTime.ms) (\(completed > 0 ? (cycleTime / completed).ms : "-") each): "
                + "fds \(fdsStart) → \(fdsEnd), VmRSS \(rssStart) KiB → \(rssEnd) KiB (\(growth >= 0 ? "+" : "")\(growth) KiB)"
        )
        #expect(completed == cycles, "only \(completed) cycles within 120 s")
        #expect(abs(fdsEnd - fdsStart) <= 2, "descriptors: before \(filesStart), after \(ProcessTree.openFiles(pid))")
        #expect(growth < 4096)
    }
}

// MARK: - Fixture

/// A real sshd, a client key it accepts, a known_hosts that trusts it, and the real `ecto-tunnel`
/// binary, either all on loopback (like `TunnelFixture`) or, with `lab: true`, across a
/// `NetworkLab`: sshd on port 22 of the server namespace, the daemon in the client namespace.
/// Servers behind sshd are made with `serverSide` (in the server namespace's loopback) and clients
/// with `clientSide` (in the client namespace, where the daemon listens).
///
/// `@unchecked Sendable`: the daemon and the server list are set up by the test's own task and only
/// read by the closures it awaits.
final class FaultFixture: @unchecked Sendable {
    let lab: NetworkLab?
    let directory: TestDirectory
    let server: SSHServer
    let clientKey: KeyPair
    let knownHosts: String
    let configPath: String
    /// Where the daemon listens (127.0.0.1 of its namespace).
    let localPort: UInt16
    private(set) var daemon: Subprocess?
    private var servers: [AnyObject & Sendable] = []
    private let serversLock = NSLock()

    static let fastBackoff = ["backoff_initial = \"100ms\"", "backoff_max = \"500ms\""]

    init(lab useLab: Bool = false, lossTolerantTCP: Bool = false) throws {
        let lab = useLab ? try NetworkLab(lossTolerantTCP: lossTolerantTCP) : nil
        do {
            self.lab = lab
            directory = try TestDirectory(prefix: "ecto-fault")
            if let lab {
                server = try SSHServer(namespace: lab.serverNamespace, listenAddress: lab.serverAddress)
                localPort = 18789  // the client namespace's loopback is ours alone
            } else {
                server = try SSHServer()
                localPort = try FreePort.probe()
            }
            clientKey = try KeyPair.generate(type: "ed25519", in: directory, name: "id_client")
            try server.authorize(clientKey)
            knownHosts = directory.file("known_hosts")
            try server.writeKnownHosts(to: knownHosts, host: server.listenAddress)
            configPath = directory.file("config.toml")
            try server.start()
        } catch {
            lab?.cleanup()
            throw error
        }
    }

    deinit { cleanup() }

    /// Stops the daemon, the servers and sshd, then deletes the lab's namespaces (idempotent).
    func cleanup() {
        if let daemon, daemon.isRunning { _ = daemon.terminate(grace: .seconds(3)) }
        let servers = serversLock.withLock { () -> [AnyObject & Sendable] in
            defer { self.servers = [] }
            return self.servers
        }
        for server in servers {
            (server as? EchoServer)?.stop()
            (server as? SinkServer)?.stop()
            (server as? SourceServer)?.stop()
        }
        server.cleanup()
        lab?.cleanup()
        directory.cleanup()
    }

    var target: String { "\(server.user)@\(server.listenAddress):\(server.port)" }

    /// One `[tunnels.t]` table with the daemon's defaults except where `extra` says otherwise.
    func tunnel(remotePort: UInt16, extra: [String] = []) -> String {
        ([
            "[tunnels.t]",
            "target = \"\(target)\"",
            "local = \"127.0.0.1:\(localPort)\"",
            "remote = \"127.0.0.1:\(remotePort)\"",
            "known_hosts = \"\(knownHosts)\"",
            "identity_file = \"\(clientKey.privatePath)\"",
        ] + extra).joined(separator: "\n") + "\n"
    }

    func writeConfig(_ text: String) throws {
        _ = try directory.write("config.toml", text)
    }

    /// Starts `ecto-tunnel run` (in the client namespace with a lab), without any ssh-agent.
    @discardableResult
    func startDaemon(arguments: [String] = ["--log-level", "debug"]) throws -> Subprocess {
        var environment = ProcessInfo.processInfo.environment
        environment["SSH_AUTH_SOCK"] = nil
        environment["ECTO_TUNNEL_SOCKET"] = directory.file("control.sock")
        let binary = try ProductLocator.binary("ecto-tunnel")
        let arguments = ["run", "--config", configPath] + arguments
        let process: Subprocess
        if let lab {
            process = try lab.spawn(
                in: lab.clientNamespace, binary, arguments, environment: environment,
                stdoutPath: directory.file("daemon.out"), stderrPath: directory.file("daemon.log"))
        } else {
            process = try Subprocess(
                binary, arguments, environment: environment, stdoutPath: directory.file("daemon.out"),
                stderrPath: directory.file("daemon.log"))
        }
        daemon = process
        return process
    }

    var daemonLog: String { daemon?.stderr() ?? "" }

    func waitForLog(
        _ text: String, timeout: Duration = .seconds(10), count: Int = 1, fileID: String = #fileID, line: Int = #line
    ) async throws {
        try await waitForLogText(text, count: count, timeout: timeout, fileID: fileID, line: line) { daemonLog }
    }

    /// The common setup: an echo server on the server side (stopped by `cleanup()`), tunnel t to it
    /// (with `extra`), the daemon started with `arguments`, and t up.
    @discardableResult
    func startEchoTunnel(
        extra: [String] = [], arguments: [String] = ["--log-level", "debug"]
    ) async throws
        -> EchoServer
    {
        let echo = try await serverSide { try EchoServer() }
        try writeConfig(tunnel(remotePort: echo.port, extra: extra))
        try startDaemon(arguments: arguments)
        try await waitForState(.up)
        return echo
    }

    /// Waits for tunnel t's state on `GET /v1/events` (the control socket is a path: reachable
    /// from our namespace too).
    func waitForState(
        _ wanted: TunnelState, timeout: Duration = .seconds(10), fileID: String = #fileID, line: Int = #line
    ) async throws {
        try await waitForTunnelState(
            socket: directory.file("control.sock"), wanted, ["t"], timeout: timeout, fileID: fileID, line: line
        ) { [weak self] in self?.daemonLog ?? "" }
    }

    /// Makes a server (echo, sink, source) where sshd's forwarded connections go: the server
    /// namespace's loopback with a lab, else ours. It is stopped by `cleanup()`.
    func serverSide<T: AnyObject & Sendable>(_ make: @escaping @Sendable () throws -> T) async throws -> T {
        let made: T
        if let lab {
            made = try await lab.withNamespace(lab.serverNamespace, make)
        } else {
            made = try make()
        }
        serversLock.withLock { servers.append(made) }
        return made
    }

    /// Runs blocking client work on a fresh thread, in the daemon's namespace.
    func clientSide<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        if let lab {
            return try await lab.withNamespace(lab.clientNamespace, body)
        }
        return try await offload(body)
    }

    /// Repeats an echo round trip through the tunnel (each attempt held by the daemon until a
    /// session is up, or closed at its hold timeout) until one succeeds; returns how long that took,
    /// or nil if none did within `within` (plus at most one attempt's duration).
    func echoUntilItWorks(port: UInt16, seed: UInt64, within: Duration) async throws -> Duration? {
        let start = ContinuousClock.now
        let deadline = start.advanced(by: within)
        var attempts = 0
        while ContinuousClock.now < deadline && attempts < 1000 {
            attempts += 1
            let ok = try await clientSide { () -> Bool in
                let client = try? TCPClient.connect(port: port, timeout: .seconds(2), ioTimeout: .seconds(12))
                guard let client else { return false }
                defer { client.close() }
                return
                    (try? { () throws -> Bool in
                        try client.sendPattern(seed: seed, count: 10_000)
                        try client.shutdownWrite()
                        return try client.receivePattern(seed: seed).isIntact(count: 10_000)
                    }()) ?? false
            }
            if ok { return start.duration(to: .now) }
            try await Task.sleep(for: .milliseconds(50))
        }
        return nil
    }

    /// Waits until the daemon's descriptor count is at most `atMost` and unchanged for 200 ms (no
    /// connection being torn down), for up to 5 s.
    func waitForSettledDescriptors(_ pid: pid_t, atMost: Int = .max) async throws {
        var last = -1
        var stableSince = ContinuousClock.now
        try await waitUntil(
            timeout: .seconds(5), "the daemon's descriptors to settle (now \(ProcessTree.openFiles(pid)))"
        ) {
            let now = ProcessTree.openFileCount(pid) ?? -1
            if now != last {
                last = now
                stableSince = ContinuousClock.now
            }
            return now <= atMost && stableSince.duration(to: .now) >= .milliseconds(200)
        }
    }

    /// The time at the start of a daemon log line ("2026-01-02T03:04:05.678Z …").
    static func timestamp(ofLogLine line: String) -> Date? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: String(line.prefix(24)))
    }
}

extension Result where Success == Bool {
    var succeeded: Bool { (try? get()) == true }
}

extension Result where Failure == TestSupportError {
    var failureKind: TestSupportError.Kind? {
        if case .failure(let error) = self { return error.kind }
        return nil
    }

    var failureErrno: Int32? {
        if case .failure(let error) = self { return error.errno }
        return nil
    }
}

extension String {
    func occurrences(of text: String) -> Int { components(separatedBy: text).count - 1 }

    func lines(containing text: String) -> [String] {
        split(separator: "\n").filter { $0.contains(text) }.map(String.init)
    }

    /// What follows the first `marker`, or the whole string.
    func after(_ marker: String) -> String {
        guard let range = range(of: marker) else { return self }
        return String(self[range.upperBound...])
    }
}

extension Duration {
    var ms: String {
        let (seconds, attoseconds) = components
        return "\(seconds * 1000 + attoseconds / 1_000_000_000_000_000) ms"
    }
}
