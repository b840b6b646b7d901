import ArgumentParser
import EctoOperator
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

struct Install: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Install, enable and start the systemd user unit.",
        discussion: """
            Checks the config like `check` (the same checks: a bad config, an unprotected or \
            unusable key, a passphrase file others can read are refused with file:line and key). \
            When this binary was installed with its unit (the Debian package: /usr/lib/systemd/user; \
            `make install`: PREFIX/share/systemd/user) and the config is the default one, it \
            enables that unit and writes none (removing one an earlier install wrote). Otherwise \
            it writes ecto-tunnel.service and the template ecto-tunnel@.service into \
            $XDG_CONFIG_HOME/systemd/user (~/.config/systemd/user) with ExecStart pointing at this \
            binary and --config (and --socket, if given) as absolute paths. Then it runs \
            `systemctl --user daemon-reload`, then `enable --now` (or `restart` when the unit was \
            already running and its file changed), and waits up to 30 s for the service to be \
            active: it becomes active only once the daemon reports READY (config loaded, listeners \
            bound).
            If SSH_AUTH_SOCK names an agent socket with a stable path (under $XDG_RUNTIME_DIR or \
            $HOME), it is written to $XDG_CONFIG_HOME/ecto-tunnel/environment, which the unit \
            reads; an agent in /tmp (a per-login ssh-agent) is not, because it changes at every \
            login. See docs/systemd.md.
            Needs a running systemd user manager (systemctl --user). To start the tunnels at boot \
            without logging in: loginctl enable-linger $USER. Logs: journalctl --user -u ecto-tunnel.
            Exit status: 0 when the service is active, 1 otherwise.
            """)

    @OptionGroup var global: GlobalOptions

    func run() throws {
        try runOperator { try ServiceInstaller.install(configPath: global.configPath, socket: global.socket, out: $0) }
    }
}

struct Uninstall: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop, disable and remove the systemd user unit.",
        discussion: """
            Runs `systemctl --user disable --now ecto-tunnel.service` (and stops and disables every \
            ecto-tunnel@NAME instance), removes the unit files and the environment file that \
            `install` wrote (only files that start with its marker comment; drop-ins, files \
            you wrote and the unit of the package or `make install` stay), and runs \
            `systemctl --user daemon-reload`. The config, keys and known_hosts are not touched.
            Exit status: 0 when done, 1 when no user manager is reachable or a step failed.
            """)

    @OptionGroup var global: GlobalOptions

    func run() throws {
        try runOperator { try ServiceInstaller.uninstall(out: $0) }
    }
}

/// Prints a unit file: how units/, the package and `make install` get theirs (one source).
struct UnitFile: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unit-file",
        abstract: "Print a systemd user unit file (for packaging).",
        discussion: """
            Prints ecto-tunnel.service or ecto-tunnel@.service, the units `install` writes, with \
            --exec in ExecStart= and the default --config/--socket (%E/ecto-tunnel/config.toml, \
            %t/ecto-tunnel/control.sock). `make units`, `make deb` and `make install` use it, so \
            that every copy comes from the text built into this binary.
            """,
        shouldDisplay: false)

    @Argument(help: ArgumentHelp("ecto-tunnel.service or ecto-tunnel@.service.", valueName: "name"))
    var name: String

    @Option(name: .long, help: ArgumentHelp("The binary for ExecStart= (absolute).", valueName: "path"))
    var exec: String = UnitPaths.shippedBinary

    func validate() throws {
        guard UnitPaths.templates[name] != nil else {
            throw ValidationError(
                "unknown unit \(name): expected \(UnitPaths.serviceName) or \(UnitPaths.templateName)")
        }
        guard exec.hasPrefix("/") else { throw ValidationError("--exec must be an absolute path, got \(exec)") }
    }

    func run() throws {
        print(UnitPaths.unit(UnitPaths.templates[name]!, binary: exec, arguments: nil), terminator: "")
    }
}
