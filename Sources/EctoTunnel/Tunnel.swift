import EctoConfig
import Logging
import Synchronization

/// One named tunnel across configuration changes: the driver of the current configuration, and
/// drivers of earlier ones that still finish their open connections.
///
/// Replacing the configuration (a new target, a reload) starts a new driver and retires the old
/// one: with the same local address the listener itself is handed over (no moment where the port
/// is closed), clients still waiting for a channel move to the new driver, and connections already
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
    }

    private struct Counters {
        var bytesIn: UInt64 = 0
        var bytesOut: UInt64 = 0
        var reconnects = 0
        var accepted: UInt64 = 0
        var refused: UInt64 = 0
        var clientsRefused: UInt64 = 0

        mutating func add(_ status: TunnelStatus) {
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
        let handles = try startSessions(config: config, logger: logger, awaitListener: false, enabled: nil, relay: relay)
        let tunnel = Tunnel(config: config, handles: handles, logger: logger, relay: relay)
        relay.tunnel.withLock { $0 = tunnel }
        return tunnel
    }

    /// Starts one driver per session of `config`; only the first binds (or awaits) the listener.
    private static func startSessions(
        config: TunnelConfig, logger: Logger, awaitListener: Bool, enabled: Bool?, relay: Relay
    ) throws(SystemError) -> [TunnelHandle] {
        let count = max(1, config.sessions)
        let group = count > 1 ? SessionGroup(count: count) : nil
        var handles: [TunnelHandle] = []
        do {
            for lane in 0..<count {
                handles.append(
                    try TunnelHandle.start(
                        config: config, logger: logger, awaitListener: lane == 0 && awaitListener, enabled: enabled, lane: lane,
                        group: group
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

    /// Switches to `config` (same name). The runtime up/down state is kept unless the new
    /// configuration changes `enabled` itself. Open connections keep their session for up to `drain`.
    public func replace(with config: TunnelConfig, drain: Duration) throws(SystemError) {
        let relay = self.relay
        let logger = self.logger
        try state.withLock { state throws(SystemError) in
            let old = state.current
            let oldStatus = old[0].status
            let enabled = state.config.enabled == config.enabled ? oldStatus.enabled : config.enabled
            let sameListener = state.config.local == config.local
            let next = try Self.startSessions(
                config: config, logger: logger, awaitListener: sameListener, enabled: enabled, relay: relay)
            for handle in old {
                // Every old session gives its waiting clients to the new primary, which spreads them.
                if sameListener {
                    handle.send(.retire(successor: next[0], drain: drain))
                } else {
                    handle.send(.stop(grace: drain))
                }
                state.retiring.append((handle, state.config.target.description))
            }
            state.current = next
            state.config = config
        }
        relay.fire()
    }

    /// The current drivers' status (sessions added up), with the counters and connections of
    /// draining ones added.
    public var status: TunnelStatus {
        state.withLock { state in
            var status = Self.combine(state.current.map(\.status))
            var counters = state.carried
            var draining: [TunnelStatus.Draining] = []
            state.retiring.removeAll { entry in
                let old = entry.handle.status
                if entry.handle.isFinished {
                    state.carried.add(old)
                    counters.add(old)
                    return true
                }
                counters.add(old)
                status.connections += old.connections
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
            status.draining = draining
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
        }
        let up = sessions.filter { $0.state == .up }
        status.sessions = sessions.count
        status.sessionsUp = up.count
        if status.state != .up, let first = up.min(by: { $0.since < $1.since }) {
            status.state = .up
            status.since = first.since
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
        state.withLock { $0.current + $0.retiring.map(\.handle) }
    }
}
