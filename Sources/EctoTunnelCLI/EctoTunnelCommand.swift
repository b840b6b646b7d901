import ArgumentParser
import EctoConfig
import EctoControl
import EctoDaemon
import EctoPlatform
import EctoSSH
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging

@main
struct EctoTunnelCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ecto-tunnel",
        abstract: "Keeps SSH LocalForward tunnels to remote gateways open, through libssh2.",
        discussion: """
            ecto-tunnel run starts the daemon in the foreground; it keeps every tunnel of the \
            config file open, reconnecting with backoff, and checks the server's host key strictly \
            against known_hosts. The config file is TOML; see docs/config.md.

            The other commands talk to the running daemon through its control socket (owner-only, \
            see docs/control-protocol.md): status, target, up, down, reconnect, reload. They exit \
            with 2 when no daemon answers.
            """,
        version: EctoVersion.current,
        subcommands: [
            Run.self, Status.self, Target.self, Up.self, Down.self, Reconnect.self, Reload.self, Check.self,
            Install.self, Uninstall.self, Connect.self, Disconnect.self, Import.self, UnitFile.self,
        ]
    )
}

/// Options every command shares.
struct GlobalOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "The config file.", discussion: "Default: $XDG_CONFIG_HOME/ecto-tunnel/config.toml (~/.config/ecto-tunnel/config.toml).",
            valueName: "path"))
    var config: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "The daemon's control socket.",
            discussion: "Default: $ECTO_TUNNEL_SOCKET, else $XDG_RUNTIME_DIR/ecto-tunnel/control.sock.",
            valueName: "path"))
    var socket: String?

    /// Absolute, so that messages and the daemon (which may chdir) name it unambiguously.
    var configPath: String {
        let path = config ?? ConfigLoader.defaultPath()
        if path.hasPrefix("/") { return path }
        return URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath)).standardizedFileURL.path
    }
    var socketPath: String { socket ?? ControlPaths.defaultSocket() }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the daemon in the foreground (what the systemd unit starts).",
        discussion: """
            Reads the config, opens the control socket (--socket; refuses to start when another \
            daemon answers there), binds every tunnel's local address (loopback only unless \
            allow_non_loopback = true), and keeps one SSH session per tunnel open. Logs go to \
            stderr (with syslog priorities under journald). SIGHUP reloads the config like \
            `ecto-tunnel reload`. SIGTERM or SIGINT stops gracefully: listeners close, open \
            connections get --stop-grace to finish, sessions disconnect.
            Exit status: 0 after a clean stop, 1 when the config is invalid or the control \
            socket cannot be opened.
            """)

    @OptionGroup var global: GlobalOptions

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(name: .long, help: ArgumentHelp("Seconds open connections may continue after SIGTERM.", valueName: "seconds"))
    var stopGrace: Double = 5

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of: trace, debug, info, notice, warning, error, critical")
        }
        guard stopGrace >= 0 else { throw ValidationError("--stop-grace must not be negative") }
    }

    func run() throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        let journald = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] != nil
        LoggingSystem.bootstrap { label in StderrLogHandler(label: label, level: level, journald: journald) }
        let logger = Logger(label: "ecto-tunnel")
        SSHLibrary.initialize()
        let daemon = Daemon(
            options: .init(
                configPath: global.configPath, socketPath: global.socketPath,
                stopGrace: .milliseconds(Int64(stopGrace * 1000))),
            logger: logger)
        let code = daemon.run()
        SSHLibrary.shutdown()
        if code != 0 { throw ExitCode(code) }
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate the config file offline.",
        discussion: """
            Parses the config and checks every tunnel: unknown keys, value types, addresses, \
            loopback-only local addresses, duplicate local ports, and that the key, passphrase and \
            known_hosts files exist. Every error names file:line and the key. Nothing is contacted.
            Exit status: 0 when valid, 1 when not.
            """)

    @OptionGroup var global: GlobalOptions

    func run() throws {
        do {
            let config = try ConfigLoader.load(path: global.configPath)
            print("\(config.path): OK, \(config.tunnels.count) tunnel\(config.tunnels.count == 1 ? "" : "s")")
            for tunnel in config.tunnels {
                let state = tunnel.enabled ? "" : " (disabled)"
                print("  \(tunnel.name): \(tunnel.local) -> \(tunnel.target) -> \(tunnel.remote)\(state)")
            }
        } catch {
            writeStandardError(error.description + "\n")
            throw ExitCode(1)
        }
    }
}
