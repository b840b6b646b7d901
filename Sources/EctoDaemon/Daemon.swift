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

/// The composition root of `ecto-tunnel run`: loads the config, opens the control socket, starts
/// the tunnels (through the `Supervisor`), turns signals into actions, and stops everything
/// gracefully.
///
/// Signals are blocked in every thread and taken synchronously here with `sigtimedwait` (SIGABRT
/// and SIGQUIT by `AbortSignalCatcher`'s thread), so no async-signal-safety concerns and no
/// handler state.
public final class Daemon {
    /// `ecto-tunnel run`'s exit statuses (the units' `RestartPreventExitStatus=` names the config one).
    public enum ExitStatus {
        /// A clean stop (SIGTERM, SIGINT).
        public static let stopped: Int32 = 0
        /// Something at start that a restart may fix: the control socket (another daemon, a
        /// directory in the way) or the tunnels' threads could not be started.
        public static let startFailed: Int32 = 1
        /// The config is invalid (EX_CONFIG of sysexits.h): a restart cannot fix it, so systemd
        /// does not retry (`RestartPreventExitStatus=78`).
        public static let invalidConfig: Int32 = 78
    }

    public struct Options: Sendable {
        public var configPath: String
        /// The control socket.
        public var socketPath: String
        /// How long open connections may continue after SIGTERM before they are closed.
        public var stopGrace: Duration
        public init(configPath: String, socketPath: String, stopGrace: Duration = .seconds(5)) {
            self.configPath = configPath
            self.socketPath = socketPath
            self.stopGrace = stopGrace
        }
    }

    private let options: Options
    private let logger: Logger
    private let notifier: SystemdNotifier
    private let statusReporter: StatusReporter
    /// Bumped by every turn of the main (signal) loop; the watchdog checks it moves.
    private let mainLoop = Heartbeat()

    public init(options: Options, logger: Logger, notifier: SystemdNotifier = SystemdNotifier()) {
        self.options = options
        self.logger = logger
        self.notifier = notifier
        self.statusReporter = StatusReporter(notifier: notifier)
    }

    /// Runs until SIGTERM or SIGINT. Returns the process exit code.
    public func run() -> Int32 {
        var signals = sigset_t()
        sigemptyset(&signals)
        for signal in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&signals, signal) }
        // Block before any thread starts so every thread inherits the mask. SIGABRT and SIGQUIT
        // (systemd's watchdog, kill -ABRT) are taken by a thread of their own: backtraces, then exit.
        var blocked = signals
        AbortSignalCatcher.add(to: &blocked)
        pthread_sigmask(SIG_BLOCK, &blocked, nil)
        signal(SIGPIPE, SIG_IGN)
        let aborts = AbortSignalCatcher(logger: logger)
        aborts.start()

        // Many local clients and sessions each cost a descriptor: use all the login or the unit
        // (LimitNOFILE=) allows. Clients are admitted only while a reserve stays free.
        let limit = DescriptorLimit.raiseSoftLimit()
        if limit.before != limit.after {
            logger.debug("raised the descriptor limit", metadata: ["from": "\(limit.before)", "to": "\(limit.after)"])
        }
        let config: Config
        do {
            config = try ConfigLoader.load(path: options.configPath)
        } catch {
            logger.critical("invalid configuration:\n\(error.description)")
            notifier.status("invalid configuration: \(options.configPath)")
            return ExitStatus.invalidConfig
        }
        for warning in config.warnings { logger.warning("\(warning)") }
        // What `check` refuses, said at start with file:line and key; those tunnels then fail
        // with the same reason when they connect, the others run.
        let files = TunnelValidation.check(config, environment: ProcessInfo.processInfo.environment)
        for problem in files.errors { logger.error("\(problem)") }
        for warning in files.warnings { logger.warning("\(warning)") }
        if config.tunnels.isEmpty {
            logger.warning("no tunnels configured in \(config.path)")
        }
        let supervisor = Supervisor(configPath: config.path, stopGrace: options.stopGrace, logger: logger)
        // The control socket first: if another daemon answers there, it owns the tunnels' ports
        // too, and starting ours would only fight it.
        let server: ControlServer
        do {
            server = try ControlServer(path: options.socketPath, registry: supervisor, logger: logger)
        } catch {
            logger.critical("cannot open the control socket: \(error)")
            return ExitStatus.startFailed
        }
        supervisor.publish = { [server] event in server.publish(event) }
        supervisor.onStateChange = { [statusReporter] in statusReporter.changed() }
        statusReporter.attach { [supervisor] in supervisor.statuses() }
        do {
            try supervisor.start(config)
        } catch {
            logger.critical("cannot start the tunnels: \(error)")
            supervisor.stopAll()
            server.stop()
            return ExitStatus.startFailed
        }
        server.start()
        logger.info(
            "ecto-tunnel running",
            metadata: ["config": "\(config.path)", "tunnels": "\(config.tunnels.count)", "control": "\(server.path)"])
        let events = SystemEvents(logger: logger) { [logger] reason in
            logger.info("\(reason)")
            supervisor.networkChanged(reason)
        }
        events.start()
        defer { events.stop() }

        waitForListeners(supervisor.drivers(), timeout: .seconds(10))
        notifier.ready(status: statusReporter.summary())
        statusReporter.readySent()
        var watchdog: Watchdog? = nil
        if let interval = notifier.watchdogInterval, notifier.isEnabled {
            watchdog = Watchdog(
                interval: interval, handles: { [supervisor] in supervisor.drivers() }, notifier: notifier,
                logger: logger,
                mainLoop: mainLoop)
            watchdog?.start()
        }
        if let watchdog {
            aborts.explain {
                watchdog.complaint.map { "the watchdog found no progress from \($0)" }
                    ?? "the watchdog saw every thread answer in its last round"
            }
        }
        // The main loop must turn well within the watchdog interval for the watchdog to vouch for it.
        let turn = notifier.watchdogInterval.map { max(.milliseconds(100), $0 / 4) } ?? .seconds(3600)

        while true {
            mainLoop.beat()
            var info = siginfo_t()
            var timeout = timespec(
                tv_sec: Int(turn.components.seconds), tv_nsec: Int(turn.components.attoseconds / 1_000_000_000))
            let signal = sigtimedwait(&signals, &info, &timeout)
            if signal == SIGTERM || signal == SIGINT {
                logger.info("received \(signal == SIGTERM ? "SIGTERM" : "SIGINT"), stopping")
                notifier.stopping()
                break
            }
            if signal == SIGHUP {
                notifier.reloading()
                logger.info("SIGHUP: reloading \(config.path)")
                // Changed tunnels are pre-flighted on another thread: the loop goes on meanwhile.
                supervisor.reload(ReloadRequest()) { [logger, notifier, statusReporter] result in
                    if case .failure(let failure) = result {
                        // Already logged with every problem by the supervisor.
                        logger.debug("reload refused: \(failure.report.error)")
                    }
                    notifier.ready(status: statusReporter.summary())
                }
            }
        }
        watchdog?.stop()
        server.stop()
        supervisor.stopAll()
        return ExitStatus.stopped
    }

    /// Waits (at most `timeout`) until every driver has answered a ping. A driver answers commands
    /// only after its first pass, which starts with binding the listener of an enabled tunnel: so
    /// afterwards every listener bind has been attempted, and READY=1 means clients can connect.
    private func waitForListeners(_ handles: [TunnelHandle], timeout: Duration) {
        let baseline = handles.map(\.pongs)
        for handle in handles { handle.send(.ping) }
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while ContinuousClock.now < deadline {
            if zip(handles, baseline).allSatisfy({ $0.pongs > $1 }) { return }
            usleep(5_000)
        }
        let late = zip(handles, baseline).filter { $0.pongs <= $1 }.map(\.0.name)
        logger.error("tunnels \(late.joined(separator: ", ")) did not start within \(timeout); reporting ready anyway")
    }
}
