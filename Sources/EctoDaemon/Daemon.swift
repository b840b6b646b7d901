import EctoConfig
import EctoControl
import EctoTunnel
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The composition root of `ecto-tunnel run`: loads the config, opens the control socket, starts
/// the tunnels (through the `Supervisor`), turns signals into actions, and stops everything
/// gracefully.
///
/// Signals are blocked in every thread and taken synchronously here with `sigtimedwait`, so no
/// async-signal-safety concerns and no handler state.
public final class Daemon {
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

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    /// Runs until SIGTERM or SIGINT. Returns the process exit code.
    public func run() -> Int32 {
        var signals = sigset_t()
        sigemptyset(&signals)
        for signal in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&signals, signal) }
        // Block before any thread starts so every thread inherits the mask.
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        signal(SIGPIPE, SIG_IGN)

        let config: Config
        do {
            config = try ConfigLoader.load(path: options.configPath)
        } catch {
            logger.critical("invalid configuration:\n\(error.description)")
            return 1
        }
        for warning in config.warnings { logger.warning("\(warning)") }
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
            return 1
        }
        supervisor.publish = { [server] event in server.publish(event) }
        do {
            try supervisor.start(config)
        } catch {
            logger.critical("cannot start the tunnels: \(error)")
            supervisor.stopAll()
            server.stop()
            return 1
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

        while true {
            var info = siginfo_t()
            var timeout = timespec(tv_sec: 3600, tv_nsec: 0)
            let signal = sigtimedwait(&signals, &info, &timeout)
            if signal == SIGTERM || signal == SIGINT {
                logger.info("received \(signal == SIGTERM ? "SIGTERM" : "SIGINT"), stopping")
                break
            }
            if signal == SIGHUP {
                logger.info("SIGHUP: reloading \(config.path)")
                switch supervisor.reload() {
                case .success: break
                case .failure(let failure):
                    // Already logged with every problem by the supervisor.
                    logger.debug("reload refused: \(failure.report.error)")
                }
            }
        }
        server.stop()
        supervisor.stopAll()
        return 0
    }
}
