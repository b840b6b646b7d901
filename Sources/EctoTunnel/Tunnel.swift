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
        var current: TunnelHandle
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

        mutating func add(_ status: TunnelStatus) {
            bytesIn += status.bytesIn
            bytesOut += status.bytesOut
            reconnects += status.reconnects
            accepted += status.acceptedTotal
            refused += status.refusedTotal
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
        let handle = try TunnelHandle.start(config: config, logger: logger) { _ in relay.fire() }
        let tunnel = Tunnel(config: config, handle: handle, logger: logger, relay: relay)
        relay.tunnel.withLock { $0 = tunnel }
        return tunnel
    }

    private init(config: TunnelConfig, handle: TunnelHandle, logger: Logger, relay: Relay) {
        self.name = config.name
        self.logger = logger
        self.relay = relay
        self.state = Mutex(State(config: config, current: handle))
    }

    /// The configuration in force.
    public var config: TunnelConfig { state.withLock { $0.config } }

    /// Sends a command to the current driver.
    public func send(_ command: TunnelCommand) {
        state.withLock { $0.current }.send(command)
    }

    /// Switches to `config` (same name). The runtime up/down state is kept unless the new
    /// configuration changes `enabled` itself. Open connections keep their session for up to `drain`.
    public func replace(with config: TunnelConfig, drain: Duration) throws(SystemError) {
        let relay = self.relay
        let logger = self.logger
        try state.withLock { state throws(SystemError) in
            let old = state.current
            let oldStatus = old.status
            let enabled = state.config.enabled == config.enabled ? oldStatus.enabled : config.enabled
            let sameListener = state.config.local == config.local
            let next = try TunnelHandle.start(config: config, logger: logger, awaitListener: sameListener, enabled: enabled) { _ in
                relay.fire()
            }
            if sameListener {
                old.send(.retire(successor: next, drain: drain))
            } else {
                old.send(.stop(grace: drain))
            }
            state.retiring.append((old, state.config.target.description))
            state.current = next
            state.config = config
        }
        relay.fire()
    }

    /// The current driver's status, with the counters and connections of draining ones added.
    public var status: TunnelStatus {
        state.withLock { state in
            var status = state.current.status
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
                draining.append(.init(target: entry.target, connections: old.connections))
                return false
            }
            status.bytesIn += counters.bytesIn
            status.bytesOut += counters.bytesOut
            status.reconnects += counters.reconnects
            status.acceptedTotal += counters.accepted
            status.refusedTotal += counters.refused
            status.draining = draining
            return status
        }
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
        state.withLock { [$0.current] + $0.retiring.map(\.handle) }
    }
}
