import EctoConfig
import EctoTunnel
import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// The composition root of `ecto-tunnel run`: loads the config, starts one driver per tunnel,
/// turns signals into actions, and stops everything gracefully.
///
/// Signals are blocked in every thread and taken synchronously here with `sigtimedwait`, so no
/// async-signal-safety concerns and no handler state.
public final class Daemon {
    public struct Options: Sendable {
        public var configPath: String
        /// How long open connections may continue after SIGTERM before they are closed.
        public var stopGrace: Duration
        public init(configPath: String, stopGrace: Duration = .seconds(5)) {
            self.configPath = configPath
            self.stopGrace = stopGrace
        }
    }

    private let options: Options
    private let logger: Logger
    private var tunnels: [String: TunnelHandle] = [:]

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
        if config.tunnels.isEmpty {
            logger.warning("no tunnels configured in \(config.path)")
        }
        for tunnel in config.tunnels {
            do {
                tunnels[tunnel.name] = try TunnelHandle.start(config: tunnel, logger: logger) { [logger] status in
                    logger.debug("state \(status.state.rawValue)", metadata: ["tunnel.name": "\(status.name)"])
                }
            } catch {
                logger.critical("cannot start tunnel \(tunnel.name): \(error)")
                stopAll()
                return 1
            }
        }
        logger.info("ecto-tunnel running", metadata: ["config": "\(config.path)", "tunnels": "\(config.tunnels.count)"])
        let handles = Array(tunnels.values)
        let events = SystemEvents(logger: logger) { [logger] reason in
            logger.info("\(reason)")
            for handle in handles { handle.send(.networkChanged(reason: reason)) }
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
                logger.notice("SIGHUP received: configuration reload is not implemented yet; restart the daemon to apply changes")
            }
        }
        stopAll()
        return 0
    }

    private func stopAll() {
        for handle in tunnels.values { handle.send(.stop(grace: options.stopGrace)) }
        let deadline = ContinuousClock.now.advanced(by: options.stopGrace + .seconds(2))
        for handle in tunnels.values {
            let left = ContinuousClock.now.duration(to: deadline)
            if !handle.wait(timeout: max(left, .milliseconds(1))) {
                logger.error("tunnel \(handle.name) did not stop in time")
            }
        }
        tunnels.removeAll()
    }
}
