import EctoControl
import EctoStatus
import EctoTestSupport
import Foundation
import Glibc
import Testing

/// A real OpenSSH sshd on loopback, a client key it accepts, a known_hosts that trusts it, and the
/// real `ecto-tunnel` binary run as a subprocess against a config written per test.
final class TunnelFixture: @unchecked Sendable {
    let directory: TestDirectory
    let server: SSHServer
    let clientKey: KeyPair
    let knownHosts: String
    let configPath: String
    /// The daemon's control socket (one per fixture: tests never share a daemon).
    let socketPath: String
    private(set) var daemon: Subprocess?

    init(
        hostKeyType: String = "ed25519", clientKeyType: String = "ed25519", trustHost: Bool = true,
        authorize: Bool = true,
        sshdOptions: [String] = []
    ) throws {
        directory = try TestDirectory(prefix: "ecto-it")
        server = try SSHServer(hostKeyType: hostKeyType, extraConfig: sshdOptions)
        clientKey = try KeyPair.generate(type: clientKeyType, in: directory, name: "id_client")
        if authorize { try server.authorize(clientKey) }
        knownHosts = directory.file("known_hosts")
        if trustHost {
            try server.writeKnownHosts(to: knownHosts)
        } else {
            _ = try directory.write("known_hosts", "")
        }
        configPath = directory.file("config.toml")
        socketPath = directory.file("control.sock")
        try server.start()
    }

    deinit { cleanup() }

    func cleanup() {
        if let daemon, daemon.isRunning { _ = daemon.terminate(grace: .seconds(3)) }
        server.cleanup()
        directory.cleanup()
    }

    var target: String { "\(server.user)@127.0.0.1:\(server.port)" }

    /// One `[tunnels.NAME]` table with fast retry settings for tests; `extra` lines override.
    func tunnel(
        _ name: String = "t", localPort: UInt16, remotePort: UInt16, identity: Bool = true, extra: [String] = []
    ) -> String {
        var lines = [
            "[tunnels.\(name)]",
            "target = \"\(target)\"",
            "local = \"127.0.0.1:\(localPort)\"",
            "remote = \"127.0.0.1:\(remotePort)\"",
            "known_hosts = \"\(knownHosts)\"",
            "backoff_initial = \"100ms\"",
            "backoff_max = \"500ms\"",
            "connect_timeout = \"5s\"",
        ]
        if identity { lines.append("identity_file = \"\(clientKey.privatePath)\"") }
        let overridden = Set(extra.compactMap { $0.split(separator: "=").first?.trimmingCharacters(in: .whitespaces) })
        lines = lines.filter { line in
            guard let key = line.split(separator: "=").first?.trimmingCharacters(in: .whitespaces) else { return true }
            return !overridden.contains(key)
        }
        return (lines + extra).joined(separator: "\n") + "\n"
    }

    func writeConfig(_ text: String) throws {
        _ = try directory.write("config.toml", text)
    }

    /// Starts `ecto-tunnel run` (without the caller's ssh-agent unless `environment` sets one, and
    /// with HOME = the fixture's directory unless `environment` sets it).
    @discardableResult
    /// `launcher`: a command that execs the daemon in its own process (e.g. `prlimit --nofile=…`).
    func startDaemon(
        environment: [String: String] = [:], arguments: [String] = ["--log-level", "debug"], launcher: [String] = []
    ) throws -> Subprocess {
        var env = ProcessInfo.processInfo.environment
        env["SSH_AUTH_SOCK"] = nil
        env["ECTO_TUNNEL_SOCKET"] = socketPath
        // ssh's default identities (~/.ssh/id_*) must come from the test, not the machine.
        env["HOME"] = directory.path
        for (key, value) in environment { env[key] = value }
        let binary = try ProductLocator.binary("ecto-tunnel")
        let command = launcher.isEmpty ? binary : try Subprocess.resolve(launcher[0])
        let process = try Subprocess(
            command,
            Array(launcher.dropFirst()) + (launcher.isEmpty ? [] : [binary]) + ["run", "--config", configPath]
                + arguments,
            environment: env, stdoutPath: directory.file("daemon.out"), stderrPath: directory.file("daemon.log"))
        daemon = process
        return process
    }

    /// The common setup: an echo server behind sshd, one tunnel `t` to it on a free local port,
    /// the daemon started (with `environment`, `arguments` and `launcher`, see `startDaemon`), and
    /// the session up. The caller stops the echo server.
    func startEchoTunnel(
        identity: Bool = true, extra: [String] = [], environment: [String: String] = [:],
        arguments: [String] = ["--log-level", "debug"], launcher: [String] = []
    ) async throws -> (echo: EchoServer, localPort: UInt16) {
        let (echo, localPort) = try writeEchoTunnel(identity: identity, extra: extra)
        try startDaemon(environment: environment, arguments: arguments, launcher: launcher)
        try await waitForUp()
        return (echo, localPort)
    }

    /// `startEchoTunnel`'s config only: an echo server and tunnel `t` to it on a free local port,
    /// written, the daemon not started. The caller stops the echo server.
    func writeEchoTunnel(identity: Bool = true, extra: [String] = []) throws -> (echo: EchoServer, localPort: UInt16) {
        let echo = try EchoServer()
        let localPort = try FreePort.probe()
        try writeConfig(tunnel(localPort: localPort, remotePort: echo.port, identity: identity, extra: extra))
        return (echo, localPort)
    }

    var daemonLog: String { daemon?.stderr() ?? "" }

    func waitForLog(
        _ text: String, timeout: Duration = .seconds(10), count: Int = 1, fileID: String = #fileID, line: Int = #line
    ) async throws {
        try await waitForLogText(text, count: count, timeout: timeout, fileID: fileID, line: line) { daemonLog }
    }

    /// Waits until every tunnel in `names` (every configured one when nil) is up, as the daemon
    /// itself says on `GET /v1/events` (its snapshot, then each change): the event, not a log line.
    func waitForUp(
        _ names: [String]? = nil, timeout: Duration = .seconds(10), fileID: String = #fileID, line: Int = #line
    ) async throws {
        try await waitForState(.up, names, timeout: timeout, fileID: fileID, line: line)
    }

    /// Waits until every tunnel in `names` (every configured one when nil) is in `wanted`, on
    /// `GET /v1/events`. The daemon logs a state's reason before it publishes the state, so the
    /// log holds it once this returns.
    func waitForState(
        _ wanted: TunnelState, _ names: [String]? = nil, timeout: Duration = .seconds(10), fileID: String = #fileID,
        line: Int = #line
    ) async throws {
        try await waitForTunnelState(
            socket: socketPath, wanted, names, timeout: timeout, fileID: fileID, line: line
        ) { [weak self] in self?.daemonLog ?? "" }
    }

    /// Runs the CLI to completion (for `check` and friends).
    /// `status --json [extra]`: the exit status and the decoded report (nil if it is not one).
    func statusJSON(_ extra: [String] = []) throws -> (code: Int32, report: StatusReport?) {
        let result = try runCLI(["status", "--json"] + extra)
        let report = try? ControlProtocol.decoder().decode(StatusReport.self, from: Data(result.stdout.utf8))
        return (result.status, report)
    }

    func runCLI(_ arguments: [String], timeout: Duration = .seconds(60)) throws -> CommandResult {
        try Subprocess.run(
            try ProductLocator.binary("ecto-tunnel"), arguments, extraEnvironment: ["ECTO_TUNNEL_SOCKET": socketPath],
            timeout: timeout)
    }
}

func mbPerSecond(_ bytes: Int, _ elapsed: Duration) -> String {
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    return String(format: "%.1f MB/s", Double(bytes) / 1e6 / seconds)
}

/// Waits until `log()` holds `text` at least `count` times (the daemon fixtures' `waitForLog`).
func waitForLogText(
    _ text: String, count: Int = 1, timeout: Duration, fileID: String = #fileID, line: Int = #line,
    log: () -> String
) async throws {
    try await waitUntil(
        timeout: timeout, "daemon log to contain \(text.debugDescription) ×\(count)\n--- daemon log:\n\(log())",
        fileID: fileID, line: line
    ) {
        log().occurrences(of: text) >= count
    }
}

/// Waits until every tunnel in `names` (every one the daemon has, when nil) of the daemon on
/// `socket` is in `wanted` at once, on `GET /v1/events`: in its snapshot or after a later event,
/// as recorded by an `EventWatcher`. The daemon may not be listening yet (just started), and a
/// subscription whose stream ends (the daemon restarting) is made again, until the deadline;
/// every watcher is closed (its socket and reader thread gone) before this returns or throws, and
/// no wait outlasts `timeout` by more than a poll (10 ms). `log` for the failure message.
func waitForTunnelState(
    socket: String, _ wanted: TunnelState, _ names: [String]? = nil, timeout: Duration = .seconds(10),
    fileID: String = #fileID, line: Int = #line, log: @escaping @Sendable () -> String
) async throws {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    var events: [ControlEvent] = []
    var problem: String?
    subscribing: while ContinuousClock.now < deadline {
        let watcher: EventWatcher
        do {
            watcher = try await EventWatcher.start(
                socket: socket, timeout: ContinuousClock.now.duration(to: deadline), log: log)
        } catch let error as TestSupportError where error.kind == .timeout {
            problem = "no subscription: nothing listening on \(socket), or no snapshot"
            break
        }
        defer { watcher.close() }
        while true {
            events = watcher.events
            if EventWatcher.reached(wanted, names, in: events) { return }
            if let end = watcher.ended {
                problem = "the event stream ended (\(end)); subscribing again"
                break
            }
            if ContinuousClock.now >= deadline {
                problem = nil
                break subscribing
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw TestSupportError(
        .timeout,
        "\(fileID):\(line): tunnels \(names?.joined(separator: ", ") ?? "(all)") not \(wanted.rawValue) within \(timeout) (GET /v1/events\(problem.map { ": \($0)" } ?? ""))\n--- events (the last subscription):\n\(EventWatcher.describe(events))\n--- daemon log:\n\(log())"
    )
}

/// A TCP listener on 127.0.0.1 (a port of the kernel's choosing) that never accepts: connects
/// succeed (the backlog), nothing is ever said. `listening`: bind and listen succeeded (the caller
/// asserts it). The caller closes `socket`.
func silentListener() -> (socket: Int32, port: UInt16, listening: Bool) {
    let silent = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(silent, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    let listening = bound == 0 && listen(silent, 8) == 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(silent, $0, &length) }
    }
    return (silent, UInt16(bigEndian: address.sin_port), listening)
}
