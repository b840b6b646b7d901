import EctoTestSupport
import Foundation
import Glibc
import Testing

/// The repository root.
private func repositoryRoot(filePath: StaticString = #filePath) -> String {
    URL(fileURLWithPath: "\(filePath)").deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
}

/// The unit files as shipped (units/ in the repository).
private func shippedUnit(_ name: String, filePath: StaticString = #filePath) throws -> String {
    let root = URL(fileURLWithPath: "\(filePath)").deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    let path = root.appendingPathComponent("units/\(name)").path
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
        throw TestSupportError(.notFound, "cannot read \(path)")
    }
    return text
}

/// A real `systemd --user` (as the test user), a real sshd with an echo server behind it, and a
/// config with one tunnel `t` in the test user's home. The unit logs to `daemonLogPath` through a
/// drop-in (no journald here).
final class SystemdFixture: @unchecked Sendable {
    let manager: SystemdUserManager
    let server: SSHServer
    let echo: EchoServer
    let localPort: UInt16
    let configPath: String
    let daemonLogPath: String
    let binary: String

    init(dropIn extraDropIn: String = "", hiding: [String] = []) throws {
        binary = try ProductLocator.binary("ecto-tunnel")
        manager = try SystemdUserManager(hiding: hiding)
        do {
            server = try SSHServer()
            echo = try EchoServer()
            let home = manager.home
            let key = try KeyPair.generate(type: "ed25519", at: home + "/.ssh/id_tunnel", comment: "ecto-systemd-test")
            manager.giveToUser(key.privatePath)
            manager.giveToUser(key.publicPath)
            try server.authorize(key)
            try server.start()
            try manager.writeFile(home + "/.ssh/known_hosts", server.hostKeyLine() + "\n", mode: 0o644)
            localPort = try FreePort.probe()
            configPath = manager.configHome + "/ecto-tunnel/config.toml"
            try manager.writeFile(
                configPath,
                """
                [tunnels.t]
                target = "\(server.user)@127.0.0.1:\(server.port)"
                local = "127.0.0.1:\(localPort)"
                remote = "127.0.0.1:\(echo.port)"
                identity_file = "\(key.privatePath)"
                known_hosts = "\(home)/.ssh/known_hosts"
                backoff_initial = "100ms"
                backoff_max = "500ms"

                """)
            daemonLogPath = home + "/daemon.log"
            try manager.writeFile(
                manager.configHome + "/systemd/user/ecto-tunnel.service.d/test-log.conf",
                """
                # Test only: no journald runs under the test manager.
                [Service]
                StandardOutput=append:\(daemonLogPath)
                StandardError=append:\(daemonLogPath)
                \(extraDropIn)
                """, mode: 0o644)
        } catch {
            manager.cleanup()
            throw error
        }
    }

    func cleanup() {
        manager.cleanup()
        server.cleanup()
        echo.stop()
    }

    /// `ecto-tunnel ARGUMENTS` as the test user.
    func cli(_ arguments: [String], environment: [String: String] = [:]) throws -> CommandResult {
        try manager.runAsUser(binary, arguments, environment: environment)
    }

    @discardableResult
    func install() throws -> CommandResult {
        let result = try cli(["install"])
        guard result.status == 0 else {
            throw TestSupportError(
                .commandFailed(status: result.status),
                "install failed: \(result.stderr)\(result.stdout)\n--- daemon log:\n\(daemonLog)\n--- manager:\n\(manager.log)"
            )
        }
        return result
    }

    var daemonLog: String { (try? String(contentsOfFile: daemonLogPath, encoding: .utf8)) ?? "" }

    func property(_ name: String) throws -> String { try manager.property(name, of: "ecto-tunnel.service") }

    /// The unit's states, for failure messages.
    var states: String {
        (try? manager.systemctl([
            "show", "--property=ActiveState,SubState,Result,MainPID,NRestarts,ExecMainStatus", "ecto-tunnel.service",
        ]).stdout) ?? ""
    }

    func mainPID() throws -> pid_t { pid_t(try property("MainPID")) ?? 0 }

    /// An echo round trip through the tunnel.
    /// Each attempt is bounded (3 s), so that a wait that retries it really retries: an attempt
    /// that caught the daemon between two lives must not eat the whole wait.
    func echoWorks(seed: UInt64) throws -> Bool {
        try echoRoundTrip(port: localPort, seed: seed, count: 32 * 1024, timeout: .seconds(3))
    }

    /// Who holds the tunnel's and the echo server's ports, and every process of the test user with
    /// its open sockets: for failure messages.
    func socketsReport() -> String {
        // The calling thread's network namespace against the process's (ss and the echo run in
        // the calling thread's: a thread left in a lab namespace would see none of our sockets).
        let threadNS = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self/ns/net")) ?? "?"
        let processNS = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/net")) ?? "?"
        let initNS = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/1/ns/net")) ?? "?"
        func namespace(_ pid: pid_t?) -> String {
            pid.flatMap { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\($0)/ns/net") } ?? "?"
        }
        let daemonNS = namespace(try? mainPID())
        let sshdNS = namespace(server.pid)
        var text =
            "--- network namespace: this thread \(threadNS), this process \(processNS), pid 1 \(initNS), daemon \(daemonNS), sshd \(sshdNS)\n"
        for port in [localPort, echo.port, server.port] {
            text += "--- ss for :\(port)\n"
            text +=
                (try? Subprocess.run("ss", ["-tanpe", "( sport = :\(port) or dport = :\(port) )"]).stdout)
                ?? "(ss failed)"
        }
        text += "--- processes of \(SystemdUserManager.userName):\n"
        text +=
            (try? Subprocess.run(
                "ps", ["-u", SystemdUserManager.userName, "-L", "-o", "pid,tid,stat,pcpu,lstart,args"]
            ).stdout) ?? ""
        text += "--- states: \(states)\n--- daemon log:\n\(daemonLog)"
        return text
    }

    func waitForLog(
        _ text: String, count: Int = 1, timeout: Duration = .seconds(15), fileID: String = #fileID, line: Int = #line
    ) async throws {
        try await waitForLogText(text, count: count, timeout: timeout, fileID: fileID, line: line) { daemonLog }
    }
}

@Suite("systemd user units under a real systemd --user", .serialized)
struct SystemdTests {
    @Test("systemd-analyze --user verify accepts both units without a single warning")
    func verifyUnits() throws {
        let binary = try ProductLocator.binary("ecto-tunnel")
        let directory = try TestDirectory(prefix: "ecto-verify")
        defer { directory.cleanup() }
        let runtime = try directory.makeSubdirectory("rt")
        for (name, checkedAs) in [
            ("ecto-tunnel.service", "ecto-tunnel.service"), ("ecto-tunnel@.service", "ecto-tunnel@check.service"),
        ] {
            let text = try shippedUnit(name).replacingOccurrences(of: "/usr/local/bin/ecto-tunnel", with: binary)
            #expect(text.contains("ExecStart=\(binary) run"), "\(name) has no ExecStart to substitute")
            let path = try directory.write(checkedAs, text, mode: 0o644)
            let result = try Subprocess.run(
                "systemd-analyze", ["--user", "verify", path],
                extraEnvironment: ["XDG_RUNTIME_DIR": runtime, "HOME": directory.path])
            #expect(result.status == 0, "\(name): \(result.stderr)\(result.stdout)")
            #expect(result.stderr.isEmpty, "\(name): systemd-analyze verify complained:\n\(result.stderr)")
        }
    }

    /// `DEVICE:INODE` of a file, as systemd writes JOURNAL_STREAM for the stream it gives a service.
    static func deviceInode(_ path: String) -> String {
        var info = stat()
        stat(path, &info)
        return "\(info.st_dev):\(info.st_ino)"
    }

    @Test(
        "under journald (JOURNAL_STREAM names stderr) every log line, each line of a multi-line message too, starts with its priority <N>"
    )
    func journaldPriorityPrefixes() async throws {
        let directory = try TestDirectory(prefix: "ecto-journal")
        defer { directory.cleanup() }
        let config = try directory.write("config.toml", "")
        let errPath = try directory.write("err", "")
        let daemon = try Subprocess(
            try ProductLocator.binary("ecto-tunnel"), ["run", "--config", config],
            extraEnvironment: ["JOURNAL_STREAM": Self.deviceInode(errPath), "NOTIFY_SOCKET": ""],
            stdoutPath: directory.file("out"), stderrPath: errPath, appendOutput: true)
        try await waitUntil(timeout: .seconds(10), "the daemon running\n\(daemon.stderr())") {
            daemon.stderr().contains("ecto-tunnel running")
        }
        daemon.signal(SIGTERM)
        #expect(await daemon.waitExit(timeout: .seconds(10)) == 0)
        let lines = daemon.stderr().split(separator: "\n")
        #expect(lines.count >= 3, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("<4>warning no tunnels configured") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("<6>info") && $0.contains("ecto-tunnel running") }, "\(lines)")
        for line in lines {
            #expect(line.range(of: #"^<[0-7]>"#, options: .regularExpression) != nil, "no priority prefix: \(line)")
        }

        // A multi-line message (every error of an invalid config): each line is its own journal
        // entry, so each carries the priority, or `journalctl -p warning` would hide the errors.
        let bad = try directory.write("bad.toml", "[tunnels.a]\ntarget = 42\n[tunnels.b]\nlocal = 5\n")
        let badErr = try directory.write("bad.err", "")
        let refused = try Subprocess(
            try ProductLocator.binary("ecto-tunnel"), ["run", "--config", bad],
            extraEnvironment: ["JOURNAL_STREAM": Self.deviceInode(badErr), "NOTIFY_SOCKET": ""],
            stdoutPath: directory.file("bad.out"), stderrPath: badErr, appendOutput: true)
        #expect(await refused.waitExit(timeout: .seconds(10)) == 78)
        let errorLines = refused.stderr().split(separator: "\n")
        #expect(errorLines.filter { $0.contains("\(bad):") }.count >= 2, "\(errorLines)")
        for line in errorLines {
            #expect(line.hasPrefix("<2>"), "every line of the critical message has its priority: \(line)")
        }
    }

    @Test(
        "JOURNAL_STREAM that does not name stderr (inherited, stderr redirected to a file) is ignored: plain timestamped lines"
    )
    func journalStreamOfAnotherFileIgnored() async throws {
        let directory = try TestDirectory(prefix: "ecto-journal")
        defer { directory.cleanup() }
        let config = try directory.write("config.toml", "")
        let other = try directory.write("other", "")
        let daemon = try Subprocess(
            try ProductLocator.binary("ecto-tunnel"), ["run", "--config", config],
            extraEnvironment: ["JOURNAL_STREAM": Self.deviceInode(other), "NOTIFY_SOCKET": ""],
            stdoutPath: directory.file("out"), stderrPath: directory.file("err"))
        try await waitUntil(timeout: .seconds(10), "the daemon running\n\(daemon.stderr())") {
            daemon.stderr().contains("ecto-tunnel running")
        }
        daemon.signal(SIGTERM)
        #expect(await daemon.waitExit(timeout: .seconds(10)) == 0)
        let lines = daemon.stderr().split(separator: "\n")
        #expect(!lines.isEmpty)
        for line in lines {
            #expect(!line.hasPrefix("<"), "no priority prefix in a file: \(line)")
            #expect(line.range(of: #"^\d{4}-\d{2}-\d{2}T"#, options: .regularExpression) != nil, "timestamped: \(line)")
        }
    }

    @Test(
        "SIGABRT/SIGQUIT from outside (systemd's watchdog, kill): a log line, every thread's backtrace, then the daemon ends by that signal within 2 s"
    )
    func abortSignalEndsDaemon() async throws {
        let directory = try TestDirectory(prefix: "ecto-abort")
        defer { directory.cleanup() }
        let config = try directory.write("config.toml", "")
        for signal in [SIGABRT, SIGQUIT] {
            let name = signal == SIGABRT ? "SIGABRT" : "SIGQUIT"
            let daemon = try Subprocess(
                try ProductLocator.binary("ecto-tunnel"),
                ["run", "--config", config, "--socket", directory.file("s.sock")],
                extraEnvironment: ["NOTIFY_SOCKET": ""],
                stdoutPath: directory.file("out"), stderrPath: directory.file("err"))
            try await waitUntil(timeout: .seconds(10), "the daemon running\n\(daemon.stderr())") {
                daemon.stderr().contains("ecto-tunnel running")
            }
            let sent = ContinuousClock.now
            daemon.signal(signal)
            let ended = await daemon.waitTermination(timeout: .seconds(2))
            let took = sent.duration(to: .now)
            if ended == nil { daemon.kill() }
            #expect(
                ended == .signaled(signal),
                "\(name): \(ended?.description ?? "still running after 2 s")\n\(daemon.stderr())")
            let log = daemon.stderr()
            #expect(log.contains("critical received \(name) from pid \(getpid())"), "\(log)")
            #expect(log.contains("Thread 1 \"abort signals\" crashed"), "\(log)")
            #expect(log.contains("\"control\""), "every thread's backtrace, the control thread's too:\n\(log)")
            #expect(log.contains("Backtrace took"), "\(log)")
            print("[figure] \(name) to exit: \(took)")
        }
    }

    @Test("a genuine crash of a driver thread (fatalError: a trap) still ends the daemon at once, with its backtrace")
    func driverCrashEndsDaemon() async throws {
        let directory = try TestDirectory(prefix: "ecto-crash")
        defer { directory.cleanup() }
        let port = try FreePort.probe()
        let config = try directory.write(
            "config.toml",
            """
            [tunnels.t]
            target = "u@127.0.0.1:9"
            local = "127.0.0.1:\(port)"
            remote = "127.0.0.1:1"
            host_key_policy = "accept-new"
            known_hosts = "\(directory.file("known_hosts"))"

            """)
        let daemon = try Subprocess(
            try ProductLocator.binary("ecto-tunnel"),
            ["run", "--config", config, "--socket", directory.file("s.sock")],
            extraEnvironment: ["NOTIFY_SOCKET": "", "ECTO_TUNNEL_TEST_CRASH": "driver"],
            stdoutPath: directory.file("out"), stderrPath: directory.file("err"))
        let ended = await daemon.waitTermination(timeout: .seconds(10))
        if ended == nil { daemon.kill() }
        // x86_64 traps with ud2 (SIGILL), arm64 with brk (SIGTRAP).
        #expect(
            ended == .signaled(SIGILL) || ended == .signaled(SIGTRAP),
            "\(ended?.description ?? "still running")\n\(daemon.stderr())")
        let log = daemon.stderr()
        #expect(log.contains("Fatal error: ECTO_TUNNEL_TEST_CRASH=driver"), "\(log)")
        #expect(log.contains("\"tunnel t\" crashed"), "\(log)")
        #expect(log.contains("Backtrace took"), "\(log)")
    }

    @Test("install and uninstall refuse politely (exit 1) when no user manager is reachable")
    func noManager() throws {
        let directory = try TestDirectory(prefix: "ecto-nomgr")
        defer { directory.cleanup() }
        let binary = try ProductLocator.binary("ecto-tunnel")
        for command in ["install", "uninstall"] {
            let result = try Subprocess.run(
                binary, [command, "--config", directory.file("config.toml")],
                extraEnvironment: ["XDG_RUNTIME_DIR": directory.path, "HOME": directory.path])
            #expect(result.status == 1, "\(command): \(result.stdout)\(result.stderr)")
            #expect(
                result.stderr.contains("no systemd user manager is reachable (XDG_RUNTIME_DIR=\(directory.path))"),
                "\(result.stderr)")
            #expect(result.stderr.contains("ecto-tunnel run"))
        }
        #expect(!FileManager.default.fileExists(atPath: directory.file(".config/systemd/user/ecto-tunnel.service")))
    }

    @Test("install refuses a config that fails check, shows the error, and writes no unit")
    func installRefusesBadConfig() throws {
        let fixture = try SystemdFixture()
        defer { fixture.cleanup() }
        try fixture.manager.writeFile(fixture.configPath, "[tunnels.t]\ntarget = \"u@h\"\nlokal = \"127.0.0.1:1\"\n")
        let result = try fixture.cli(["install"])
        #expect(result.status == 1, "\(result.stdout)\(result.stderr)")
        #expect(result.stderr.contains("config.toml:3"), "the error names file:line: \(result.stderr)")
        #expect(result.stderr.contains("lokal"), "\(result.stderr)")
        #expect(
            !FileManager.default.fileExists(atPath: fixture.manager.configHome + "/systemd/user/ecto-tunnel.service"))
    }

    @Test(
        "install: active only after READY (listener bound, status sent), the tunnel works at once, units match units/")
    func installBringsServiceUp() async throws {
        let start = ContinuousClock.now
        let fixture = try SystemdFixture()
        defer { fixture.cleanup() }
        let output = try fixture.install()
        // Right after install returns (it waited for `active`), the listener must be bound: a
        // Type=notify unit is active only after READY=1, which the daemon sends after the bind.
        #expect(try fixture.echoWorks(seed: 1), "echo through the tunnel right after install")
        #expect(try fixture.property("ActiveState") == "active")
        #expect(try fixture.property("SubState") == "running")
        #expect(try fixture.property("Type") == "notify")
        #expect(try fixture.property("NotifyAccess") == "main")
        #expect(try fixture.property("WatchdogUSec") == "30s")
        #expect(try fixture.property("KillMode") == "mixed")
        #expect(try fixture.property("UnitFileState") == "enabled")
        // STATUS= comes only from our daemon: proof that the notify socket is spoken to.
        try await waitUntil(timeout: .seconds(10), "StatusText 1/1 tunnels up") {
            (try? fixture.property("StatusText")) == "1/1 tunnel up"
        }
        #expect(output.stdout.contains("journalctl --user -u ecto-tunnel"))
        #expect(output.stdout.contains("loginctl enable-linger"))
        // The CLI reaches the service's control socket at its default path ($XDG_RUNTIME_DIR).
        let status = try fixture.cli(["status", "--json"])
        #expect(status.status == 0, "\(status)")
        #expect(
            status.stdout.contains("\"name\":\"t\"") && status.stdout.contains("\"state\":\"up\""), "\(status.stdout)")
        var socketInfo = stat()
        #expect(stat(fixture.manager.runtimeDirectory + "/ecto-tunnel/control.sock", &socketInfo) == 0)
        #expect(socketInfo.st_uid == fixture.manager.uid && socketInfo.st_mode & 0o777 == 0o600)
        let log = fixture.daemonLog
        let listening = log.range(of: "listening")
        #expect(listening != nil, "daemon log: \(log)")

        // What install wrote is units/ with the binary and the config path filled in.
        let unitDirectory = fixture.manager.configHome + "/systemd/user/"
        let installed = try String(contentsOfFile: unitDirectory + "ecto-tunnel.service", encoding: .utf8)
        let expected = try shippedUnit("ecto-tunnel.service")
            .replacingOccurrences(of: "/usr/local/bin/ecto-tunnel", with: fixture.binary)
            .replacingOccurrences(
                of: "--config %E/ecto-tunnel/config.toml --socket %t/ecto-tunnel/control.sock",
                with: "--config \(fixture.configPath)")
        #expect(installed.hasPrefix("# Written by `ecto-tunnel install`"))
        #expect(
            installed.split(separator: "\n", maxSplits: 1)[1] == expected[...],
            "installed unit differs from units/ecto-tunnel.service")
        let template = try String(contentsOfFile: unitDirectory + "ecto-tunnel@.service", encoding: .utf8)
        let expectedTemplate = try shippedUnit("ecto-tunnel@.service")
            .replacingOccurrences(of: "/usr/local/bin/ecto-tunnel", with: fixture.binary)
        #expect(
            template.split(separator: "\n", maxSplits: 1)[1] == expectedTemplate[...],
            "installed template differs from units/")

        // Installing again with nothing changed keeps the running daemon.
        let pid = try fixture.mainPID()
        let again = try fixture.install()
        #expect(again.stdout.contains("already running"), "\(again.stdout)")
        #expect(try fixture.mainPID() == pid)
        print("[figure] install test took \(start.duration(to: .now))")
    }

    @Test(
        "every fd of the running daemon (listener, SSH socket, accepted client, control socket, eventfds, timerfd, netlink) is close-on-exec"
    )
    func daemonFDsAreCloseOnExec() async throws {
        let fixture = try SystemdFixture()
        defer { fixture.cleanup() }
        try fixture.install()
        // A forwarded connection held open: an accepted client socket and a channel exist too.
        let client = try TCPClient.connect(port: fixture.localPort, ioTimeout: .seconds(10))
        defer { client.close() }
        try client.sendAll("ping\n")
        #expect(try client.receive(exactly: 5) == Array("ping\n".utf8))
        let pid = try fixture.mainPID()
        let directory = "/proc/\(pid)/fd"
        let fds = try FileManager.default.contentsOfDirectory(atPath: directory).compactMap(Int32.init).sorted()
        var kinds: [String] = []
        for fd in fds where fd > 2 {
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: "\(directory)/\(fd)")) ?? "?"
            let info = (try? String(contentsOfFile: "/proc/\(pid)/fdinfo/\(fd)", encoding: .utf8)) ?? ""
            let flagsLine = info.split(separator: "\n").first { $0.hasPrefix("flags:") }
            let flags = flagsLine.flatMap { Int($0.split(separator: "\t").last ?? "", radix: 8) } ?? 0
            kinds.append("\(fd) \(target)")
            #expect(
                flags & Int(O_CLOEXEC) != 0,
                "fd \(fd) (\(target)) of the daemon is not close-on-exec: flags \(String(flags, radix: 8))")
        }
        // The census covers what it should: sockets (control, listener, SSH, client, netlink),
        // eventfds and the timerfd.
        #expect(kinds.filter { $0.contains("socket:") }.count >= 5, "\(kinds)")
        #expect(kinds.contains { $0.contains("eventfd") } && kinds.contains { $0.contains("timerfd") }, "\(kinds)")
    }

    @Test("SIGKILL of the daemon: systemd restarts it (new MainPID) and the tunnel works again")
    func restartAfterKill() async throws {
        let fixture = try SystemdFixture()
        defer { fixture.cleanup() }
        try fixture.install()
        let first = try fixture.mainPID()
        #expect(first > 0)
        #expect(kill(first, SIGKILL) == 0)
        try await waitUntil(timeout: .seconds(20), "a new MainPID, active\n\(fixture.daemonLog)") {
            let pid = (try? fixture.mainPID()) ?? 0
            return pid != 0 && pid != first && (try? fixture.property("ActiveState")) == "active"
        }
        #expect(try fixture.property("NRestarts") == "1")
        try await waitUntil(timeout: .seconds(10), "echo through the restarted daemon") {
            (try? fixture.echoWorks(seed: 2)) == true
        }
    }

    @Test(
        "a crash of a driver thread (SIGILL): systemd restarts the daemon (Restart=on-failure), the tunnel works again")
    func restartAfterCrash() async throws {
        let fixture = try SystemdFixture()
        defer { fixture.cleanup() }
        try fixture.install()
        let first = try fixture.mainPID()
        try fixture.manager.systemctl(["set-environment", "ECTO_TUNNEL_TEST_CRASH=driver"]).check()
        try fixture.manager.systemctl(["restart", "--no-block", "ecto-tunnel.service"]).check()
        try await waitUntil(
            timeout: .seconds(15), poll: .milliseconds(50),
            "a crash seen by systemd\n\(fixture.states)\n\(fixture.daemonLog)"
        ) {
            let result = (try? fixture.property("Result")) ?? ""
            return result == "signal" || result == "core-dump"
        }
        try fixture.manager.systemctl(["unset-environment", "ECTO_TUNNEL_TEST_CRASH"]).check()
        #expect(fixture.daemonLog.contains("Fatal error: ECTO_TUNNEL_TEST_CRASH=driver"))
        #expect(fixture.daemonLog.contains("\"tunnel t\" crashed"), "\(fixture.daemonLog)")
        try await waitUntil(timeout: .seconds(20), "restarted after the crash\n\(fixture.states)\n\(fixture.daemonLog)")
        {
            let pid = (try? fixture.mainPID()) ?? 0
            return pid != 0 && pid != first && (try? fixture.property("ActiveState")) == "active"
                && !((try? String(contentsOfFile: "/proc/\(pid)/environ", encoding: .utf8)) ?? "").contains(
                    "ECTO_TUNNEL_TEST_CRASH")
        }
        #expect(try Int(fixture.property("NRestarts")) ?? 0 >= 1)
        try await waitUntil(timeout: .seconds(10), "echo through the daemon restarted after the crash") {
            (try? fixture.echoWorks(seed: 4)) == true
        }
    }

    @Test(
        "watchdog: pings while the supervisor makes progress, fires (Result=watchdog) and restarts when a driver stalls"
    )
    func watchdogFires() async throws {
        // A short WatchdogSec= so the test takes seconds; the mechanism is the unit's.
        let fixture = try SystemdFixture(dropIn: "WatchdogSec=2s")
        defer { fixture.cleanup() }
        try fixture.install()
        #expect(try fixture.property("WatchdogUSec") == "2s")
        // Healthy: three watchdog periods pass without a restart.
        try await Task.sleep(for: .seconds(6))
        #expect(try fixture.property("NRestarts") == "0", "watchdog fired on a healthy daemon:\n\(fixture.daemonLog)")
        #expect(try fixture.property("ActiveState") == "active")

        // Stall the driver (test-only switch) and restart into it.
        try fixture.manager.systemctl(["set-environment", "ECTO_TUNNEL_TEST_STALL=driver"]).check()
        try fixture.manager.systemctl(["restart", "ecto-tunnel.service"]).check()
        let stalled = try fixture.mainPID()
        // The log, not an event: a stalled driver publishes nothing by design (and this daemon's
        // control socket serves only the unit's user, not the test).
        try await fixture.waitForLog("this driver thread now blocks forever")
        var sawWatchdog = false
        try await waitUntil(timeout: .seconds(15), poll: .milliseconds(50), "Result=watchdog\n\(fixture.daemonLog)") {
            sawWatchdog = (try? fixture.property("Result")) == "watchdog"
            return sawWatchdog
        }
        #expect(sawWatchdog)
        // SIGABRT ends the stalled daemon at once, after every thread's backtrace: not only at
        // TimeoutAbortSec= (5 s) with SIGKILL, as when the runtime's crash handler returned.
        let aborted = ContinuousClock.now
        try await waitUntil(
            timeout: .seconds(6), poll: .milliseconds(20), "the stalled daemon \(stalled) gone\n\(fixture.states)"
        ) {
            kill(stalled, 0) != 0
        }
        let abortTook = aborted.duration(to: .now)
        #expect(
            abortTook < .seconds(2),
            "the stalled daemon lived \(abortTook) after the watchdog's SIGABRT\n\(fixture.daemonLog)")
        let log = fixture.daemonLog
        #expect(log.contains("watchdog: no progress from tunnel t (thread \"tunnel t\" (tid "), "\(log)")
        #expect(log.contains("received SIGABRT from pid"), "\(log)")
        #expect(log.contains("the watchdog found no progress from tunnel t (thread \"tunnel t\""), "\(log)")
        #expect(
            log.contains("Thread ") && log.contains(" \"tunnel t\""), "the stuck thread's backtrace, by name:\n\(log)")
        #expect(log.contains("Backtrace took"), "\(log)")
        print("[figure] watchdog SIGABRT to exit: \(abortTook)")
        try fixture.manager.systemctl(["unset-environment", "ECTO_TUNNEL_TEST_STALL"]).check()
        try await waitUntil(
            timeout: .seconds(20),
            "restarted after the watchdog\n\(fixture.states)\n\(fixture.daemonLog)\n--- manager:\n\(fixture.manager.log)"
        ) {
            let pid = (try? fixture.mainPID()) ?? 0
            return pid != 0 && pid != stalled && (try? fixture.property("ActiveState")) == "active"
        }
        // The restarted daemon's tunnel is up again (its own status, through the control socket),
        // and forwards. History (issue 5's closing note, "no echo after a watchdog restart in
        // full-suite runs"): found in issue 14 with `--filter 'SystemdTests|FaultInjection'`
        // (6 of 6 failed): NetworkLab left Swift concurrency pool threads in a lab network
        // namespace, so this fixture's sshd and systemd --user were sometimes spawned there, out
        // of reach of the echo. NetworkLab now returns its threads to their namespace (3 of 3
        // passed). Asserted, with the namespaces and sockets in the message if it ever fails.
        try await waitUntil(
            timeout: .seconds(20), "the tunnel up after the watchdog restart\n\(fixture.states)\n\(fixture.daemonLog)"
        ) {
            (try? fixture.cli(["status", "t"]))?.status == 0
        }
        var echoed = false
        for attempt in 0..<6 where !echoed {
            echoed = (try? fixture.echoWorks(seed: 3 + UInt64(attempt))) == true
        }
        #expect(
            echoed,
            "no echo through the tunnel after the watchdog restart\n\(fixture.socketsReport())\n\(fixture.daemonLog)")
    }

    @Test("systemctl --user reload applies a config change: RELOADING/READY, same process, new tunnel up")
    func reloadSendsSIGHUP() async throws {
        let fixture = try SystemdFixture()
        defer { fixture.cleanup() }
        try fixture.install()
        let pid = try fixture.mainPID()
        // A second tunnel added to the config appears with the reload; the first is not touched.
        let secondPort = try FreePort.probe()
        var config = try String(contentsOfFile: fixture.configPath, encoding: .utf8)
        let first = config
        config += first.replacingOccurrences(of: "[tunnels.t]", with: "[tunnels.u]")
            .replacingOccurrences(of: "127.0.0.1:\(fixture.localPort)", with: "127.0.0.1:\(secondPort)")
        try fixture.manager.writeFile(fixture.configPath, config)
        try fixture.manager.systemctl(["reload", "ecto-tunnel.service"], timeout: .seconds(20)).check()
        // u exists only once the reload has been applied: its status (through the CLI, as the
        // unit's user: the control socket serves no one else) is the sign, not the log.
        try await waitUntil(timeout: .seconds(10), "tunnel u up through the service") {
            let status = try? fixture.cli(["status", "u"])
            return status?.status == 0
        }
        #expect(fixture.daemonLog.contains("SIGHUP: reloading"), "\(fixture.daemonLog)")
        #expect(fixture.daemonLog.contains("configuration reloaded"), "\(fixture.daemonLog)")
        let client = try TCPClient.connect(port: secondPort, ioTimeout: .seconds(10))
        try client.sendAll("ping")
        #expect(try client.receive(exactly: 4) == Array("ping".utf8))
        client.close()
        #expect(try fixture.mainPID() == pid)
        #expect(try fixture.property("ActiveState") == "active")
        #expect(try fixture.property("SubState") == "running", "READY=1 after RELOADING=1 ends the reload")
        #expect(try fixture.echoWorks(seed: 4))
    }

    @Test("systemctl --user stop is graceful: an open connection gets its grace, exit status 0")
    func stopIsGraceful() async throws {
        let fixture = try SystemdFixture()
        defer { fixture.cleanup() }
        try fixture.install()
        let client = try TCPClient.connect(port: fixture.localPort, ioTimeout: .seconds(10))
        defer { client.close() }
        try client.sendAll("before stop\n")
        #expect(String(decoding: try client.receive(exactly: 12), as: UTF8.self) == "before stop\n")

        let stop = try Subprocess(
            "setpriv",
            ["--reuid=\(fixture.manager.uid)", "--regid=\(fixture.manager.gid)", "--init-groups", "env", "-i"]
                + fixture.manager.clientEnvironment.map { "\($0.key)=\($0.value)" }
                + ["/usr/bin/systemctl", "--user", "stop", "ecto-tunnel.service"],
            environment: [:])
        // The log, not an event: on SIGTERM the daemon closes its control socket first, so no event
        // tells of the stop (and that socket serves only the unit's user, not the test).
        try await fixture.waitForLog("received SIGTERM, stopping")
        // During the grace the open connection still forwards both ways.
        try client.sendAll("during grace\n")
        #expect(String(decoding: try client.receive(exactly: 13), as: UTF8.self) == "during grace\n")
        try client.shutdownWrite()
        #expect(client.waitForClose(timeout: .seconds(5)))
        let termination = await stop.waitTermination(timeout: .seconds(20))
        #expect(termination == .exited(0), "systemctl stop: \(String(describing: termination)) \(stop.stderr())")
        #expect(try fixture.property("ActiveState") == "inactive")
        #expect(try fixture.property("Result") == "success")
        #expect(try fixture.property("ExecMainStatus") == "0")
        #expect(fixture.daemonLog.contains("tunnel stopped"))
    }

    @Test("template: ecto-tunnel@work runs its own config and socket next to the main daemon; uninstall stops it too")
    func templateInstance() async throws {
        let fixture = try SystemdFixture()
        defer { fixture.cleanup() }
        try fixture.install()
        let port = try FreePort.probe()
        let main = try String(contentsOfFile: fixture.configPath, encoding: .utf8)
        try fixture.manager.writeFile(
            fixture.manager.configHome + "/ecto-tunnel/work.toml",
            main.replacingOccurrences(of: "127.0.0.1:\(fixture.localPort)", with: "127.0.0.1:\(port)"))
        let instanceLog = fixture.manager.home + "/work.log"
        try fixture.manager.writeFile(
            fixture.manager.configHome + "/systemd/user/ecto-tunnel@.service.d/test-log.conf",
            "[Service]\nStandardOutput=append:\(instanceLog)\nStandardError=append:\(instanceLog)\n", mode: 0o644)
        try fixture.manager.systemctl(["daemon-reload"]).check()
        try fixture.manager.systemctl(["enable", "--now", "ecto-tunnel@work.service"], timeout: .seconds(30)).check()
        let unit = "ecto-tunnel@work.service"
        #expect(
            try fixture.manager.property("ActiveState", of: unit) == "active",
            "\((try? String(contentsOfFile: instanceLog, encoding: .utf8)) ?? "")")
        #expect(try echoRoundTrip(port: port, seed: 5, count: 16 * 1024), "echo through the instance")
        #expect(try fixture.echoWorks(seed: 6), "echo through the main daemon")
        let execStart = try fixture.manager.property("ExecStart", of: unit)
        #expect(execStart.contains("--config \(fixture.manager.configHome)/ecto-tunnel/work.toml"), "\(execStart)")
        #expect(
            execStart.contains("--socket \(fixture.manager.runtimeDirectory)/ecto-tunnel/work.sock"), "\(execStart)")
        #expect(try fixture.manager.property("MainPID", of: unit) != String(try fixture.mainPID()))

        let result = try fixture.cli(["uninstall"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("stopped and disabled ecto-tunnel@work.service"), "\(result.stdout)")
        #expect(try fixture.manager.property("ActiveState", of: unit) == "inactive")
    }

    @Test(
        "make install PREFIX=~/.local: install enables that unit instead of writing one (and removes the one it wrote before); uninstall and make uninstall leave nothing"
    )
    func installedUnitIsEnabledNotCopied() async throws {
        let fixture = try SystemdFixture()
        defer { fixture.cleanup() }
        let home = fixture.manager.home
        let unitDirectory = fixture.manager.configHome + "/systemd/user/"
        try fixture.install()  // the unit of our own, as before a package or `make install`
        let firstPID = try fixture.mainPID()
        #expect(FileManager.default.fileExists(atPath: unitDirectory + "ecto-tunnel.service"))

        // What `make install PREFIX=~/.local` runs (scripts/install.sh), with this build's binary.
        let script = repositoryRoot() + "/scripts/install.sh"
        let laidOut = try fixture.manager.runAsUser(script, ["--bin", fixture.binary, "--prefix", home + "/.local"])
        #expect(laidOut.status == 0, "\(laidOut.stdout)\(laidOut.stderr)")
        let installed = home + "/.local/bin/ecto-tunnel"
        let shipped = home + "/.local/share/systemd/user/ecto-tunnel.service"
        let shippedText = try String(contentsOfFile: shipped, encoding: .utf8)
        #expect(
            shippedText.contains(
                "\nExecStart=\(installed) run --config %E/ecto-tunnel/config.toml --socket %t/ecto-tunnel/control.sock\n"
            ))
        for file in [
            "bash-completion/completions/ecto-tunnel", "zsh/site-functions/_ecto-tunnel",
            "fish/vendor_completions.d/ecto-tunnel.fish", "systemd/user/ecto-tunnel@.service",
        ] {
            #expect(FileManager.default.fileExists(atPath: home + "/.local/share/" + file), "\(file) not installed")
        }

        let result = try fixture.manager.runAsUser(installed, ["install"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)\n--- daemon log:\n\(fixture.daemonLog)")
        #expect(
            result.stdout.contains("removed \(unitDirectory)ecto-tunnel.service: the installed \(shipped) replaces it"),
            "\(result.stdout)")
        #expect(result.stdout.contains("using the installed unit \(shipped)"), "\(result.stdout)")
        #expect(result.stdout.contains("restarted ecto-tunnel.service"), "\(result.stdout)")
        #expect(!FileManager.default.fileExists(atPath: unitDirectory + "ecto-tunnel.service"))
        #expect(!FileManager.default.fileExists(atPath: unitDirectory + "ecto-tunnel@.service"))
        #expect(try fixture.property("FragmentPath") == shipped)
        try await waitUntil(timeout: .seconds(20), "the installed unit active with a new daemon\n\(fixture.states)") {
            (try? fixture.property("ActiveState")) == "active"
                && (try? fixture.mainPID()).map { $0 != firstPID && $0 != 0 } == true
        }
        try await waitUntil(
            timeout: .seconds(15), "an echo through the installed unit's tunnel\n\(fixture.socketsReport())"
        ) {
            (try? fixture.echoWorks(seed: 21)) == true
        }
        #expect(try fixture.property("UnitFileState") == "enabled")
        let again = try fixture.manager.runAsUser(installed, ["install"])
        #expect(again.stdout.contains("already running"), "\(again.stdout)")

        // Another config than the default: the installed unit does not fit, a unit of our own is written.
        let other = fixture.manager.configHome + "/ecto-tunnel/other.toml"
        try fixture.manager.writeFile(other, try String(contentsOfFile: fixture.configPath, encoding: .utf8))
        let own = try fixture.manager.runAsUser(installed, ["install", "--config", other])
        #expect(own.status == 0, "\(own.stdout)\(own.stderr)")
        #expect(own.stdout.contains("not using the installed unit"), "\(own.stdout)")
        #expect(
            try String(contentsOfFile: unitDirectory + "ecto-tunnel.service", encoding: .utf8).contains(
                "--config \(other)"))
        #expect(try fixture.property("FragmentPath") == unitDirectory + "ecto-tunnel.service")

        let uninstall = try fixture.manager.runAsUser(installed, ["uninstall"])
        #expect(uninstall.status == 0, "\(uninstall.stdout)\(uninstall.stderr)")
        #expect(uninstall.stdout.contains("\(shipped) stays"), "\(uninstall.stdout)")
        #expect(try fixture.property("UnitFileState") == "disabled")
        let removed = try fixture.manager.runAsUser(script, ["--uninstall", "--prefix", home + "/.local"])
        #expect(removed.status == 0, "\(removed.stdout)\(removed.stderr)")
        let left = try Subprocess.run("find", [home + "/.local", "-type", "f"]).check().stdout
        #expect(left.isEmpty, "left by make uninstall: \(left)")
    }

    @Test("uninstall: disabled, stopped, unit files gone, list-unit-files no longer shows it")
    func uninstallLeavesNothing() async throws {
        let fixture = try SystemdFixture()
        defer { fixture.cleanup() }
        try fixture.install()
        let pid = try fixture.mainPID()
        let result = try fixture.cli(["uninstall"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        let unitDirectory = fixture.manager.configHome + "/systemd/user/"
        #expect(!FileManager.default.fileExists(atPath: unitDirectory + "ecto-tunnel.service"))
        #expect(!FileManager.default.fileExists(atPath: unitDirectory + "ecto-tunnel@.service"))
        #expect(!FileManager.default.fileExists(atPath: unitDirectory + "default.target.wants/ecto-tunnel.service"))
        let listed = try fixture.manager.systemctl(["list-unit-files", "--no-legend", "ecto-tunnel*"])
        #expect(!listed.stdout.contains("ecto-tunnel"), "\(listed.stdout)")
        try await waitUntil(timeout: .seconds(5), "the daemon gone") { !ProcessTree.isAlive(pid) }
        // Our own drop-in (not written by install) is left alone.
        #expect(FileManager.default.fileExists(atPath: unitDirectory + "ecto-tunnel.service.d/test-log.conf"))
        #expect(result.stdout.contains("removed \(unitDirectory)ecto-tunnel.service"), "\(result.stdout)")
    }
}
