import Dispatch
import EctoConfig
import EctoControl
import EctoPlatform
import EctoProbe
import EctoStatus
import EctoTunnel
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import Synchronization

/// Runs each tunnel's end-to-end probe (`probe`, every `probe_interval` while the tunnel is up) on
/// a thread of its own, and keeps the latest result per tunnel for `status`.
///
/// Idle means asleep: the thread sleeps until the next probe is due (or it is woken because
/// tunnels changed). A probe goes through the tunnel's local address, like any client, so it sees
/// what a client would: "tunnel up, gateway down" shows as an SSH state `up` with a failed probe.
final class ProbeRunner: Sendable {
    private struct State {
        var results: [String: GatewayReport] = [:]
        var due: [String: ContinuousClock.Instant] = [:]
        var stopped = false
    }

    private let state = Mutex(State())
    private let wake = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)
    private let tunnels: @Sendable () -> [Tunnel]
    private let logger: Logger
    /// Called after a scheduled probe changed a tunnel's result (ok ↔ failed).
    private let onChange: @Sendable (String) -> Void

    init(tunnels: @escaping @Sendable () -> [Tunnel], logger: Logger, onChange: @escaping @Sendable (String) -> Void) {
        self.tunnels = tunnels
        self.logger = logger
        self.onChange = onChange
    }

    func start() {
        startThread(name: "probes", stackSize: 256 * 1024) { [self] in
            loop()
            finished.signal()
        }
    }

    func stop() {
        state.withLock { $0.stopped = true }
        wake.signal()
        _ = finished.wait(timeout: .now() + 10)
    }

    /// Tunnels changed (state, config): look again now.
    func poke() { wake.signal() }

    /// The latest result for `name`, if any.
    func result(for name: String) -> GatewayReport? { state.withLock { $0.results[name] } }

    /// Runs the probes of `selected` now, in parallel, each on a thread of its own, records them,
    /// then calls `then` (on another thread) once all ran, or after 15 s with those that did.
    /// Returns at once: the caller (the control thread, for `status --deep`) does not wait.
    func probeNow(_ selected: [Tunnel], then: @escaping @Sendable () -> Void) {
        let once = Mutex<(@Sendable () -> Void)?>(then)
        let finish: @Sendable () -> Void = {
            once.withLock { pending in
                defer { pending = nil }
                return pending
            }?()
        }
        let group = DispatchGroup()
        for tunnel in selected {
            group.enter()
            startThread(name: "probe \(tunnel.name)", stackSize: 256 * 1024) { [self] in
                run(tunnel, spec: tunnel.config.probe ?? .tcp)
                group.leave()
            }
        }
        group.notify(queue: .global(), execute: finish)
        DispatchQueue.global().asyncAfter(deadline: .now() + 15, execute: finish)
    }

    private func loop() {
        while true {
            let now = ContinuousClock.now
            var next: ContinuousClock.Instant?
            let current = tunnels()
            let names = Set(current.map(\.name))
            state.withLock { state in
                state.results = state.results.filter { names.contains($0.key) }
                state.due = state.due.filter { names.contains($0.key) }
            }
            for tunnel in current {
                let config = tunnel.config
                guard let spec = config.probe, config.probeInterval > .zero else { continue }
                guard tunnel.status.state == .up else {
                    // Not up: a probe would only say the tunnel is down. Probe at once when it is up.
                    state.withLock { $0.due[tunnel.name] = nil }
                    continue
                }
                let due = state.withLock { $0.due[tunnel.name] } ?? now
                if due <= now {
                    let before = result(for: tunnel.name)?.ok
                    run(tunnel, spec: spec)
                    let after = result(for: tunnel.name)?.ok
                    if before != after { onChange(tunnel.name) }
                    let again = ContinuousClock.now.advanced(by: config.probeInterval)
                    state.withLock { $0.due[tunnel.name] = again }
                    next = min(next ?? again, again)
                } else {
                    next = min(next ?? due, due)
                }
            }
            if state.withLock({ $0.stopped }) { return }
            if let next {
                let wait = ContinuousClock.now.duration(to: next)
                if wait > .zero {
                    let nanos = wait.components.seconds * 1_000_000_000 + wait.components.attoseconds / 1_000_000_000
                    _ = wake.wait(timeout: .now() + .nanoseconds(Int(nanos)))
                }
            } else {
                wake.wait()
            }
            if state.withLock({ $0.stopped }) { return }
        }
    }

    private func run(_ tunnel: Tunnel, spec: ProbeSpec) {
        let config = tunnel.config
        let credentials = GatewayCredentials.resolve(
            settings: try? OpenClawImport.readSettings(environment: .current),
            environment: ProcessInfo.processInfo.environment)
        let result = Prober.run(spec, endpoint: config.local, options: ProbeOptions(token: credentials.token?.value))
        let latency =
            Double(result.latency.components.seconds) * 1000 + Double(result.latency.components.attoseconds) / 1e15
        let report = GatewayReport(
            ok: result.ok, outcome: result.outcome, detail: result.detail, latencyMs: (latency * 10).rounded() / 10,
            probe: spec.description, checked: Date(), tokenSource: credentials.token.map { "\($0.source)" } ?? "none")
        let previous = state.withLock { state -> GatewayReport? in
            defer { state.results[tunnel.name] = report }
            return state.results[tunnel.name]
        }
        if previous?.ok != report.ok {
            if report.ok {
                logger.info("gateway answers: \(report.detail)", metadata: ["tunnel.name": "\(tunnel.name)"])
            } else {
                logger.warning(
                    "gateway does not answer through the tunnel: \(report.detail)",
                    metadata: ["tunnel.name": "\(tunnel.name)"])
            }
        }
    }
}
