import EctoConfig
import EctoControl
import EctoPlatform
import EctoStatus
import EctoTunnel
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import Synchronization
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// Desired state (the config) against actual state (the tunnels), and every operation that
/// changes either: the control socket's registry and the target of SIGHUP.
///
/// Operations come from the control thread, the signal loop and pre-flight threads; they run
/// one at a time under `state`, a `Mutex` (they are short: a config parse, a file write,
/// messages to driver threads). Nothing that may come back into the supervisor (`onStateChange`,
/// which asks for `statuses()`) is called while it is held.
///
/// `@unchecked Sendable`: the mutable state is in `state` and `probeRunner` (both `Mutex`);
/// `publish` and `onStateChange` are set once by `Daemon` before `start`, before any other thread
/// can reach the supervisor, and only read afterwards.
final class Supervisor: ControlRegistry, @unchecked Sendable {
    /// The running tunnels.
    private struct State {
        /// Tunnel names in config order.
        var order: [String] = []
        var tunnels: [String: Tunnel] = [:]
        /// Tunnels removed by a reload, still finishing their connections.
        var departing: [Tunnel] = []

        /// Every current tunnel, in config order.
        var all: [Tunnel] { order.compactMap { tunnels[$0] } }
    }

    private let state = Mutex(State())
    /// Serialises the operations that change tunnels (`setTarget`, `reload`, the commit or
    /// abandon after a pre-flight): held for a whole operation, while `state` is taken only for
    /// each read or write of the tunnels, so that `onStateChange` and `statuses()` never wait
    /// for an operation.
    private let operations = Mutex(())
    private let logger: Logger
    private let stopGrace: Duration
    let configPath: String
    /// Where state changes go (the control server's event stream). Set before `start`.
    var publish: @Sendable (ControlEvent) -> Void = { _ in }
    /// Called after any tunnel's state changes (for sd_notify STATUS=, say). Set before `start`;
    /// never called with `state` held (it asks for `statuses()`).
    var onStateChange: @Sendable () -> Void = {}
    /// End-to-end probes (`probe`); created by `start`.
    private let probeRunner = Mutex<ProbeRunner?>(nil)
    private var probes: ProbeRunner? { probeRunner.withLock { $0 } }
    /// Answers waiting until drivers acted on a command (`settle`).
    private let settling = Mutex<[SettleWaiter]>([])

    init(configPath: String, stopGrace: Duration, logger: Logger) {
        self.configPath = configPath
        self.stopGrace = stopGrace
        self.logger = logger
    }

    // MARK: Life cycle

    func start(_ config: Config) throws(SystemError) {
        let probes = ProbeRunner(
            tunnels: { [weak self] in self?.allTunnels ?? [] }, logger: logger,
            onChange: { [weak self] name in
                guard let self, let tunnel = self.lookup(name) else { return }
                self.publish(.changed(self.report(tunnel)))
            })
        probeRunner.withLock { $0 = probes }
        probes.start()
        try state.withLock { (state) throws(SystemError) in
            for tunnel in config.tunnels {
                state.tunnels[tunnel.name] = try startTunnel(tunnel)
                state.order.append(tunnel.name)
            }
        }
    }

    private func startTunnel(_ config: TunnelConfig) throws(SystemError) -> Tunnel {
        try Tunnel.start(config: config, logger: logger) { [weak self] tunnel in
            guard let self else { return }
            self.checkSettling()
            self.publish(.changed(self.report(tunnel)))
            self.probes?.poke()
            self.onStateChange()
        }
    }

    /// Stops every tunnel and waits (bounded by the grace period) for their threads.
    func stopAll() {
        probes?.stop()
        let all = state.withLock { $0.all + $0.departing }
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

    private var allTunnels: [Tunnel] { state.withLock { $0.all } }

    /// Every tunnel's status, in config order.
    func statuses() -> [TunnelStatus] { allTunnels.map(\.status) }

    /// Every driver thread's handle (current and draining), for the watchdog.
    func drivers() -> [TunnelHandle] {
        state.withLock { $0.all + $0.departing }.flatMap(\.drivers)
    }

    // MARK: ControlRegistry

    func status() -> StatusReport {
        StatusReport(tunnels: allTunnels.map(report))
    }

    func deepStatus(reply: @escaping @Sendable (StatusReport) -> Void) {
        let up = allTunnels.filter { $0.status.state == .up }
        guard let probes else { return reply(status()) }
        probes.probeNow(up) { [weak self] in
            reply(self?.status() ?? StatusReport(tunnels: []))
        }
    }

    /// A tunnel's report with its latest probe result.
    func report(_ tunnel: Tunnel) -> TunnelStatus {
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

    func setEnabled(
        tunnel name: String, enabled: Bool, reply: @escaping @Sendable (Result<ActionReport, ControlFailure>) -> Void
    ) {
        guard let tunnel = lookup(name) else { return reply(.failure(unknown(name))) }
        tunnel.send(enabled ? .enable : .disable)
        logger.notice("tunnel \(name) \(enabled ? "enabled" : "disabled") by the operator")
        let message = "\(name): \(enabled ? "up (enabled)" : "down (disabled)")"
        settle(
            [tunnel], until: { $0.enabled == enabled },
            then: { reports in reply(.success(ActionReport(message: message, tunnels: reports))) })
    }

    func reconnect(tunnel name: String?, reply: @escaping @Sendable (Result<ActionReport, ControlFailure>) -> Void) {
        var targets: [Tunnel]
        if let name {
            guard let tunnel = lookup(name) else { return reply(.failure(unknown(name))) }
            targets = [tunnel]
        } else {
            targets = allTunnels.filter { $0.status.enabled }
        }
        for tunnel in targets { tunnel.send(.reconnect) }
        let names = targets.map(\.name).joined(separator: ", ")
        let message = targets.isEmpty ? "no enabled tunnel to reconnect" : "reconnecting: \(names)"
        settle(
            targets, until: { $0.state != .up },
            then: { reports in reply(.success(ActionReport(message: message, tunnels: reports))) })
    }

    func setTarget(
        tunnel name: String, _ request: TargetRequest,
        reply: @escaping @Sendable (Result<ActionReport, ControlFailure>) -> Void
    ) {
        operations.withLock { _ in setTargetLocked(tunnel: name, request, reply: reply) }
    }

    /// `setTarget` under `operations`.
    private func setTargetLocked(
        tunnel name: String, _ request: TargetRequest,
        reply: @escaping @Sendable (Result<ActionReport, ControlFailure>) -> Void
    ) {
        guard let tunnel = lookup(name) else { return reply(.failure(unknown(name))) }
        let target: SSHTarget
        do {
            target = try SSHTarget.parse(request.target)
        } catch {
            return reply(
                .failure(
                    ControlFailure(
                        400, "invalid target \"\(request.target)\": \(error.message) (expected [user@]host[:port])")))
        }
        if let drain = request.drainTimeout, !(drain >= 0 && drain.isFinite) {
            return reply(.failure(ControlFailure(400, "drain_timeout must be a number of seconds ≥ 0")))
        }
        if let pending = tunnel.pendingChange {
            return reply(
                .failure(
                    ControlFailure(
                        409, "\(name): a change to \(pending.config.target) is being pre-flighted; wait for its answer")
                ))
        }
        let running = tunnel.config
        // The edit is prepared now and saved only once the new session proved itself.
        let text: String
        do {
            text = try String(contentsOfFile: configPath, encoding: .utf8)
        } catch {
            return reply(
                .failure(ControlFailure(500, "cannot read \(configPath) to save the new target: \(reason(error))")))
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
                edited = try ConfigEditor.setValue(
                    running.knownHosts, forKey: "known_hosts", inTunnel: name, in: edited)
            }
            edited = try ConfigEditor.setValue(target.description, forKey: "target", inTunnel: name, in: edited)
        } catch {
            return reply(
                .failure(
                    ControlFailure(
                        409, "cannot edit \(configPath): fix the file first",
                        problems: Self.problems(error, file: configPath))))
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
            return reply(
                .failure(ControlFailure(409, "tunnel \(name) is no longer in \(configPath); run ecto-tunnel reload")))
        }
        var alsoChanged: [String] = []
        var comparable = updated
        comparable.target = running.target
        comparable.sshHostAlias = running.sshHostAlias
        if !comparable.sameSettings(as: running) { alsoChanged.append("other edits of this tunnel found in the file") }
        if updated.sameSettings(as: running) {
            return reply(
                .success(
                    ActionReport(message: "\(name) already targets \(target)", tunnels: [Self.report(tunnel.status)])))
        }
        let drain = request.drainTimeout.map { Duration.milliseconds(Int64($0 * 1000)) } ?? updated.drainTimeout
        let force = request.force ?? false
        let configPath = self.configPath
        let logger = self.logger
        /// Saves the edit (if the file is still what it was) and switches. Under `operations`.
        let apply: @Sendable (Tunnel.Candidate?) -> Result<String, ControlFailure> = {
            [weak self, edited, alsoChanged] candidate in
            guard let self else { return .failure(ControlFailure(503, "the daemon is stopping")) }
            let now = try? String(contentsOfFile: configPath, encoding: .utf8)
            guard now == text else {
                if let candidate { tunnel.abandon(candidate) }
                return .failure(
                    ControlFailure(
                        409,
                        "\(configPath) changed while the new target was pre-flighted; nothing was changed, try again"))
            }
            do {
                try AtomicFile.replace(path: configPath, with: edited)
            } catch {
                if let candidate { tunnel.abandon(candidate) }
                return .failure(ControlFailure(500, "cannot save \(configPath): \(error); nothing was changed"))
            }
            do {
                if let candidate {
                    tunnel.commit(candidate, drain: drain)
                } else {
                    try tunnel.replace(with: updated, drain: drain)
                }
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
            case .success(let message):
                reply(
                    .success(
                        ActionReport(
                            message: message + " (the tunnel is down: nothing to pre-flight)",
                            tunnels: [Self.report(tunnel.status)])))
            case .failure(let failure): reply(.failure(failure))
            }
            return
        }
        let candidate: Tunnel.Candidate
        do {
            candidate = try tunnel.prepare(updated)
        } catch {
            return reply(
                .failure(ControlFailure(500, "cannot start a session to \(target): \(error); nothing was changed")))
        }
        logger.info("tunnel \(name): pre-flighting the new target \(target) while \(running.target) keeps serving")
        awaitVerdicts([candidate]) { [weak self] verdicts in
            guard let self else { return }
            self.operations.withLock { _ in
                switch verdicts[0] {
                case .passed:
                    reply(
                        apply(candidate).map {
                            ActionReport(
                                message: $0 + "; the new session was proven first",
                                tunnels: [Self.report(tunnel.status)])
                        })
                case .failed(let stage, let why) where force:
                    logger.warning(
                        "tunnel \(name): pre-flight of \(target) failed at \(stage) (\(why)); switching anyway (--force)"
                    )
                    reply(
                        apply(candidate).map {
                            ActionReport(
                                message: $0
                                    + "; FORCED although the pre-flight failed at \(stage): \(why). The tunnel keeps retrying the new target.",
                                tunnels: [Self.report(tunnel.status)])
                        })
                case .failed(let stage, let why):
                    tunnel.abandon(candidate)
                    logger.warning(
                        "tunnel \(name): target change to \(target) refused: pre-flight failed at \(stage): \(why)")
                    reply(
                        .failure(
                            ControlFailure(
                                422,
                                "\(name): not switched to \(target): \(stage) failed: \(why). The tunnel stays on \(running.target) and \(configPath) is unchanged (--force switches anyway).",
                                stage: stage)))
                }
            }
        }
    }

    func reload(_ request: ReloadRequest, reply: @escaping @Sendable (Result<ReloadReport, ControlFailure>) -> Void) {
        operations.withLock { _ in reloadLocked(request, reply: reply) }
    }

    /// `reload` under `operations`.
    private func reloadLocked(
        _ request: ReloadRequest, reply: @escaping @Sendable (Result<ReloadReport, ControlFailure>) -> Void
    ) {
        let config: Config
        do {
            config = try ConfigLoader.load(path: configPath)
        } catch {
            logger.error("reload refused, the running configuration stays:\n\(error.description)")
            return reply(
                .failure(
                    ControlFailure(
                        422, "\(configPath) has errors; nothing was changed",
                        problems: Self.problems(error, file: configPath))))
        }
        let force = request.force ?? false
        var added: [String] = []
        var removed: [String] = []
        var changed: [String] = []
        var unchanged: [String] = []
        var failed: [ChangeFailure] = []
        var proving: [(tunnel: Tunnel, candidate: Tunnel.Candidate)] = []
        let newNames = Set(config.tunnels.map(\.name))
        let leaving = state.withLock { state -> [Tunnel] in
            let names = state.order.filter { !newNames.contains($0) }
            let leaving = names.compactMap { state.tunnels.removeValue(forKey: $0) }
            state.departing += leaving
            return leaving
        }
        for tunnel in leaving {
            tunnel.stop(grace: min(stopGrace, tunnel.config.drainTimeout))
            removed.append(tunnel.name)
            publish(.removed(tunnel.name))
        }
        for tunnelConfig in config.tunnels {
            if let tunnel = lookup(tunnelConfig.name) {
                if tunnel.config.sameSettings(as: tunnelConfig) {
                    unchanged.append(tunnelConfig.name)
                    continue
                }
                if let pending = tunnel.pendingChange {
                    failed.append(
                        ChangeFailure(
                            tunnel: tunnelConfig.name, stage: "busy",
                            error: "a change to \(pending.config.target) is being pre-flighted; reload again after it"))
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
                    failed.append(
                        ChangeFailure(
                            tunnel: tunnelConfig.name, stage: "local", error: "cannot start a session: \(error)"))
                }
            } else {
                do {
                    let started = try startTunnel(tunnelConfig)
                    state.withLock { $0.tunnels[tunnelConfig.name] = started }
                    added.append(tunnelConfig.name)
                } catch {
                    logger.error("reload: cannot start tunnel \(tunnelConfig.name): \(error)")
                    failed.append(
                        ChangeFailure(tunnel: tunnelConfig.name, stage: "local", error: "cannot start: \(error)"))
                }
            }
        }
        state.withLock { state in
            state.order = config.tunnels.map(\.name).filter { state.tunnels[$0] != nil }
            state.departing.removeAll { $0.wait(timeout: .zero) }
        }
        probes?.poke()
        onStateChange()
        let configPath = self.configPath
        let warnings = config.warnings.map(Self.problem)
        let logger = self.logger
        let finish: @Sendable ([String], [ChangeFailure], [ChangeFailure]) -> Void = {
            [added, removed, unchanged] changed, failed, forced in
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
            var changed = changed
            var failed = failed
            var forced: [ChangeFailure] = []
            self.operations.withLock { _ in
                for ((tunnel, candidate), verdict) in zip(proving, verdicts) {
                    switch verdict {
                    case .passed:
                        tunnel.commit(candidate, drain: candidate.config.drainTimeout)
                        changed.append(tunnel.name)
                    case .failed(let stage, let why):
                        let failure = ChangeFailure(tunnel: tunnel.name, stage: stage, error: why)
                        if force {
                            logger.warning(
                                "reload: \(tunnel.name): pre-flight failed at \(stage) (\(why)); applied anyway (force)"
                            )
                            tunnel.commit(candidate, drain: candidate.config.drainTimeout)
                            changed.append(tunnel.name)
                            forced.append(failure)
                        } else {
                            logger.warning(
                                "reload: \(tunnel.name) keeps its running settings: pre-flight failed at \(stage): \(why)"
                            )
                            tunnel.abandon(candidate)
                            failed.append(failure)
                        }
                    }
                }
            }
            self.onStateChange()
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
                            verdicts[index] = .failed(
                                stage: "timeout", reason: "the new session did not start within \(allowed[index])")
                        }
                    }
                }
                if verdicts.contains(where: { $0 == nil }) { usleep(10_000) }
            }
            then(verdicts.map { $0! })
        }
    }

    // MARK: Helpers

    private func lookup(_ name: String) -> Tunnel? { state.withLock { $0.tunnels[name] } }

    private func unknown(_ name: String) -> ControlFailure {
        let known = allTunnels.map(\.name)
        return ControlFailure(
            404, "no tunnel named \(name)" + (known.isEmpty ? "" : " (tunnels: \(known.joined(separator: ", ")))"))
    }

    /// Answers `then` once every tunnel's status satisfies `done` (the drivers acted on a
    /// command), or after 1 s with the statuses as they are, for an answer that shows the effect
    /// rather than the state before it. Nothing waits: the condition is checked now, on every
    /// state change the tunnels report (`startTunnel`), and once at the deadline.
    private func settle(
        _ tunnels: [Tunnel], until done: @escaping @Sendable (TunnelStatus) -> Bool,
        then: @escaping @Sendable ([TunnelStatus]) -> Void
    ) {
        let waiter = SettleWaiter(tunnels: tunnels, done: done, then: then)
        settling.withLock { $0.append(waiter) }
        waiter.check(force: false)
        DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(1)) { [weak self] in
            waiter.check(force: true)
            self?.settling.withLock { $0.removeAll { $0.answered } }
        }
    }

    /// A tunnel changed: answers the settle waits whose condition now holds.
    private func checkSettling() {
        let waiting = settling.withLock { $0 }
        guard !waiting.isEmpty else { return }
        for waiter in waiting { waiter.check(force: false) }
        settling.withLock { $0.removeAll { $0.answered } }
    }

    /// A driver's status as the control protocol publishes it: the status contract has retry
    /// details only in `backoff` (the encoding leaves them out otherwise) and no probe result yet.
    static func report(_ status: TunnelStatus) -> TunnelStatus {
        var report = status
        let retry = status.pendingRetry
        report.retryAt = retry.at
        report.retryCause = retry.cause
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

/// One answer waiting until some tunnels' statuses satisfy a condition (`Supervisor.settle`).
/// Checked from driver threads (state changes), the control thread and a timer; `Mutex` makes the
/// answer go out once.
final class SettleWaiter: Sendable {
    private let tunnels: [Tunnel]
    private let done: @Sendable (TunnelStatus) -> Bool
    private let then: @Sendable ([TunnelStatus]) -> Void
    private let state = Mutex(false)

    init(
        tunnels: [Tunnel], done: @escaping @Sendable (TunnelStatus) -> Bool,
        then: @escaping @Sendable ([TunnelStatus]) -> Void
    ) {
        self.tunnels = tunnels
        self.done = done
        self.then = then
    }

    var answered: Bool { state.withLock { $0 } }

    /// Answers if every status satisfies the condition, or anyway with `force` (the deadline).
    func check(force: Bool) {
        let statuses = tunnels.map(\.status)
        guard force || statuses.allSatisfy(done) else { return }
        let first = state.withLock { answered -> Bool in
            defer { answered = true }
            return !answered
        }
        if first { then(statuses.map(Supervisor.report)) }
    }
}
