import EctoConfig
import EctoControl
import EctoPlatform
import EctoTunnel
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Desired state (the config) against actual state (the tunnels), and every operation that
/// changes either: the control socket's registry and the target of SIGHUP.
///
/// Operations come from the control thread and the signal loop; one lock serialises them (they
/// are short: a config parse, a file write, messages to driver threads).
final class Supervisor: ControlRegistry, @unchecked Sendable {
    private let lock = RecursiveLock()
    private let logger: Logger
    private let stopGrace: Duration
    private(set) var configPath: String
    private var order: [String] = []
    private var tunnels: [String: Tunnel] = [:]
    /// Tunnels removed by a reload, still finishing their connections.
    private var departing: [Tunnel] = []
    /// Where state changes go (the control server's event stream). Set before `start`.
    var publish: @Sendable (ControlEvent) -> Void = { _ in }
    /// Called after any tunnel's state changes (for sd_notify STATUS=, say).
    var onStateChange: @Sendable () -> Void = {}
    /// End-to-end probes (`probe`); created by `start`.
    private var probes: ProbeRunner?

    init(configPath: String, stopGrace: Duration, logger: Logger) {
        self.configPath = configPath
        self.stopGrace = stopGrace
        self.logger = logger
    }

    // MARK: Life cycle

    func start(_ config: Config) throws(SystemError) {
        lock.lock()
        defer { lock.unlock() }
        let probes = ProbeRunner(tunnels: { [weak self] in self?.allTunnels ?? [] }, logger: logger) { [weak self] name in
            guard let self, let tunnel = self.lookup(name) else { return }
            self.publish(.changed(self.report(tunnel)))
        }
        self.probes = probes
        probes.start()
        for tunnel in config.tunnels {
            tunnels[tunnel.name] = try startTunnel(tunnel)
            order.append(tunnel.name)
        }
    }

    private func startTunnel(_ config: TunnelConfig) throws(SystemError) -> Tunnel {
        try Tunnel.start(config: config, logger: logger) { [weak self] tunnel in
            guard let self else { return }
            self.publish(.changed(self.report(tunnel)))
            self.probes?.poke()
            self.onStateChange()
        }
    }

    /// Stops every tunnel and waits (bounded by the grace period) for their threads.
    func stopAll() {
        probes?.stop()
        lock.lock()
        let all = order.compactMap { tunnels[$0] } + departing
        lock.unlock()
        for tunnel in all { tunnel.stop(grace: stopGrace) }
        let deadline = ContinuousClock.now.advanced(by: stopGrace + .seconds(2))
        for tunnel in all {
            let left = ContinuousClock.now.duration(to: deadline)
            if !tunnel.wait(timeout: max(left, .milliseconds(1))) {
                logger.error("tunnel \(tunnel.name) did not stop in time")
            }
        }
    }

    /// Tells every tunnel that the network changed (or the machine resumed).
    func networkChanged(_ reason: String) {
        for tunnel in allTunnels { tunnel.send(.networkChanged(reason: reason)) }
    }

    private var allTunnels: [Tunnel] {
        lock.lock()
        defer { lock.unlock() }
        return order.compactMap { tunnels[$0] }
    }

    /// Every tunnel's status, in config order.
    func statuses() -> [TunnelStatus] { allTunnels.map(\.status) }

    /// Every driver thread's handle (current and draining), for the watchdog.
    func drivers() -> [TunnelHandle] {
        lock.lock()
        let all = order.compactMap { tunnels[$0] } + departing
        lock.unlock()
        return all.flatMap(\.drivers)
    }

    // MARK: ControlRegistry

    func status(deep: Bool) -> StatusReport {
        let tunnels = allTunnels
        if deep {
            probes?.probeNow(tunnels.filter { $0.status.state == .up })
        }
        return StatusReport(tunnels: tunnels.map(report))
    }

    /// A tunnel's report with its latest probe result.
    func report(_ tunnel: Tunnel) -> TunnelReport {
        var report = Self.report(tunnel.status)
        report.gateway = probes?.result(for: tunnel.name)
        return report
    }

    func metrics() -> String {
        Metrics.render(allTunnels.map { Metrics.Sample(status: $0.status, gateway: probes?.result(for: $0.name)) })
    }

    func version() -> VersionReport {
        VersionReport(pid: getpid(), config: configPath)
    }

    func setEnabled(tunnel name: String, enabled: Bool) -> Result<ActionReport, ControlFailure> {
        guard let tunnel = lookup(name) else { return .failure(unknown(name)) }
        tunnel.send(enabled ? .enable : .disable)
        let report = settle(tunnel) { $0.enabled == enabled }
        logger.notice("tunnel \(name) \(enabled ? "enabled" : "disabled") by the operator")
        return .success(ActionReport(message: "\(name): \(enabled ? "up (enabled)" : "down (disabled)")", tunnels: [report]))
    }

    func reconnect(tunnel name: String?) -> Result<ActionReport, ControlFailure> {
        var targets: [Tunnel]
        if let name {
            guard let tunnel = lookup(name) else { return .failure(unknown(name)) }
            targets = [tunnel]
        } else {
            targets = allTunnels.filter { $0.status.enabled }
        }
        for tunnel in targets { tunnel.send(.reconnect) }
        let reports = targets.map { tunnel in settle(tunnel) { $0.state != .up } }
        let names = targets.map(\.name).joined(separator: ", ")
        return .success(ActionReport(message: targets.isEmpty ? "no enabled tunnel to reconnect" : "reconnecting: \(names)", tunnels: reports))
    }

    func setTarget(
        tunnel name: String, _ request: TargetRequest, reply: @escaping @Sendable (Result<ActionReport, ControlFailure>) -> Void
    ) {
        lock.lock()
        defer { lock.unlock() }
        guard let tunnel = tunnels[name] else { return reply(.failure(unknown(name))) }
        let target: SSHTarget
        do {
            target = try SSHTarget.parse(request.target)
        } catch {
            return reply(.failure(ControlFailure(400, "invalid target \"\(request.target)\": \(error.message) (expected [user@]host[:port])")))
        }
        if let drain = request.drainTimeout, !(drain >= 0 && drain.isFinite) {
            return reply(.failure(ControlFailure(400, "drain_timeout must be a number of seconds ≥ 0")))
        }
        if let pending = tunnel.pendingChange {
            return reply(
                .failure(ControlFailure(409, "\(name): a change to \(pending.config.target) is being pre-flighted; wait for its answer")))
        }
        let running = tunnel.config
        // The edit is prepared now and saved only once the new session proved itself.
        let text: String
        do {
            text = try String(contentsOfFile: configPath, encoding: .utf8)
        } catch {
            return reply(.failure(ControlFailure(500, "cannot read \(configPath) to save the new target: \(reason(error))")))
        }
        var edited = text
        do {
            if running.sshHostAlias != nil {
                // The alias gave user, host and port; an explicit target replaces it. What the
                // alias also gave (key, known_hosts) is written out so it keeps applying.
                edited = try ConfigEditor.removeKey("ssh_host", inTunnel: name, in: edited)
                if let identity = running.identityFile {
                    edited = try ConfigEditor.setValue(identity, forKey: "identity_file", inTunnel: name, in: edited)
                }
                edited = try ConfigEditor.setValue(running.knownHosts, forKey: "known_hosts", inTunnel: name, in: edited)
            }
            edited = try ConfigEditor.setValue(target.description, forKey: "target", inTunnel: name, in: edited)
        } catch {
            return reply(.failure(ControlFailure(409, "cannot edit \(configPath): fix the file first", problems: Self.problems(error, file: configPath))))
        }
        let parsed: Config
        do {
            parsed = try ConfigLoader.parse(text: edited, path: configPath)
        } catch {
            return reply(
                .failure(
                    ControlFailure(
                        409, "\(configPath) has errors; fix them (ecto-tunnel check) before changing the target",
                        problems: Self.problems(error, file: configPath))))
        }
        guard let updated = parsed.tunnels.first(where: { $0.name == name }) else {
            return reply(.failure(ControlFailure(409, "tunnel \(name) is no longer in \(configPath); run ecto-tunnel reload")))
        }
        var alsoChanged: [String] = []
        var comparable = updated
        comparable.target = running.target
        comparable.sshHostAlias = running.sshHostAlias
        if !comparable.sameSettings(as: running) { alsoChanged.append("other edits of this tunnel found in the file") }
        if updated.sameSettings(as: running) {
            return reply(.success(ActionReport(message: "\(name) already targets \(target)", tunnels: [Self.report(tunnel.status)])))
        }
        let drain = request.drainTimeout.map { Duration.milliseconds(Int64($0 * 1000)) } ?? updated.drainTimeout
        let force = request.force ?? false
        let configPath = self.configPath
        let logger = self.logger
        /// Saves the edit (if the file is still what it was) and switches. Under the lock.
        let apply: @Sendable (Tunnel.Candidate?) -> Result<String, ControlFailure> = { [weak self, edited, alsoChanged] candidate in
            guard let self else { return .failure(ControlFailure(503, "the daemon is stopping")) }
            let now = try? String(contentsOfFile: configPath, encoding: .utf8)
            guard now == text else {
                if let candidate { tunnel.abandon(candidate) }
                return .failure(ControlFailure(409, "\(configPath) changed while the new target was pre-flighted; nothing was changed, try again"))
            }
            do {
                try AtomicFile.replace(path: configPath, with: edited)
            } catch {
                if let candidate { tunnel.abandon(candidate) }
                return .failure(ControlFailure(500, "cannot save \(configPath): \(error); nothing was changed"))
            }
            do {
                if let candidate { tunnel.commit(candidate, drain: drain) } else { try tunnel.replace(with: updated, drain: drain) }
            } catch {
                return .failure(ControlFailure(500, "saved, but could not start the new session: \(error)"))
            }
            logger.notice("tunnel \(name): target changed from \(running.target) to \(target) (saved in \(configPath))")
            var message = "\(name): target \(running.target) → \(target), saved in \(configPath)"
            if !alsoChanged.isEmpty { message += " (also applied: \(alsoChanged.joined(separator: ", ")))" }
            self.onStateChange()
            return .success(message)
        }
        guard tunnel.wouldConnect(with: updated) else {
            // Down: no session to keep, none to prove.
            switch apply(nil) {
            case .success(let message): reply(.success(ActionReport(message: message + " (the tunnel is down: nothing to pre-flight)", tunnels: [Self.report(tunnel.status)])))
            case .failure(let failure): reply(.failure(failure))
            }
            return
        }
        let candidate: Tunnel.Candidate
        do {
            candidate = try tunnel.prepare(updated)
        } catch {
            return reply(.failure(ControlFailure(500, "cannot start a session to \(target): \(error); nothing was changed")))
        }
        logger.info("tunnel \(name): pre-flighting the new target \(target) while \(running.target) keeps serving")
        awaitVerdicts([candidate]) { [weak self] verdicts in
            guard let self else { return }
            self.lock.lock()
            defer { self.lock.unlock() }
            switch verdicts[0] {
            case .passed:
                reply(apply(candidate).map { ActionReport(message: $0 + "; the new session was proven first", tunnels: [Self.report(tunnel.status)]) })
            case .failed(let stage, let why) where force:
                logger.warning("tunnel \(name): pre-flight of \(target) failed at \(stage) (\(why)); switching anyway (--force)")
                reply(
                    apply(candidate).map {
                        ActionReport(
                            message: $0 + "; FORCED although the pre-flight failed at \(stage): \(why). The tunnel keeps retrying the new target.",
                            tunnels: [Self.report(tunnel.status)])
                    })
            case .failed(let stage, let why):
                tunnel.abandon(candidate)
                logger.warning("tunnel \(name): target change to \(target) refused: pre-flight failed at \(stage): \(why)")
                reply(
                    .failure(
                        ControlFailure(
                            422,
                            "\(name): not switched to \(target): \(stage) failed: \(why). The tunnel stays on \(running.target) and \(configPath) is unchanged (--force switches anyway).",
                            stage: stage)))
            }
        }
    }

    func reload(_ request: ReloadRequest, reply: @escaping @Sendable (Result<ReloadReport, ControlFailure>) -> Void) {
        lock.lock()
        defer { lock.unlock() }
        let config: Config
        do {
            config = try ConfigLoader.load(path: configPath)
        } catch {
            logger.error("reload refused, the running configuration stays:\n\(error.description)")
            return reply(.failure(ControlFailure(422, "\(configPath) has errors; nothing was changed", problems: Self.problems(error, file: configPath))))
        }
        let force = request.force ?? false
        var added: [String] = []
        var removed: [String] = []
        var changed: [String] = []
        var unchanged: [String] = []
        var failed: [ChangeFailure] = []
        var proving: [(tunnel: Tunnel, candidate: Tunnel.Candidate)] = []
        let newNames = Set(config.tunnels.map(\.name))
        for name in order where !newNames.contains(name) {
            guard let tunnel = tunnels.removeValue(forKey: name) else { continue }
            tunnel.stop(grace: min(stopGrace, tunnel.config.drainTimeout))
            departing.append(tunnel)
            removed.append(name)
            publish(.removed(name))
        }
        for tunnelConfig in config.tunnels {
            if let tunnel = tunnels[tunnelConfig.name] {
                if tunnel.config.sameSettings(as: tunnelConfig) {
                    unchanged.append(tunnelConfig.name)
                    continue
                }
                if let pending = tunnel.pendingChange {
                    failed.append(
                        ChangeFailure(
                            tunnel: tunnelConfig.name, stage: "busy", error: "a change to \(pending.config.target) is being pre-flighted; reload again after it"))
                    continue
                }
                do {
                    if tunnel.wouldConnect(with: tunnelConfig) {
                        proving.append((tunnel, try tunnel.prepare(tunnelConfig)))
                    } else {
                        try tunnel.replace(with: tunnelConfig, drain: tunnelConfig.drainTimeout)
                        changed.append(tunnelConfig.name)
                    }
                } catch {
                    logger.error("reload: cannot restart tunnel \(tunnelConfig.name): \(error)")
                    failed.append(ChangeFailure(tunnel: tunnelConfig.name, stage: "local", error: "cannot start a session: \(error)"))
                }
            } else {
                do {
                    tunnels[tunnelConfig.name] = try startTunnel(tunnelConfig)
                    added.append(tunnelConfig.name)
                } catch {
                    logger.error("reload: cannot start tunnel \(tunnelConfig.name): \(error)")
                    failed.append(ChangeFailure(tunnel: tunnelConfig.name, stage: "local", error: "cannot start: \(error)"))
                }
            }
        }
        order = config.tunnels.map(\.name).filter { tunnels[$0] != nil }
        probes?.poke()
        departing.removeAll { $0.wait(timeout: .zero) }
        onStateChange()
        let configPath = self.configPath
        let warnings = config.warnings.map(Self.problem)
        let logger = self.logger
        let finish: @Sendable ([String], [ChangeFailure], [ChangeFailure]) -> Void = { [added, removed, unchanged] changed, failed, forced in
            logger.notice(
                "configuration reloaded",
                metadata: [
                    "added": "\(added.joined(separator: ","))", "removed": "\(removed.joined(separator: ","))",
                    "changed": "\(changed.joined(separator: ","))", "unchanged": "\(unchanged.count)",
                    "refused": "\(failed.map(\.tunnel).joined(separator: ","))",
                ])
            reply(
                .success(
                    ReloadReport(
                        config: configPath, added: added, removed: removed, changed: changed, unchanged: unchanged,
                        warnings: warnings, failed: failed, forced: forced)))
        }
        guard !proving.isEmpty else { return finish(changed, failed, []) }
        let names = proving.map(\.tunnel.name).joined(separator: ", ")
        logger.info("reload: pre-flighting the new settings of \(names) while their sessions keep serving")
        awaitVerdicts(proving.map(\.candidate)) { [weak self, changed, failed, proving] verdicts in
            guard let self else { return }
            self.lock.lock()
            var changed = changed
            var failed = failed
            var forced: [ChangeFailure] = []
            for ((tunnel, candidate), verdict) in zip(proving, verdicts) {
                switch verdict {
                case .passed:
                    tunnel.commit(candidate, drain: candidate.config.drainTimeout)
                    changed.append(tunnel.name)
                case .failed(let stage, let why):
                    let failure = ChangeFailure(tunnel: tunnel.name, stage: stage, error: why)
                    if force {
                        logger.warning("reload: \(tunnel.name): pre-flight failed at \(stage) (\(why)); applied anyway (force)")
                        tunnel.commit(candidate, drain: candidate.config.drainTimeout)
                        changed.append(tunnel.name)
                        forced.append(failure)
                    } else {
                        logger.warning("reload: \(tunnel.name) keeps its running settings: pre-flight failed at \(stage): \(why)")
                        tunnel.abandon(candidate)
                        failed.append(failure)
                    }
                }
            }
            self.onStateChange()
            self.lock.unlock()
            finish(changed, failed, forced)
        }
    }

    /// The verdict of one change's pre-flight.
    enum Verdict: Sendable {
        case passed
        case failed(stage: String, reason: String)
    }

    /// Waits on a thread of its own until every candidate's pre-flight has a verdict, or its
    /// deadline (the new config's connect_timeout, plus 5 s for the channel) passed; then `then`.
    private func awaitVerdicts(_ candidates: [Tunnel.Candidate], then: @escaping @Sendable ([Verdict]) -> Void) {
        startThread(name: "pre-flight", stackSize: 256 * 1024) {
            var verdicts: [Verdict?] = Array(repeating: nil, count: candidates.count)
            let allowed = candidates.map { $0.config.connectTimeout + .seconds(5) }
            while verdicts.contains(where: { $0 == nil }) {
                let now = ContinuousClock.now
                for (index, candidate) in candidates.enumerated() where verdicts[index] == nil {
                    switch candidate.preflight {
                    case .passed?:
                        verdicts[index] = .passed
                    case .failed(let stage, let reason)?:
                        verdicts[index] = .failed(stage: stage, reason: reason)
                    case .running(let stage)?:
                        if now >= candidate.started.advanced(by: allowed[index]) {
                            verdicts[index] = .failed(
                                stage: "timeout", reason: "no verdict within \(allowed[index]) (still at \(stage))")
                        }
                    case nil:
                        if now >= candidate.started.advanced(by: allowed[index]) {
                            verdicts[index] = .failed(stage: "timeout", reason: "the new session did not start within \(allowed[index])")
                        }
                    }
                }
                if verdicts.contains(where: { $0 == nil }) { usleep(10_000) }
            }
            then(verdicts.map { $0! })
        }
    }

    // MARK: Helpers

    private func lookup(_ name: String) -> Tunnel? {
        lock.lock()
        defer { lock.unlock() }
        return tunnels[name]
    }

    private func unknown(_ name: String) -> ControlFailure {
        let known = allTunnels.map(\.name)
        return ControlFailure(404, "no tunnel named \(name)" + (known.isEmpty ? "" : " (tunnels: \(known.joined(separator: ", ")))"))
    }

    /// Waits briefly (≤ 1 s) until the driver has acted on a command, for an answer that shows
    /// the effect rather than the state before it.
    private func settle(_ tunnel: Tunnel, until done: (TunnelStatus) -> Bool) -> TunnelReport {
        let deadline = ContinuousClock.now.advanced(by: .seconds(1))
        var status = tunnel.status
        while !done(status) && ContinuousClock.now < deadline {
            usleep(5_000)
            status = tunnel.status
        }
        return Self.report(status)
    }

    static func report(_ status: TunnelStatus) -> TunnelReport {
        var report = TunnelReport(
            name: status.name, state: status.state.rawValue, enabled: status.enabled, target: status.target,
            local: status.local, remote: status.remote, connections: status.connections, bytesIn: status.bytesIn,
            bytesOut: status.bytesOut, reconnects: status.reconnects, since: status.since, lastError: status.lastError,
            draining: status.draining.map { DrainingSession(target: $0.target, connections: $0.connections) },
            sessions: status.sessions, sessionsUp: status.sessionsUp)
        report.clientsRefused = status.clientsRefused
        if status.state == .backoff {
            report.retryAt = status.retryAt
            report.retryCause = status.retryCause?.rawValue
        }
        report.change = status.change.map { ChangeReport(target: $0.target, stage: $0.stage, started: $0.started) }
        report.forwards = status.forwards.map {
            ForwardReport(
                local: $0.local, remote: $0.remote, state: $0.state.rawValue, connections: $0.connections, bytesIn: $0.bytesIn,
                bytesOut: $0.bytesOut, lastError: $0.lastError)
        }
        return report
    }

    static func problem(_ error: ConfigError) -> ConfigProblem {
        ConfigProblem(file: error.file, line: error.line, column: error.column, key: error.key, message: error.message)
    }

    static func problems(_ error: ConfigErrors, file: String) -> [ConfigProblem] {
        error.errors.map { error in
            var error = error
            if error.file == "<config>" { error.file = file }
            return problem(error)
        }
    }
}

/// Replacing a file so that readers see the old or the new content, never a mix: a temporary
/// file in the same directory with the same mode and owner, fsync, rename, fsync the directory.
public enum AtomicFile {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public static func replace(path requested: String, with text: String) throws(Failure) {
        // Through a symlink (dotfile managers): replace the file it points to, keep the link.
        let path = Path.resolvingSymlinks(requested)
        var info = stat()
        let exists = stat(path, &info) == 0
        let directory = Path.directory(of: path).isEmpty ? "." : Path.directory(of: path)
        let name = Path.lastComponent(of: path)
        let temporary = "\(directory)/.\(name).ecto-tunnel-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, exists ? info.st_mode & 0o7777 : 0o600)
        guard fd >= 0 else { throw Failure(description: "create \(temporary): \(String(cString: strerror(errno)))") }
        var ok = true
        var problem = ""
        if exists {
            fchmod(fd, info.st_mode & 0o7777)
            if geteuid() == 0 { fchown(fd, info.st_uid, info.st_gid) }
        }
        let bytes = Array(text.utf8)
        var offset = 0
        while ok && offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                ok = false
                problem = "write \(temporary): \(String(cString: strerror(errno)))"
            } else {
                offset += n
            }
        }
        if ok && fsync(fd) != 0 {
            ok = false
            problem = "fsync \(temporary): \(String(cString: strerror(errno)))"
        }
        close(fd)
        if ok && rename(temporary, path) != 0 {
            ok = false
            problem = "rename to \(path): \(String(cString: strerror(errno)))"
        }
        guard ok else {
            unlink(temporary)
            throw Failure(description: problem)
        }
        let dirFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirFD >= 0 {
            fsync(dirFD)
            close(dirFD)
        }
    }
}
