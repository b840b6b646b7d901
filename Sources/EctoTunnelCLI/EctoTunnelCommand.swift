import ArgumentParser
import EctoConfig
import EctoControl
import EctoDaemon
import EctoPlatform
import EctoSSH
import EctoTunnel
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
            "The config file.",
            discussion: "Default: $XDG_CONFIG_HOME/ecto-tunnel/config.toml (~/.config/ecto-tunnel/config.toml).",
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
    var configPath: String { Self.absolute(config ?? ConfigLoader.defaultPath()) }

    static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        return URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
            .standardizedFileURL.path
    }
    var socketPath: String { socket ?? ControlPaths.defaultSocket() }
}

/// Only `--config`: for the commands that never talk to the daemon (`check`, `import`), so their
/// --help does not offer a --socket they would ignore.
struct ConfigOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "The config file.",
            discussion: "Default: $XDG_CONFIG_HOME/ecto-tunnel/config.toml (~/.config/ecto-tunnel/config.toml).",
            valueName: "path"))
    var config: String?

    /// Absolute, so that messages name it unambiguously.
    var configPath: String { GlobalOptions.absolute(config ?? ConfigLoader.defaultPath()) }
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
            Exit status: 0 after a clean stop, 78 when the config is invalid (the systemd unit \
            does not restart on it: RestartPreventExitStatus=78), 1 when the control socket \
            cannot be opened (another daemon runs there, say) or the tunnels cannot be started.
            """)

    @OptionGroup var global: GlobalOptions

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(
        name: .long, help: ArgumentHelp("Seconds open connections may continue after SIGTERM.", valueName: "seconds"))
    var stopGrace: Double = 5

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of: trace, debug, info, notice, warning, error, critical")
        }
        guard stopGrace >= 0 else { throw ValidationError("--stop-grace must not be negative") }
    }

    func run() throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        let journald = StderrLogHandler.stderrIsJournal(ProcessInfo.processInfo.environment)
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
            each of forwards ([bind_address:]port:host:hostport, not together with local/remote), \
            loopback-only listen addresses, overlapping listen addresses; then, with the rules the daemon \
            applies when it connects (the same code): each identity_file (not readable by group or \
            others, owned by you, a format and key type ecto-tunnel uses: ed25519, ECDSA, RSA; \
            encrypted only with identity_passphrase_file or identity_passphrase_credential, and \
            decrypted with the passphrase file when set), each certificate_file, the passphrase \
            file (same permission rules), and known_hosts (present; an entry for the target, under \
            host_key_alias when set, and for each jump host with host_key_policy = "strict", else a \
            warning); jump and proxy_command (valid hosts and tokens, not both). Every problem names \
            file:line and the key. Warnings (no entry for the host yet; no key and no agent; problems of disabled \
            tunnels) do not fail the check. Nothing is contacted.
            Exit status: 0 when valid, 1 when not.
            """)

    @OptionGroup var global: ConfigOptions

    func run() throws {
        do {
            let config = try TunnelValidation.load(
                path: global.configPath, environment: ProcessInfo.processInfo.environment)
            for warning in config.warnings { print("warning: \(warning)") }
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
