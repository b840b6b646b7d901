import EctoControl
import EctoTestSupport
import Foundation
import Testing

/// Local pressure and repeated outages against the real daemon and a real sshd: a flood of held
/// clients under a low descriptor limit, the limit lowered under a running daemon, `max_clients`,
/// clients that give up while held, a server that restarts over and over, a permanent refused
/// outage (log volume), and a daemon that stops answering its control socket. Every test prints
/// what it measured on a `[figure]` line (docs/reliability.md quotes them).
@Suite("Pressure and flapping", .serialized)
struct PressureTests {
    /// The daemon's default backoff (1 s … 60 s), where the policy under test is the default one.
    static let productionBackoff = ["backoff_initial = \"1s\"", "backoff_max = \"60s\""]

    @Test(
        "1,100 clients held under a 1,024-descriptor limit: no spin, no log flood, status answers, service back within 1 s"
    )
    func descriptorFlood() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let (echo, port) = try await fixture.startEchoTunnel(
            extra: ["hold_timeout = \"120s\""], arguments: ["--log-level", "info"],
            launcher: ["prlimit", "--nofile=1024:1024"])
        defer { echo.stop() }
        let pid = try #require(fixture.daemon?.pid)
        #expect(ProcessTree.softDescriptorLimit(pid) == 1024)

        let events = try await fixture.watchEvents()
        defer { events.close() }
        fixture.server.stop()
        try await events.waitForSessionsEnded(1)
        events.close()  // the flood meets the daemon's descriptors as they were
        let logBefore = fixture.daemonLog.count
        let cpuBefore = try #require(ProcessTree.cpuSeconds(pid))
        let floodStart = ContinuousClock.now
        // 1,100 clients connect while the server is down and stay.
        let clients = try await offload { () -> [TCPClient] in
            var clients: [TCPClient] = []
            for _ in 0..<1100 {
                if let client = try? TCPClient.connect(port: port, timeout: .seconds(2), ioTimeout: .seconds(5)) {
                    clients.append(client)
                }
            }
            return clients
        }
        defer { for client in clients { client.close() } }
        // status keeps answering, within 1 s, while they are held.
        var slowest = Duration.zero
        var held = 0
        var refused: UInt64 = 0
        for _ in 0..<5 {
            let asked = ContinuousClock.now
            let (code, report) = try fixture.statusJSON()
            slowest = max(slowest, asked.duration(to: .now))
            #expect(code == 3, "status must answer (3: not up)")
            held = report?.tunnels.first?.connections ?? -1
            refused = report?.tunnels.first?.clientsRefused ?? 0
            try await Task.sleep(for: .milliseconds(400))
        }
        let window = floodStart.duration(to: .now)
        let cpu = try #require(ProcessTree.cpuSeconds(pid)) - cpuBefore
        let floodLog = String(fixture.daemonLog.dropFirst(logBefore))
        let lines = floodLog.split(separator: "\n").count
        let descriptors = ProcessTree.openFileCount(pid) ?? -1
        print(
            "[figure] 1,100 clients under a 1,024 limit: \(held) held, \(refused) refused at once, \(descriptors) descriptors, "
                + "daemon CPU \(String(format: "%.2f", cpu)) s over \(window.ms), \(lines) log lines, slowest status \(slowest.ms)"
        )
        #expect(held > 500 && held < 1024, "held \(held)")
        #expect(refused > 0 && Int(refused) + held >= 1000, "refused \(refused), held \(held)")
        #expect(descriptors < 1024 - 16, "the reserve stays free: \(descriptors) open")
        #expect(slowest <= .seconds(1))
        #expect(cpu < 0.5 * seconds(window), "CPU \(cpu) s in \(window.ms): it must not spin")
        #expect(lines < 20, "log lines during the flood:\n\(floodLog.prefix(3000))")

        // The clients leave, the server comes back: service within 1 s.
        for client in clients { client.close() }
        try fixture.server.start()
        let back = ContinuousClock.now
        let served = try await firstEcho(port: port, seed: 77, since: back, within: .seconds(5))
        print("[figure] after the flood: first echo \(served?.ms ?? "none") after sshd listened again")
        let recovery = try #require(served, "no service within 5 s; log:\n\(fixture.daemonLog.suffix(3000))")
        #expect(recovery <= .seconds(1))
    }

    @Test(
        "the descriptor limit lowered under a running daemon: accept pauses instead of spinning, said once, and service returns"
    )
    func limitLoweredUnderTheDaemon() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let (echo, port) = try await fixture.startEchoTunnel(arguments: ["--log-level", "info"])
        defer { echo.stop() }
        let pid = try #require(fixture.daemon?.pid)
        #expect(try await offload { try echoRoundTrip(port: port, seed: 1, count: 1000) })
        let open = try #require(ProcessTree.openFileCount(pid))
        // No descriptor left at all: every accept fails with EMFILE (the soft limit only: raising a
        // hard limit again takes CAP_SYS_RESOURCE, which a container may not have).
        try Subprocess.run("prlimit", ["--pid", "\(pid)", "--nofile=\(open):"]).check()
        let logBefore = fixture.daemonLog.count
        let cpuBefore = try #require(ProcessTree.cpuSeconds(pid))
        let start = ContinuousClock.now
        let clients = try await offload {
            (0..<50).compactMap { _ in try? TCPClient.connect(port: port, timeout: .seconds(1)) }
        }
        try await Task.sleep(for: .seconds(3))
        let cpu = try #require(ProcessTree.cpuSeconds(pid)) - cpuBefore
        let window = start.duration(to: .now)
        let log = String(fixture.daemonLog.dropFirst(logBefore))
        print(
            "[figure] limit lowered to the open count: \(clients.count) clients waiting in the backlog, daemon CPU "
                + "\(String(format: "%.2f", cpu)) s over \(window.ms), \(log.occurrences(of: "\n")) log lines")
        #expect(cpu < 0.3 * seconds(window), "it must not spin: \(cpu) s")
        #expect(log.occurrences(of: "accept failed") == 1, "said once:\n\(log.prefix(2000))")
        for client in clients { client.close() }
        // Room again: the tunnel serves new clients.
        try Subprocess.run("prlimit", ["--pid", "\(pid)", "--nofile=4096:"]).check()
        let served = try await firstEcho(port: port, seed: 2, since: .now, within: .seconds(5))
        #expect(served != nil, "log:\n\(fixture.daemonLog.suffix(2000))")
    }

    @Test("max_clients: one client over the cap is refused at once, counted in status, and logged once")
    func maxClients() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let (echo, port) = try await fixture.startEchoTunnel(extra: ["max_clients = 3"])
        defer { echo.stop() }
        let kept = try await offload {
            try (0..<3).map { _ in try TCPClient.connect(port: port, ioTimeout: .seconds(5)) }
        }
        defer { for client in kept { client.close() } }
        for client in kept {
            try client.sendAll("hi")
            #expect(try client.receive(exactly: 2) == Array("hi".utf8))
        }
        for _ in 0..<4 {
            // Refused at once: the reset may even beat the connect's own completion check.
            let started = ContinuousClock.now
            if let extra = try? TCPClient.connect(port: port, ioTimeout: .seconds(5)) {
                #expect(extra.waitForClose(timeout: .seconds(2)), "the fourth client must be refused")
                extra.close()
            }
            #expect(started.duration(to: .now) < .milliseconds(500), "at once")
        }
        let report = try #require(try fixture.statusJSON().report?.tunnels.first)
        #expect(report.clientsRefused == 4)
        #expect(fixture.daemonLog.occurrences(of: "refusing new clients: 3 clients already (max_clients = 3)") == 1)
        // One leaves: a new one is admitted (and the episode's end is said).
        kept[0].close()
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await offload { try echoRoundTrip(port: port, seed: 3, count: 1000) })
        // The log, not an event: the end of a refusal episode changes no status field
        // (`clients_refused` counts the refusals, and counters alone publish no event).
        try await fixture.waitForLog("admitting clients again; 4 refused")
    }

    @Test(
        "20 clients that give up while held are let go at once: descriptors back to the baseline before the session returns"
    )
    func heldClientsThatLeaveAreReleased() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let (echo, port) = try await fixture.startEchoTunnel(extra: ["hold_timeout = \"60s\""])
        defer { echo.stop() }
        let pid = try #require(fixture.daemon?.pid)
        let events = try await fixture.watchEvents()
        defer { events.close() }
        fixture.server.stop()
        try await events.waitForSessionsEnded(1)
        try await Task.sleep(for: .milliseconds(300))
        let baseline = try #require(ProcessTree.openFileCount(pid))
        let clients = try await offload { try (0..<20).map { _ in try TCPClient.connect(port: port) } }
        try await waitUntil(timeout: .seconds(5), "20 clients held") {
            (try? fixture.statusJSON().report?.tunnels.first?.connections) == 20
        }
        let holding = ProcessTree.openFileCount(pid) ?? -1
        for client in clients { client.close() }
        let closed = ContinuousClock.now
        try await waitUntil(
            timeout: .seconds(3), "descriptors back to \(baseline) (now \(ProcessTree.openFileCount(pid) ?? -1))"
        ) {
            (ProcessTree.openFileCount(pid) ?? .max) <= baseline
        }
        print(
            "[figure] 20 held clients closing: descriptors \(baseline) → \(holding) → \(ProcessTree.openFileCount(pid) ?? -1) "
                + "within \(closed.duration(to: .now).ms), the server still down")
        #expect(try fixture.statusJSON().report?.tunnels.first?.connections == 0)
        #expect(fixture.daemonLog.occurrences(of: "] connected") == 1, "the session must not be back yet")
        #expect(events.sessionsEstablished() == 0, "back already:\n\(EventWatcher.describe(events.events))")
    }

    @Test("sshd crashes and restarts 8 times, 0.5 s away each time: every recovery within 1 s of sshd listening")
    func eightShortOutages() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        // The production backoff (1 s … 60 s): the policy under test is the default one.
        let (echo, port) = try await fixture.startEchoTunnel(
            extra: Self.productionBackoff, arguments: ["--log-level", "info"])
        defer { echo.stop() }
        let recoveries = try await recoveriesAfterRestarts(
            fixture, port: port, crash: { fixture.server.kill() }, restart: { try fixture.server.start() })
        print(
            "[figure] 8 sshd restarts, 0.5 s outages: recoveries \(recoveries.map(\.ms)) after sshd listened again (contract ≤ 1000 ms)"
        )
        for (round, recovery) in recoveries.enumerated() {
            #expect(recovery <= .seconds(1), "round \(round + 1): \(recovery.ms)")
        }
    }

    @Test(
        "dropbear crashes and restarts 8 times, 0.5 s away each time: every recovery within 1 s of dropbear listening")
    func eightShortDropbearOutages() async throws {
        let fixture = try TunnelFixture()
        let dropbear = try DropbearServer(authorized: [fixture.clientKey])
        defer {
            fixture.cleanup()
            dropbear.stop()
        }
        let knownHosts = try fixture.directory.write("known_hosts_dropbear", dropbear.knownHostsLine)
        let (echo, port) = try await fixture.startEchoTunnel(
            extra: [
                "target = \"\(dropbear.user)@127.0.0.1:\(dropbear.port)\"", "known_hosts = \"\(knownHosts)\"",
            ] + Self.productionBackoff, arguments: ["--log-level", "info"])
        defer { echo.stop() }
        let recoveries = try await recoveriesAfterRestarts(
            fixture, port: port, crash: { dropbear.kill() }, restart: { try dropbear.start() })
        print(
            "[figure] 8 dropbear restarts, 0.5 s outages: recoveries \(recoveries.map(\.ms)) after dropbear listened again (contract ≤ 1000 ms)"
        )
        for (round, recovery) in recoveries.enumerated() {
            #expect(recovery <= .seconds(1), "round \(round + 1): \(recovery.ms)")
        }
        let report = try #require(try fixture.statusJSON().report?.tunnels.first)
        #expect(report.state == .up && report.reconnects == 8, "\(report.state) reconnects \(report.reconnects)")
    }

    @Test("a permanent refused-connect outage of 2 minutes: the log gets a handful of lines, not one per attempt")
    func permanentOutageLogVolume() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let (echo, _) = try await fixture.startEchoTunnel(
            extra: Self.productionBackoff, arguments: ["--log-level", "info"])
        defer { echo.stop() }
        let events = try await fixture.watchEvents()
        defer { events.close() }
        fixture.server.stop()
        try await events.waitForSessionsEnded(1)
        let logBefore = fixture.daemonLog.count
        try await Task.sleep(for: .seconds(120))
        let log = String(fixture.daemonLog.dropFirst(logBefore))
        let lines = log.split(separator: "\n")
        let report = try #require(try fixture.statusJSON().report?.tunnels.first)
        print(
            "[figure] 2 min of refused connects: \(lines.count) log lines; state \(report.state), retry_cause \(report.retryCause?.rawValue ?? "-")"
        )
        #expect(lines.count <= 12, "log:\n\(log)")
        #expect(log.occurrences(of: "connection attempt failed") == 1)
        #expect(log.occurrences(of: "still failing") >= 3)
        #expect(report.state == .backoff && report.retryCause == .refused)
        // The next attempt is never further away than backoff_max. (Recovery after the server
        // returns is simulated in ReconnectMachineTests.aServerRefusingForTenMinutes…: in full runs
        // the throwaway sshd restarted after 2 minutes has been seen not to accept again.)
        let wait = try #require(report.retryAt).timeIntervalSinceNow
        #expect(wait <= 60.5, "next retry in \(wait) s")
    }

    @Test("status against a stopped daemon gives up within its timeout, with a clear message")
    func stoppedDaemon() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let (echo, _) = try await fixture.startEchoTunnel()
        defer { echo.stop() }
        let daemon = try #require(fixture.daemon)
        daemon.signal(SIGSTOP)
        defer { daemon.signal(SIGCONT) }
        let started = ContinuousClock.now
        let result = try fixture.runCLI(["status"], timeout: .seconds(30))
        let took = started.duration(to: .now)
        print("[figure] status against a SIGSTOPped daemon: exit \(result.status) after \(took.ms)")
        #expect(result.status == 2)
        #expect(took < .seconds(7))
        #expect(result.stderr.contains("did not answer within 5 s"), "\(result.stderr)")
    }
}

/// Crashes the SSH server 8 times (`crash`), brings it back 0.5 s after the daemon saw the session
/// lost (`restart`), and returns each recovery: from the server listening again to the first echo
/// through the tunnel at `port`. Each round leaves the session up 2 s, so it proves the server works.
func recoveriesAfterRestarts(
    _ fixture: TunnelFixture, port: UInt16, crash: () -> Void, restart: () throws -> Void
) async throws -> [Duration] {
    var recoveries: [Duration] = []
    let events = try await fixture.watchEvents()
    defer { events.close() }
    for round in 1...8 {
        crash()
        try await events.waitForSessionsEnded(round)
        try await Task.sleep(for: .milliseconds(500))
        try restart()
        let listening = ContinuousClock.now
        let recovered = try await firstEcho(port: port, seed: UInt64(round), since: listening, within: .seconds(10))
        let recovery = try #require(
            recovered, "round \(round): no recovery within 10 s; log:\n\(fixture.daemonLog.suffix(3000))")
        recoveries.append(recovery)
        try await Task.sleep(for: .seconds(2))
    }
    return recoveries
}

/// Repeats a 1,000-byte echo through the tunnel at `port` until one succeeds; returns how long
/// after `since` that was, or nil if none did within `within` of it.
func firstEcho(port: UInt16, seed: UInt64, since: ContinuousClock.Instant, within: Duration) async throws -> Duration? {
    try await offload { () -> Duration? in
        while since.duration(to: .now) < within {
            if (try? echoRoundTrip(port: port, seed: seed, count: 1000)) == true { return since.duration(to: .now) }
            usleep(10_000)
        }
        return nil
    }
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

extension ProcessTree {
    /// User + system CPU time of `pid` in seconds (/proc/PID/stat).
    static func cpuSeconds(_ pid: pid_t) -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command: state is field 3, utime 14, stime 15 (1-based in proc(5)).
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The soft RLIMIT_NOFILE of `pid` (/proc/PID/limits).
    static func softDescriptorLimit(_ pid: pid_t) -> Int? {
        guard let limits = try? String(contentsOfFile: "/proc/\(pid)/limits", encoding: .utf8) else { return nil }
        for line in limits.split(separator: "\n") where line.hasPrefix("Max open files") {
            return line.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).first.flatMap { Int($0) }
        }
        return nil
    }
}
