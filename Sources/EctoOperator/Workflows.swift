import EctoConfig
import EctoControl
import EctoHostKeys
import EctoPlatform
import EctoTunnel
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Exit statuses of the control commands (docs/control-protocol.md), as `OperatorFailure` uses them.
public enum OperatorExit {
    public static let refused: Int32 = 1
    public static let noDaemon: Int32 = 2
    public static let notUp: Int32 = 3
    public static let tokenRefused: Int32 = 4
}

/// One control request; a failure carries the daemon's message (and its config problems, one per
/// line) and the control commands' exit status.
public func controlRequest<T: Decodable>(
    socket: String, _ method: String, _ path: String, body: Data? = nil, as type: T.Type,
    timeout: Double = ControlClient.defaultTimeout
) throws(OperatorFailure) -> T {
    let answer: ControlAnswer
    do {
        answer = try ControlClient(path: socket, timeout: timeout).request(method, path, body: body)
    } catch {
        throw OperatorFailure(error.description, exitCode: OperatorExit.noDaemon)
    }
    switch answer.decode(T.self) {
    case .success(let value):
        return value
    case .failure(let failure):
        let problems = (failure.report.problems ?? []).map { "\n  \($0)" }.joined()
        throw OperatorFailure(failure.report.error + problems, exitCode: OperatorExit.refused)
    }
}

/// Steps 4 and 5 of `ecto-tunnel connect`: the tunnel's table in the config, and a daemon that
/// runs it.
public enum ConnectWorkflow {
    /// How the daemon reaches the target: as ssh does for the alias (`ProxyJump`, `ProxyCommand`).
    public enum Route: Sendable, Equatable {
        case direct
        /// Each hop with its Host block's HostName, User and Port applied.
        case jump([SSHTarget], origin: SettingLocation)
        case proxyCommand(String, origin: SettingLocation)

        /// The tunnel keys that carry it, as TOML lines (empty when direct).
        public var tomlLines: String {
            switch self {
            case .direct: return ""
            case .jump(let hops, _): return "jump = \(ImportedValue.strings(hops.map(\.description)).toml)\n"
            case .proxyCommand(let command, _): return "proxy_command = \(ImportedValue.string(command).toml)\n"
            }
        }

        /// " through jump host a, b", " through ProxyCommand …"; empty when direct.
        public var summary: String {
            switch self {
            case .direct: return ""
            case .jump(let hops, _):
                return
                    " through jump host\(hops.count == 1 ? "" : "s") \(hops.map(\.description).joined(separator: ", "))"
            case .proxyCommand(let command, _): return " through ProxyCommand \(command)"
            }
        }
    }

    /// Step 1: `[user@]host[:port]`, or a Host alias of `~/.ssh/config` (its HostName, User, Port;
    /// the settings are returned for the key and known_hosts). The user defaults to ours. An alias
    /// that ssh reaches through `ProxyJump` or `ProxyCommand` keeps that route (the daemon goes
    /// through it; the host key step cannot, see `missingHostKeys`); one ecto-tunnel cannot carry
    /// over is refused with its file:line.
    public static func resolveTarget(
        _ target: String
    ) throws(OperatorFailure) -> (SSHTarget, SSHHostSettings?, Route) {
        let looksExplicit = target.contains("@") || target.contains(":")
        if !looksExplicit {
            let settings = SSHClientConfig.resolve(host: target, environment: .current)
            let route: Route
            switch SSHConfigImport.route(settings, environment: .current) {
            case .none, .turnedOff: route = .direct
            case .jump(let hops, let origin): route = .jump(hops, origin: origin)
            case .proxyCommand(let command, let origin): route = .proxyCommand(command, origin: origin)
            case .unusable(let setting, let value, let origin, let reason):
                throw OperatorFailure("\(origin): \(setting) \(value): \(reason)")
            }
            if settings.hostName != nil || settings.user != nil || settings.port != nil || settings.identityFile != nil
                || route != .direct
            {
                let host = settings.hostName?.value ?? target
                let port = settings.port.flatMap { UInt16($0.value) } ?? 22
                return (
                    SSHTarget(user: settings.user?.value ?? ConfigEnvironment.current.user, host: host, port: port),
                    settings, route
                )
            }
        }
        do {
            var parsed = try SSHTarget.parse(target)
            if parsed.user == nil { parsed.user = ConfigEnvironment.current.user }
            return (parsed, nil, .direct)
        } catch {
            throw OperatorFailure(
                "invalid target \"\(target)\": \(error.message) (expected [user@]host[:port] or an ~/.ssh/config Host alias)"
            )
        }
    }

    /// Step 3 for a target behind a jump host or a proxy command: `connect` reads a host key over
    /// a direct connection, which cannot reach such a host, so the keys must already be in
    /// known_hosts (as they are once `ssh ALIAS` has been used): the target's (under its
    /// HostKeyAlias, if any) and each jump host's. Returns the known_hosts names missing.
    public static func missingHostKeys(
        target: SSHTarget, hostKeyAlias: String?, route: Route, knownHosts: KnownHostsFile
    ) -> [String] {
        var wanted = [(hostKeyAlias ?? target.host, Int(target.port))]
        if case .jump(let hops, _) = route { wanted += hops.map { ($0.host, Int($0.port)) } }
        return wanted.filter { knownHosts.entries(forHost: $0.0, port: $0.1).isEmpty }.map {
            KnownHostsFile.lookupName(host: $0.0, port: $0.1)
        }
    }

    /// Step 2: the key: `explicit` (--identity), else the alias's IdentityFile, else ssh's
    /// defaults; nil when only an ssh-agent is there. Judged as the daemon will use it.
    public static func pickKey(
        explicit: String?, alias: SSHHostSettings?, agent: Bool, home: String, target sshTarget: SSHTarget
    ) throws(OperatorFailure) -> String? {
        let candidates = [explicit, alias?.identityFile?.value].compactMap { $0 }.map {
            SSHClientConfig.expandTilde($0, home: home)
        }
        let defaults = TunnelDefaults.identityFiles.map { SSHClientConfig.expandTilde("~/" + $0, home: home) }
        for path in candidates where !FileManager.default.fileExists(atPath: path) {
            throw OperatorFailure("the key \(path) does not exist")
        }
        guard let path = (candidates + defaults).first(where: { FileManager.default.fileExists(atPath: $0) }) else {
            if agent { return nil }
            throw OperatorFailure(
                """
                no key: neither an ssh-agent (SSH_AUTH_SOCK) nor ~/.ssh/id_ed25519, ~/.ssh/id_ecdsa or ~/.ssh/id_rsa.
                  Create one and install it on the gateway host:
                    ssh-keygen -t ed25519 -f ~/.ssh/id_ed25519
                    ssh-copy-id -i ~/.ssh/id_ed25519.pub -p \(sshTarget.port) \(sshTarget.user.map { $0 + "@" } ?? "")\(sshTarget.host)
                """)
        }
        // Judged as the daemon will use it (an encrypted key is fine when an agent may hold it).
        if let problem = IdentityCheck.problem(
            privateKey: path, passphraseConfigured: agent, environment: TunnelValidation.judgingKeys)
        {
            throw OperatorFailure("cannot use \(path): \(problem)")
        }
        return path
    }

    /// Writes (or rewrites) `[tunnels.NAME]` in the config at `path`, refusing what `check` and the
    /// daemon would refuse for it; true when the file changed.
    public static func writeTunnel(_ table: String, name: String, to path: String) throws(OperatorFailure) -> Bool {
        let old = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        let text: String
        do {
            text = try ConfigEditor.addTunnel(table, named: name, to: old, replace: true)
            let config = try ConfigLoader.parse(text: text, path: path)
            // The checks of `check` and the daemon: refuse now what the daemon would refuse later.
            let report = TunnelValidation.check(config, environment: ProcessInfo.processInfo.environment, text: text)
            let ours = report.errors.filter { $0.key?.hasPrefix("tunnels.\(name).") == true }
            if !ours.isEmpty { throw ConfigErrors(ours) }
        } catch {
            throw OperatorFailure("cannot add [tunnels.\(name)] to \(path):\n\(error)")
        }
        if text == old { return false }
        do {
            try writeConfigFile(path, text)
        } catch {
            throw OperatorFailure("cannot write \(path): \(error)")
        }
        return true
    }

    /// What `ensureDaemon` did.
    public enum DaemonOutcome: Sendable, Equatable {
        /// `--restart` of the systemd service.
        case restartedService
        /// `--restart` of a daemon that systemd does not run: stopped, started in the background.
        case restartedInBackground(pid: Int32)
        /// A daemon runs this config and reloaded it (`applied`: something changed).
        case reloaded(pid: Int32, applied: Bool)
        /// The systemd user service was installed (the installer said what it did).
        case installed
        /// Started in the background (`noUserManager`: because no systemd user manager runs).
        case startedInBackground(pid: Int32, noUserManager: Bool)
        /// The running daemon's reload refused the tunnel's new settings (their pre-flight
        /// failed): it keeps its running session, and the config file was put back.
        case refusedByPreflight(pid: Int32, failure: ChangeFailure)
    }

    /// A daemon that runs `configPath`: the running one reloaded (or restarted), else the systemd
    /// user service installed, else one started in the background. When the reload refuses the
    /// tunnel's new settings (pre-flight), the config file is put back as it was (`previous`,
    /// when `changed`), so that it says what runs.
    public static func ensureDaemon(
        configPath: String, socket: String, socketOption: String?, tunnel name: String, restart: Bool, noSystemd: Bool,
        changed: Bool, previous: String, out: Output
    ) throws -> DaemonOutcome {
        if let version = runningDaemon(socket) {
            if restart {
                if let systemd = serviceManaging(version.pid) {
                    try systemd.run(["restart", UnitPaths.serviceName]).orFail("systemctl --user restart")
                    return .restartedService
                }
                terminateAndWait(version.pid)
                return .restartedInBackground(pid: try BackgroundDaemon.start(configPath: configPath, socket: socket))
            }
            if version.config != configPath {
                throw OperatorFailure(
                    "the daemon on \(socket) (pid \(version.pid)) runs another config (\(version.config)); pass --config \(version.config) or stop it"
                )
            }
            let reload = try controlRequest(socket: socket, "POST", "/v1/reload", as: ReloadReport.self, timeout: 600)
            if let failure = reload.failed.first(where: { $0.tunnel == name }) {
                // The running tunnel keeps its session: put the file back as it was.
                if changed { try? writeConfigFile(configPath, previous) }
                return .refusedByPreflight(pid: version.pid, failure: failure)
            }
            return .reloaded(pid: version.pid, applied: changed || !reload.changed.isEmpty || !reload.added.isEmpty)
        }
        if !noSystemd, UserManager.probe() != nil {
            try ServiceInstaller.install(configPath: configPath, socket: socketOption, out: out)
            return .installed
        }
        let pid = try BackgroundDaemon.start(configPath: configPath, socket: socket)
        return .startedInBackground(pid: pid, noUserManager: !noSystemd)
    }
}

/// `ecto-tunnel disconnect`: the tunnel disabled (or removed) in the config, then the daemon
/// reloaded, or stopped when no enabled tunnel is left.
public enum DisconnectWorkflow {
    /// Sets `enabled = false` in the tunnel's table, or removes the table (`purge`); nothing else
    /// in the file changes. Returns the config as it is now.
    public static func edit(configPath path: String, tunnel: String, purge: Bool) throws(OperatorFailure) -> Config {
        guard let old = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw OperatorFailure("cannot read \(path)")
        }
        let text: String
        let config: Config
        do {
            guard try ConfigLoader.parse(text: old, path: path).tunnels.contains(where: { $0.name == tunnel }) else {
                throw OperatorFailure("no tunnel named \(tunnel) in \(path)")
            }
            if purge {
                text = try ConfigEditor.removeTunnel(named: tunnel, from: old)
            } else {
                text = try ConfigEditor.setValue("__ecto_false__", forKey: "enabled", inTunnel: tunnel, in: old)
                    .replacing("\"__ecto_false__\"", with: "false")
            }
            config = try ConfigLoader.parse(text: text, path: path)
        } catch let failure as OperatorFailure {
            throw failure
        } catch {
            throw OperatorFailure("cannot edit \(path):\n\(error)")
        }
        if text != old {
            do {
                try writeConfigFile(path, text)
            } catch {
                throw OperatorFailure("cannot write \(path): \(error)")
            }
        }
        return config
    }

    /// What `applyToDaemon` did.
    public enum DaemonOutcome: Sendable, Equatable {
        case notRunning
        /// Other tunnels are still enabled: the daemon reloaded.
        case reloaded(pid: Int32)
        /// No enabled tunnel left: the systemd service was disabled and stopped.
        case stoppedService(pid: Int32)
        /// No enabled tunnel left: the background daemon got SIGTERM.
        case stoppedInBackground(pid: Int32)
    }

    public static func applyToDaemon(_ config: Config, socket: String) throws -> DaemonOutcome {
        guard let version = runningDaemon(socket) else { return .notRunning }
        if config.tunnels.contains(where: \.enabled) {
            // Other changed tunnels are pre-flighted too.
            _ = try controlRequest(socket: socket, "POST", "/v1/reload", as: ReloadReport.self, timeout: 600)
            return .reloaded(pid: version.pid)
        }
        if let systemd = serviceManaging(version.pid) {
            try systemd.run(["disable", "--now", UnitPaths.serviceName]).orFail("systemctl --user disable --now")
            return .stoppedService(pid: version.pid)
        }
        terminateAndWait(version.pid)
        return .stoppedInBackground(pid: version.pid)
    }
}

/// `--write` of the imports: the table added to the config (checked by parsing the result).
public enum ImportWorkflow {
    public static func write(
        _ imported: TunnelImport, configPath path: String, replace: Bool, home: String
    ) throws(OperatorFailure) {
        let old = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        do {
            let text = try ConfigEditor.addTunnel(
                imported.tableText(home: home), named: imported.name, to: old, replace: replace)
            _ = try ConfigLoader.parse(text: text, path: path)
            try writeConfigFile(path, text)
        } catch {
            throw OperatorFailure("not written to \(path):\n\(error)")
        }
    }
}
