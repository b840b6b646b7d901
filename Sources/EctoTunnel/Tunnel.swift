import EctoConfig
import EctoStatus
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import Synchronization

/// One named tunnel across configuration changes: the driver of the current configuration, and
/// drivers of earlier ones that still finish their open connections.
///
/// Replacing the configuration (a new target, a reload) starts a new driver and retires the old
/// one: every listener whose address the new configuration still forwards is handed over itself
/// (no moment where the port is closed), clients still waiting for a channel move to the new driver, and connections already
/// open stay on the old session until they end or the drain time is up. Status adds them up.
public final class Tunnel: Sendable {
    public let name: String
    private let logger: Logger
    private let relay: Relay
    private let state: Mutex<State>

    private struct State {
        var config: TunnelConfig
        /// The drivers of the configuration in force: one per session (`sessions = N`), the
        /// first owns the listener.
        var current: [TunnelHandle]
        var retiring: [(handle: TunnelHandle, target: String)] = []
        /// Counters of generations that have ended.
        var carried = Counters()
        /// A configuration change being pre-flighted (`prepare`): its drivers have no listener yet.
        var candidate: Candidate?
    }

    /// The next generation of a configuration change, started but not yet given the listener: its
    /// primary driver proves the new session (`TunnelStatus.preflight`) while the current one serves.
    public final class Candidate: Sendable {
        public let config: TunnelConfig
        let handles: [TunnelHandle]
        public let started = ContinuousClock.now
        let startedDate = Date()
        init(config: TunnelConfig, handles: [TunnelHandle]) {
            self.config = config
            self.handles = handles
        }
        /// How far the pre-flight got (nil before the driver reported).
        public var preflight: TunnelStatus.Preflight? { handles[0].status.preflight }
    }

    private struct Counters {
        var bytesIn: UInt64 = 0
        var bytesOut: UInt64 = 0
        var reconnects = 0
        var accepted: UInt64 = 0
        var refused: UInt64 = 0
        var clientsRefused: UInt64 = 0
        /// Bytes per forward, by listen address.
        var forwardBytes: [String: (in: UInt64, out: UInt64)] = [:]

        mutating func add(_ status: TunnelStatus) {
            for forward in status.forwards {
                let bytes = forwardBytes[forward.local] ?? (0, 0)
                forwardBytes[forward.local] = (bytes.in + forward.bytesIn, bytes.out + forward.bytesOut)
            }
            bytesIn += status.bytesIn
            bytesOut += status.bytesOut
            reconnects += status.reconnects
            accepted += status.acceptedTotal
            refused += status.refusedTotal
            clientsRefused += status.clientsRefused
        }
    }

    /// Forwards driver callbacks to the tunnel once it exists.
    private final class Relay: Sendable {
        let tunnel = Mutex<Tunnel?>(nil)
        let onChange: @Sendable (Tunnel) -> Void
        init(onChange: @escaping @Sendable (Tunnel) -> Void) { self.onChange = onChange }
        func fire() {
            if let tunnel = tunnel.withLock({ $0 }) { onChange(tunnel) }
        }
    }

    /// Starts the tunnel's driver. `onChange` runs (on a driver thread) after every state change of
    /// any of its drivers.
    public static func start(
        config: TunnelConfig, logger: Logger, onChange: @escaping @Sendable (Tunnel) -> Void = { _ in }
    ) throws(SystemError) -> Tunnel {
        let relay = Relay(onChange: onChange)
        let handles = try startSessions(
            config: config, logger: logger, awaitListener: false, enabled: nil, relay: relay)
        let tunnel = Tunnel(config: config, handles: handles, logger: logger, relay: relay)
        relay.tunnel.withLock { $0 = tunnel }
        return tunnel
    }

    /// Starts one driver per session of `config`; only the first binds (or awaits) the listener.
    private static func startSessions(
        config: TunnelConfig, logger: Logger, awaitListener: Bool, enabled: Bool?, relay: Relay, preflight: Bool = false
    ) throws(SystemError) -> [TunnelHandle] {
        let count = max(1, config.sessions)
        let group = count > 1 ? SessionGroup(count: count) : nil
        var handles: [TunnelHandle] = []
        do {
            for lane in 0..<count {
                handles.append(
                    try TunnelHandle.start(
                        config: config, logger: logger, awaitListener: lane == 0 && awaitListener, enabled: enabled,
                        lane: lane,
                        group: group, preflight: lane == 0 && preflight
                    ) { _ in relay.fire() })
            }
        } catch {
            for handle in handles { handle.send(.stop(grace: .zero)) }
            throw error
        }
        group?.attach(handles)
        return handles
    }

    private init(config: TunnelConfig, handles: [TunnelHandle], logger: Logger, relay: Relay) {
        self.name = config.name
        self.logger = logger
        self.relay = relay
        self.state = Mutex(State(config: config, current: handles))
    }

    /// The configuration in force.
    public var config: TunnelConfig { state.withLock { $0.config } }

    /// Sends a command to the current drivers (every session).
    public func send(_ command: TunnelCommand) {
        for handle in state.withLock({ $0.current }) { handle.send(command) }
    }

    /// Switches to `config` (same name) at once, without a pre-flight. The runtime up/down state is
    /// kept unless the new configuration changes `enabled` itself. Open connections keep their
    /// session for up to `drain`.
    public func replace(with config: TunnelConfig, drain: Duration) throws(SystemError) {
        commit(try prepare(config, preflight: false), drain: drain)
    }

    /// Whether a change to `config` would start a session (the tunnel is enabled at runtime and
    /// stays so): only then is there something to pre-flight.
    public func wouldConnect(with config: TunnelConfig) -> Bool {
        state.withLock { state in
            state.config.enabled == config.enabled ? state.current[0].status.enabled : config.enabled
        }
    }

    /// Starts the next generation for `config` without giving it the listener: with `preflight`,
    /// its primary driver proves the new session (resolve … a channel to `remote`) while the
    /// current generation keeps serving. Then `commit` or `abandon` it. One change at a time.
    public func prepare(_ config: TunnelConfig, preflight: Bool = true) throws(SystemError) -> Candidate {
        let relay = self.relay
        let logger = self.logger
        let candidate = try state.withLock { state throws(SystemError) -> Candidate in
            let enabled = state.config.enabled == config.enabled ? state.current[0].status.enabled : config.enabled
            let next = try Self.startSessions(
                config: config, logger: logger, awaitListener: true, enabled: enabled, relay: relay,
                preflight: preflight)
            let candidate = Candidate(config: config, handles: next)
            if preflight { state.candidate = candidate }
            return candidate
        }
        relay.fire()
        return candidate
    }

    /// Makes `candidate` the current generation: the old one hands over its listeners (the new one
    /// keeps those whose address it still forwards, closes the others and binds its new ones) and
    /// its waiting clients; open connections stay on the old session for up to `drain`.
    public func commit(_ candidate: Candidate, drain: Duration) {
        state.withLock { state in
            if state.candidate === candidate { state.candidate = nil }
            let next = candidate.handles
            for handle in state.current {
                // Every old session gives its waiting clients to the new primary, which spreads them.
                handle.send(.retire(successor: next[0], drain: drain))
                state.retiring.append((handle, state.config.target.description))
            }
            state.current = next
            state.config = candidate.config
        }
        relay.fire()
    }

    /// Drops a candidate that failed its pre-flight: its drivers stop; the current generation
    /// was never touched.
    public func abandon(_ candidate: Candidate) {
        state.withLock { state in
            if state.candidate === candidate { state.candidate = nil }
        }
        for handle in candidate.handles { handle.send(.stop(grace: .zero)) }
        relay.fire()
    }

    /// The change being pre-flighted, if any.
    public var pendingChange: Candidate? { state.withLock { $0.candidate } }

    /// The current drivers' status (sessions added up), with the counters and connections of
    /// draining ones added.
    public var status: TunnelStatus {
        state.withLock { state in
            var status = Self.combine(state.current.map(\.status))
            var counters = state.carried
            var draining: [DrainingSession] = []
            state.retiring.removeAll { entry in
                let old = entry.handle.status
                if entry.handle.isFinished {
                    state.carried.add(old)
                    counters.add(old)
                    return true
                }
                counters.add(old)
                status.connections += old.connections
                for forward in old.forwards {
                    if let index = status.forwards.firstIndex(where: { $0.local == forward.local }) {
                        status.forwards[index].connections += forward.connections
                    }
                }
                if let index = draining.firstIndex(where: { $0.target == entry.target }) {
                    draining[index].connections += old.connections  // another session of that target
                } else {
                    draining.append(.init(target: entry.target, connections: old.connections))
                }
                return false
            }
            status.bytesIn += counters.bytesIn
            status.bytesOut += counters.bytesOut
            status.reconnects += counters.reconnects
            status.acceptedTotal += counters.accepted
            status.refusedTotal += counters.refused
            status.clientsRefused += counters.clientsRefused
            for index in status.forwards.indices {
                // Bytes of earlier generations through the same listen address (a forward that is
                // gone from the configuration leaves them in the tunnel's total only).
                if let bytes = counters.forwardBytes[status.forwards[index].local] {
                    status.forwards[index].bytesIn += bytes.in
                    status.forwards[index].bytesOut += bytes.out
                }
            }
            status.draining = draining
            if let candidate = state.candidate {
                let stage: String
                switch candidate.handles[0].status.preflight {
                case .running(let name)?: stage = name
                case .passed?: stage = "switching"
                case .failed(let name, _)?: stage = "failed at \(name)"
                case nil: stage = "starting"
                }
                status.change = .init(
                    target: candidate.config.target.description, stage: stage, started: candidate.startedDate)
            }
            return status
        }
    }

    /// One status for the sessions of one configuration: the first session's, with the others'
    /// connections and counters added. The tunnel is up while any session is up (since the
    /// earliest of them); otherwise the first session's state stands, as the others only connect
    /// while it is up.
    static func combine(_ sessions: [TunnelStatus]) -> TunnelStatus {
        var status = sessions[0]
        for other in sessions.dropFirst() {
            status.connections += other.connections
            status.bytesIn += other.bytesIn
            status.bytesOut += other.bytesOut
            status.reconnects += other.reconnects
            status.acceptedTotal += other.acceptedTotal
            status.refusedTotal += other.refusedTotal
            status.clientsRefused += other.clientsRefused
            // The same forwards in every session; the listeners are the first session's.
            for index in status.forwards.indices where index < other.forwards.count {
                status.forwards[index].connections += other.forwards[index].connections
                status.forwards[index].bytesIn += other.forwards[index].bytesIn
                status.forwards[index].bytesOut += other.forwards[index].bytesOut
            }
        }
        let up = sessions.filter { $0.state == .up }
        status.sessions = sessions.count
        status.sessionsUp = up.count
        if status.state != .up, let first = up.min(by: { $0.since < $1.since }) {
            status.state = .up
            status.since = first.since
            status.hop = nil
        }
        return status
    }

    /// Stops every driver of this tunnel (open connections get `grace`).
    public func stop(grace: Duration) {
        for handle in handles { handle.send(.stop(grace: grace)) }
    }

    /// Waits for every driver thread to end. False on timeout.
    @discardableResult
    public func wait(timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        for handle in handles {
            let left = ContinuousClock.now.duration(to: deadline)
            if !handle.wait(timeout: max(left, .milliseconds(1))) { return false }
        }
        return true
    }

    /// The driver handles (current first, then draining ones), for liveness checks.
    public var drivers: [TunnelHandle] { handles }

    private var handles: [TunnelHandle] {
        state.withLock { $0.current + $0.retiring.map(\.handle) + ($0.candidate?.handles ?? []) }
    }
}
