import Dispatch
import EctoPlatform
import EctoStatus
import EctoTunnel
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A counter one thread bumps to show it is still turning, and another reads.
final class Heartbeat: Sendable {
    private let beats = Atomic<UInt64>(0)
    func beat() { beats.add(1, ordering: .releasing) }
    var count: UInt64 { beats.load(ordering: .acquiring) }
}

/// systemd's watchdog, fed only while the supervisor really makes progress.
///
/// A thread of its own wakes every `interval / 2`. Each round it checks that every driver thread
/// answered the `.ping` it was sent in the previous round (`TunnelHandle.pongs` moved) and that the
/// daemon's main loop turned (`Heartbeat`); only then does it send `WATCHDOG=1`. Then it pings
/// every driver again. A driver stuck in a call, or a main loop that stopped, therefore stops the
/// pings, and systemd kills and restarts the service after `WatchdogSec=`.
///
/// `Sendable`: the handles and the notifier are `Sendable`; the stop flag is atomic.
final class Watchdog: Sendable {
    let interval: Duration
    /// The drivers to vouch for, asked each round (reloads and retargets change them).
    private let handles: @Sendable () -> [TunnelHandle]
    private let notifier: SystemdNotifier
    private let logger: Logger
    private let mainLoop: Heartbeat
    private let stopped = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private let lastComplaint = Mutex<String?>(nil)

    /// What the last round found stuck (`tunnel t, thread "tunnel t" (tid 1234)`), nil while every
    /// thread answers: a SIGABRT from systemd's watchdog is logged with it (`AbortSignals`).
    var complaint: String? { lastComplaint.withLock { $0 } }

    init(
        interval: Duration, handles: @escaping @Sendable () -> [TunnelHandle], notifier: SystemdNotifier,
        logger: Logger, mainLoop: Heartbeat
    ) {
        self.interval = interval
        self.handles = handles
        self.notifier = notifier
        self.logger = logger
        self.mainLoop = mainLoop
    }

    func start() {
        startThread(name: "watchdog", stackSize: 256 * 1024) { [self] in
            loop()
            finished.signal()
        }
        logger.debug("systemd watchdog: checking every \(interval / 2)")
    }

    /// Ends the thread (at the latest after one round).
    func stop() {
        stopped.store(true, ordering: .releasing)
        _ = finished.wait(timeout: .now() + .nanoseconds(Int(clamping: (interval / 2 + .seconds(1)).nanoseconds)))
    }

    private func loop() {
        let round = interval / 2
        /// Pong counts when the last pings went out, per driver. A driver that appeared since
        /// (reload, retarget) is judged from the next round on; one that ended is dropped.
        var baseline: [ObjectIdentifier: UInt64] = [:]
        func pingAll() {
            baseline = [:]
            for handle in handles() where !handle.isFinished {
                baseline[ObjectIdentifier(handle)] = handle.pongs
                handle.send(.ping)
            }
        }
        var turns = mainLoop.count
        var complained = false
        pingAll()
        // The first ping goes out at once: READY=1 has just been sent.
        notifier.watchdogPing()
        while !stopped.load(ordering: .acquiring) {
            sleepInterruptibly(round)
            if stopped.load(ordering: .acquiring) { return }
            let stuck = handles().filter { handle in
                guard !handle.isFinished, let before = baseline[ObjectIdentifier(handle)] else { return false }
                return handle.pongs <= before
            }
            let nowTurns = mainLoop.count
            let mainStuck = nowTurns == turns
            if stuck.isEmpty && !mainStuck {
                notifier.watchdogPing()
                complained = false
                lastComplaint.withLock { $0 = nil }
                turns = nowTurns
                pingAll()
            } else {
                // Keep the old baseline: a late answer still counts next round.
                var what = stuck.map { "tunnel \($0.name) (thread \($0.threadDescription))" }
                if mainStuck { what.append("main loop (the main thread, tid \(getpid()))") }
                let text = what.joined(separator: ", ")
                lastComplaint.withLock { $0 = text }
                if !complained {
                    logger.error("watchdog: no progress from \(text); not pinging systemd")
                    complained = true
                }
            }
        }
    }

    private func sleepInterruptibly(_ duration: Duration) {
        // Short naps so stop() returns quickly.
        let deadline = ContinuousClock.now.advanced(by: duration)
        while !stopped.load(ordering: .acquiring) {
            let left = ContinuousClock.now.duration(to: deadline)
            if left <= .zero { return }
            usleep(UInt32(min(left, .milliseconds(100)).nanoseconds / 1000))
        }
    }
}

extension Duration {
    var nanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }
}

/// Turns the tunnels' states into systemd's one-line `STATUS=` ("2/3 tunnels up"), sent when it
/// changes. Called on driver threads (`onChange`), so it is `Sendable` with its state in a `Mutex`.
final class StatusReporter: Sendable {
    private struct State {
        var source: @Sendable () -> [TunnelStatus] = { [] }
        var last = ""
        var ready = false
    }

    private let notifier: SystemdNotifier
    private let state = Mutex(State())

    init(notifier: SystemdNotifier) { self.notifier = notifier }

    /// Where the statuses come from (the supervisor's tunnels).
    func attach(_ source: @escaping @Sendable () -> [TunnelStatus]) { state.withLock { $0.source = source } }

    /// After READY=1 (which carried the first summary): from now on changes are sent.
    func readySent() {
        let summary = summary()
        state.withLock {
            $0.ready = true
            $0.last = summary
        }
        changed()
    }

    /// Sends the summary if it differs from the last one sent.
    func changed() {
        guard notifier.isEnabled else { return }
        let text = summary()
        let send = state.withLock { state -> Bool in
            guard state.ready, state.last != text else { return false }
            state.last = text
            return true
        }
        if send { notifier.status(text) }
    }

    /// "2/3 tunnels up (connecting: b; failed: c)" over the enabled tunnels; disabled ones are
    /// counted apart.
    func summary() -> String {
        let statuses = state.withLock { $0.source }()
        let enabled = statuses.filter { $0.state != .down }
        let up = enabled.filter { $0.state == .up }.count
        var text = "\(up)/\(enabled.count) tunnel\(enabled.count == 1 ? "" : "s") up"
        let disabled = statuses.count - enabled.count
        if disabled > 0 { text += ", \(disabled) disabled" }
        var details: [String] = []
        for state in [TunnelState.connecting, .backoff, .failed] {
            let names = enabled.filter { $0.state == state }.map(\.name).sorted()
            if !names.isEmpty { details.append("\(state.rawValue): \(names.joined(separator: ", "))") }
        }
        if !details.isEmpty { text += " (\(details.joined(separator: "; ")))" }
        return text
    }
}
