import Foundation
import Glibc

/// A throwaway OpenSSH sshd on 127.0.0.1 (or, with `namespace:`, on an address inside a
/// `NetworkLab` namespace), in a private directory of its own (host key,
/// authorized_keys, sshd_config, sshd.log). Logging in works as the user running the tests
/// (root here, with keys only). Killed, with every session process it forked, on `cleanup()` or
/// deinit, and at the latest when the test process exits normally.
///
/// sshd forks one process per connection, and that process calls `setsid()`: it is in neither the
/// listener's process group nor, after the listener dies, its process tree. Stopping only the
/// listener (which is what `systemctl restart ssh` does) leaves established sessions and their
/// forwarded connections working. So `stop`, `kill` and `restart` take the sessions down too unless
/// told `killSessions: false`.
///
/// `@unchecked Sendable`: mutable state is in a `Locked`; start/stop/restart are serialized by
/// `operationLock`.
public final class SSHServer: @unchecked Sendable {
    public static let sshdPath = "/usr/sbin/sshd"

    /// The server's private directory.
    public let directory: TestDirectory
    public let configPath: String
    public let hostKeyPath: String
    public let authorizedKeysPath: String
    /// sshd's stderr (`-e`), appended to across restarts.
    public let logPath: String
    /// "ed25519", "ecdsa", ... (see `KeyPair.generate`).
    public let hostKeyType: String
    /// The user tests log in as: the one running the tests.
    public let user: String
    /// The network namespace sshd runs in (`NetworkLab`), or nil for the test process's own.
    public let namespace: String?
    /// The address sshd listens on (`ListenAddress`): 127.0.0.1 unless given.
    public let listenAddress: String

    private struct State {
        var port: UInt16
        /// A caller-given port, or one sshd already listened on: never replaced by another.
        var portIsFixed: Bool
        var extraConfig: [String]
        var hostKey: KeyPair
        var process: Subprocess?
        /// Session processes left running by `stop(killSessions: false)`; adopted by this process
        /// once their listener died, so they are reaped (and, at cleanup, killed) from here.
        var detachedSessions: [pid_t] = []
        var cleanedUp = false
    }

    private let state: Locked<State>
    private let operationLock = NSLock()

    /// Creates the directory, host key and config; does not start sshd (see `start()` or
    /// `SSHServer.started(...)`).
    ///
    /// - Parameters:
    ///   - extraConfig: sshd_config lines. They are written before the defaults, because sshd keeps
    ///     the first value it reads for a keyword: `["AllowTcpForwarding no"]` overrides the default
    ///     `yes`. Lines from the first `Match` on go at the end of the file.
    ///   - port: a fixed port; default a free one from `FreePort.probe()` (below 32768, so it can be
    ///     re-bound after a restart).
    public convenience init(hostKeyType: String = "ed25519", extraConfig: [String] = [], port: UInt16? = nil) throws {
        try self.init(hostKeyType: hostKeyType, extraConfig: extraConfig, port: port, namespace: nil)
    }

    /// Like `init(hostKeyType:extraConfig:port:)`, for a server that runs inside the network
    /// namespace `namespace` (e.g. `NetworkLab.serverNamespace`; nil: this process's namespace),
    /// listening on `listenAddress` (e.g. `NetworkLab.serverAddress`). Inside a namespace the port
    /// defaults to 22 (the namespace is ours alone). Use `hostKeyLine(host: listenAddress)` for
    /// known_hosts.
    public init(
        hostKeyType: String = "ed25519", extraConfig: [String] = [], port: UInt16? = nil, namespace: String?,
        listenAddress: String = "127.0.0.1"
    ) throws {
        let directory = try TestDirectory(prefix: "ecto-sshd")
        let port = port ?? (namespace != nil ? 22 : nil)
        do {
            self.directory = directory
            self.hostKeyType = hostKeyType
            self.namespace = namespace
            self.listenAddress = listenAddress
            configPath = directory.file("sshd_config")
            hostKeyPath = directory.file("host_key")
            authorizedKeysPath = directory.file("authorized_keys")
            logPath = directory.file("sshd.log")
            user = currentUserName()
            let hostKey = try KeyPair.generate(
                type: hostKeyType, at: hostKeyPath, comment: "ecto-test-host-key")
            try writeFile(authorizedKeysPath, "", mode: 0o644)
            try writeFile(logPath, "", mode: 0o644)
            state = Locked(
                State(
                    port: try port ?? FreePort.probe(), portIsFixed: port != nil, extraConfig: extraConfig,
                    hostKey: hostKey))
            try writeConfig()
        } catch {
            directory.cleanup()
            throw error
        }
        Reaping.serverCreated()
    }

    /// Creates and starts a server.
    public static func started(
        hostKeyType: String = "ed25519", extraConfig: [String] = [], port: UInt16? = nil,
        timeout: Duration = .seconds(5)
    ) throws -> SSHServer {
        let server = try SSHServer(hostKeyType: hostKeyType, extraConfig: extraConfig, port: port)
        try server.start(timeout: timeout)
        return server
    }

    deinit {
        cleanup()
        Reaping.serverDestroyed()
    }

    // MARK: Properties

    public var port: UInt16 { state.withLock { $0.port } }
    /// The listener's pid while it runs.
    public var pid: pid_t? { state.withLock { $0.process.flatMap { $0.isRunning ? $0.pid : nil } } }
    public var isRunning: Bool { pid != nil }
    /// The current host key (changes on `restart(newHostKey: true)`).
    public var hostKey: KeyPair { state.withLock { $0.hostKey } }
    /// "SHA256:…" of the current host key.
    public var hostKeyFingerprint: String { hostKey.fingerprint }
    /// "ssh-ed25519 AAAA…" (algorithm and key, no comment).
    public var hostPublicKey: String { "\(hostKey.algorithm) \(hostKey.base64Blob)" }

    /// The known_hosts line for this server: "[127.0.0.1]:PORT ssh-ed25519 AAAA…" (plain "HOST …" for
    /// port 22).
    public func hostKeyLine(host: String = "127.0.0.1", port: UInt16? = nil) -> String {
        let port = port ?? self.port
        return (port == 22 ? host : "[\(host)]:\(port)") + " " + hostPublicKey
    }

    /// Writes (or appends) `hostKeyLine(host:)` to a known_hosts file.
    public func writeKnownHosts(to path: String, host: String = "127.0.0.1", append: Bool = false) throws {
        try writeFile(path, hostKeyLine(host: host) + "\n", mode: 0o644, append: append)
    }

    // MARK: Keys and config

    /// Lets `key` log in (optionally with authorized_keys options such as `permitopen="…"`).
    /// Takes effect for the next authentication; no restart needed.
    public func authorize(_ key: KeyPair, options: String? = nil) throws {
        let line = (options.map { $0 + " " } ?? "") + key.publicLine + "\n"
        try writeFile(authorizedKeysPath, line, mode: 0o644, append: true)
    }

    /// Removes every authorized key.
    public func revokeAll() throws {
        try writeFile(authorizedKeysPath, "", mode: 0o644)
    }

    /// Replaces the extra sshd_config lines; they take effect at the next `start`/`restart`.
    public func reconfigure(extraConfig: [String]) throws {
        state.withLock { $0.extraConfig = extraConfig }
        try writeConfig()
    }

    /// The sshd_config as written.
    public var config: String { readFileString(configPath) ?? "" }

    private func writeConfig() throws {
        let extra = state.withLock { $0.extraConfig }
        let matchStart = extra.firstIndex { $0.trimmingCharacters(in: .whitespaces).lowercased().hasPrefix("match ") }
        let overrides = extra[..<(matchStart ?? extra.endIndex)]
        let matchBlocks = extra[(matchStart ?? extra.endIndex)...]
        var lines = [
            "# Written by EctoTestSupport.SSHServer. sshd keeps the first value of a keyword,",
            "# so the test's own lines come first.",
        ]
        lines += overrides
        lines += [
            "HostKey \(hostKeyPath)",
            "AuthorizedKeysFile \(authorizedKeysPath)",
            "PidFile none",
            "UsePAM no",
            "StrictModes no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "AllowTcpForwarding yes",
            "LogLevel VERBOSE",
            // The default (10:30:100) starts dropping connections at random from the 10th
            // concurrent unauthenticated one; tests that open several sessions at once need more.
            "MaxStartups 100",
        ]
        lines += matchBlocks
        try writeFile(configPath, lines.joined(separator: "\n") + "\n", mode: 0o644)
    }

    // MARK: Lifecycle

    /// Starts sshd and waits (up to `timeout`) until it logs that it listens. Throws `.serverFailed`
    /// with the tail of its log if it exits or does not come up. A port that turns out to be taken
    /// is replaced by another (only before the first successful start and if none was given).
    public func start(timeout: Duration = .seconds(5)) throws {
        operationLock.lock()
        defer { operationLock.unlock() }
        try startLocked(timeout: timeout)
    }

    private func startLocked(timeout: Duration) throws {
        if state.withLock({ $0.process?.isRunning ?? false }) { return }
        guard !state.withLock({ $0.cleanedUp }) else {
            throw TestSupportError(.serverFailed, "SSHServer was cleaned up")
        }
        if geteuid() == 0 {
            // sshd's privilege separation directory (normally made by the service unit).
            mkdir("/run/sshd", 0o755)
        }
        ResourceLimits.raiseOpenFileLimit()

        for _ in 0..<5 {
            let port = state.withLock { $0.port }
            let logStart = readFileBytes(logPath)?.count ?? 0
            var command = [SSHServer.sshdPath]
            if let namespace { command = try NetworkLab.commandPrefix(in: namespace) + command }
            let process = try Subprocess(
                command[0],
                Array(command.dropFirst())
                    + ["-f", configPath, "-D", "-e", "-o", "ListenAddress=\(listenAddress)", "-p", "\(port)"],
                stdoutPath: logPath, stderrPath: logPath, appendOutput: true, newProcessGroup: true)
            LiveProcesses.markTree(process.pid)
            state.withLock { $0.process = process }

            let ready = "Server listening on \(listenAddress) port \(port)."
            let deadline = ContinuousClock.now.advanced(by: timeout)
            var newLog = ""
            while true {
                newLog = String(decoding: (readFileBytes(logPath) ?? []).dropFirst(logStart), as: UTF8.self)
                if newLog.contains(ready) {
                    state.withLock { $0.portIsFixed = true }
                    return
                }
                if !process.isRunning || ContinuousClock.now >= deadline { break }
                sleepBlocking(.milliseconds(5))
            }
            let exited = process.termination
            stopLocked(signal: SIGKILL, killSessions: true)
            let retry = state.withLock { state -> Bool in
                guard exited != nil, newLog.contains("Address already in use"), !state.portIsFixed,
                    let fresh = try? FreePort.probe()
                else { return false }
                state.port = fresh
                return true
            }
            if retry { continue }
            let what = exited.map { "exited (\($0))" } ?? "did not listen within \(timeout)"
            throw TestSupportError(
                .serverFailed, "sshd on \(listenAddress):\(port) \(what); log:\n\(tail(newLog, lines: 20))")
        }
        throw TestSupportError(.serverFailed, "sshd found no free port after 5 attempts; log:\n\(logTail())")
    }

    /// SIGTERM to sshd (and, unless `killSessions` is false, to every session process it forked);
    /// SIGKILL to whatever still runs after `grace`. Returns when all of them are gone.
    public func stop(killSessions: Bool = true, grace: Duration = .seconds(2)) {
        operationLock.lock()
        defer { operationLock.unlock() }
        stopLocked(signal: SIGTERM, killSessions: killSessions, grace: grace)
    }

    /// SIGKILL to sshd (and, unless `killSessions` is false, its session processes): a crash.
    public func kill(killSessions: Bool = true) {
        operationLock.lock()
        defer { operationLock.unlock() }
        stopLocked(signal: SIGKILL, killSessions: killSessions)
    }

    /// The per-connection sshd processes (one per client connection), oldest first.
    public var sessionProcesses: [pid_t] {
        guard let process = state.withLock({ $0.process }), process.isRunning else { return [] }
        return ProcessTree.descendants(of: process.pid).filter { ProcessTree.stat($0)?.parent == process.pid }.sorted()
    }

    /// Kills every session process (each per-connection sshd and everything it forked) with
    /// `signal`, leaving the listener running: established connections drop as in a crash of their
    /// sessions, and new ones are accepted as before. Returns when they are gone (SIGKILL after
    /// `grace`), with the number of per-connection processes there were.
    @discardableResult
    public func killSessions(signal: Int32 = SIGKILL, grace: Duration = .seconds(2)) -> Int {
        operationLock.lock()
        defer { operationLock.unlock() }
        reapDetachedSessions()
        guard let process = state.withLock({ $0.process }), process.isRunning else { return 0 }
        let direct = ProcessTree.descendants(of: process.pid).filter { ProcessTree.stat($0)?.parent == process.pid }
        let sessions = ProcessTree.freeze(process.pid)
        for pid in sessions {
            Glibc.kill(pid, signal)
            Glibc.kill(pid, SIGCONT)
        }
        process.signal(SIGCONT)
        killAndReap(sessions, grace: grace)
        Reaping.reapAdoptedSSHD()
        return direct.count
    }

    /// Stops and starts again on the same port; with `newHostKey`, a freshly generated host key of
    /// the same type (clients holding the old known_hosts line must now refuse it).
    public func restart(
        newHostKey: Bool = false, killSessions: Bool = true, timeout: Duration = .seconds(5)
    ) throws {
        operationLock.lock()
        defer { operationLock.unlock() }
        stopLocked(signal: SIGTERM, killSessions: killSessions)
        try writeConfig()
        if newHostKey {
            let key = try KeyPair.generate(type: hostKeyType, at: hostKeyPath, comment: "ecto-test-host-key")
            state.withLock { $0.hostKey = key }
        }
        try startLocked(timeout: timeout)
    }

    /// Kills everything and removes the directory (idempotent; the server cannot start again).
    public func cleanup() {
        operationLock.lock()
        defer { operationLock.unlock() }
        stopLocked(signal: SIGKILL, killSessions: true)
        let detached = state.withLock { state -> [pid_t] in
            defer { state.detachedSessions = [] }
            return state.detachedSessions
        }
        for pid in detached { Glibc.kill(pid, SIGKILL) }
        killAndReap(detached, grace: .seconds(2))
        let first = state.withLock { state -> Bool in
            defer { state.cleanedUp = true }
            return !state.cleanedUp
        }
        if first { directory.cleanup() }
    }

    private func stopLocked(signal: Int32, killSessions: Bool, grace: Duration = .seconds(2)) {
        reapDetachedSessions()
        defer { Reaping.reapAdoptedSSHD() }
        guard let process = state.withLock({ $0.process }) else { return }
        defer { state.withLock { $0.process = nil } }
        guard process.isRunning else { return }
        var sessions: [pid_t] = []
        if killSessions {
            sessions = ProcessTree.freeze(process.pid)
            for pid in sessions {
                Glibc.kill(pid, signal)
                Glibc.kill(pid, SIGCONT)
            }
        } else {
            let detached = ProcessTree.descendants(of: process.pid, includingZombies: true)
            state.withLock { $0.detachedSessions += detached }
        }
        process.signal(signal)
        process.signal(SIGCONT)
        if process.waitTermination(timeout: grace) == nil {
            process.kill()
        }
        killAndReap(sessions, grace: grace)
    }

    /// Waits up to `grace` for `pids` to end (reaping those adopted here), then SIGKILLs the rest.
    private func killAndReap(_ pids: [pid_t], grace: Duration) {
        let remaining = Reaping.waitGone(pids, timeout: grace)
        guard !remaining.isEmpty else { return }
        for pid in remaining { Glibc.kill(pid, SIGKILL) }
        _ = Reaping.waitGone(remaining, timeout: .seconds(2))
    }

    /// Reaps detached sessions that have ended by now.
    private func reapDetachedSessions() {
        Reaping.reapAdoptedSSHD()
        state.withLock { state in
            state.detachedSessions = Reaping.waitGone(state.detachedSessions, timeout: .zero)
        }
    }

    // MARK: Inspection

    /// Everything sshd logged (all starts).
    public func log() -> String { readFileString(logPath) ?? "" }

    /// The last `lines` lines of the log.
    public func logTail(lines: Int = 20) -> String { tail(log(), lines: lines) }

    /// Waits until the log contains `text`.
    public func waitForLog(containing text: String, timeout: Duration = .seconds(5)) async throws {
        try await waitUntil(timeout: timeout, "sshd log line containing \(text.debugDescription)") {
            log().contains(text)
        }
    }

    /// Session processes left running by `stop(killSessions: false)` / `restart(killSessions: false)`
    /// that are still alive.
    public func detachedSessionProcessIDs() -> [pid_t] {
        reapDetachedSessions()
        return state.withLock { $0.detachedSessions }
    }

    /// The per-connection sshd processes of the running listener (one per TCP connection it
    /// accepted that is still open).
    public func sessionProcessIDs() -> [pid_t] {
        guard let listener = pid else { return [] }
        Reaping.reapAdoptedSSHD()
        return ProcessTree.descendants(of: listener).filter { ProcessTree.stat($0)?.parent == listener }
    }

    // MARK: OpenSSH client helpers

    /// Arguments for the OpenSSH `ssh` client to log in here, checking the host key against
    /// `knownHostsPath` strictly and ignoring every user and system config. With an `identity`, only
    /// that key file is offered (no agent); with nil, ssh uses the agent in `SSH_AUTH_SOCK`.
    /// `extraOptions` come first, so they win over these defaults (ssh keeps the first value of an
    /// option). The destination `user@127.0.0.1` is the last element: insert `-N`, `-L …` before it.
    public func sshClientArguments(
        identity: KeyPair?, knownHostsPath: String, extraOptions: [String] = []
    ) -> [String] {
        var arguments = ["-F", "/dev/null"] + extraOptions
        if let identity {
            arguments += ["-i", identity.privatePath, "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"]
        }
        arguments += [
            "-p", "\(port)",
            "-o", "UserKnownHostsFile=\(knownHostsPath)",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes",
            "-o", "ExitOnForwardFailure=yes",
            "-o", "ConnectTimeout=5",
        ]
        return arguments + ["\(user)@\(listenAddress)"]
    }

    /// Starts `ssh -N -L 127.0.0.1:localPort:destinationHost:destinationPort` through this server
    /// (the OpenSSH reference for a tunnel). Its stderr is readable with `stderr()`. The forward is
    /// up once `TCPClient.connect(port: localPort, retryRefused: true)` succeeds.
    public func startLocalForward(
        identity: KeyPair?, knownHostsPath: String, localPort: UInt16, destinationPort: UInt16,
        destinationHost: String = "127.0.0.1", extraOptions: [String] = [],
        environment: [String: String] = [:]
    ) throws -> Subprocess {
        let forward = "127.0.0.1:\(localPort):\(destinationHost):\(destinationPort)"
        var arguments = sshClientArguments(
            identity: identity, knownHostsPath: knownHostsPath, extraOptions: extraOptions)
        arguments.insert(contentsOf: ["-N", "-L", forward], at: arguments.count - 1)
        return try Subprocess("ssh", arguments, extraEnvironment: environment)
    }
}
