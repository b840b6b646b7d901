import EctoConfig
import EctoPlatform
import EctoTunnel
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// The first line of every file `install` writes; `uninstall` removes only files that carry it.
public let installMarker =
    "# Written by `ecto-tunnel install`; `ecto-tunnel uninstall` removes it. Edits are lost on the next install."

/// `ecto-tunnel install` and `uninstall`: the systemd user unit written (or the packaged one
/// enabled), started and awaited, or stopped and removed. Progress goes to `out`; a failure is
/// thrown with the message for the operator.
public enum ServiceInstaller {
    public static func install(configPath requested: String, socket: String?, out: Output) throws {
        let systemd = try UserManager.reachable()
        let configPath = absolutePath(requested)
        do {
            let config = try TunnelValidation.load(path: configPath, environment: ProcessInfo.processInfo.environment)
            for warning in config.warnings { out.say("warning: \(warning)") }
            out.say("config \(config.path): OK, \(config.tunnels.count) tunnel\(config.tunnels.count == 1 ? "" : "s")")
        } catch {
            try out.fail("not installing: the config does not pass `ecto-tunnel check`:\n\(error.description)")
        }
        let binary = try executablePath()
        let unitDirectory = UnitPaths.unitDirectory()
        try createDirectories(unitDirectory)
        try writeEnvironmentFile(out: out)

        let serviceChanged: Bool
        if let shipped = UnitPaths.shippedUnit(binary: binary),
            shippedUnitFits(configPath: configPath, socket: socket, out: out),
            try useShippedUnit(shipped, systemd: systemd, out: out)
        {
            serviceChanged = shipped.replacedOwnUnit
        } else {
            var arguments = ["--config", configPath]
            if let socket { arguments += ["--socket", absolutePath(socket)] }
            let service = UnitPaths.render(UnitTemplates.service, binary: binary, arguments: arguments)
            let template = UnitPaths.render(UnitTemplates.template, binary: binary, arguments: nil)
            serviceChanged = try writeOwnedFile(unitDirectory + "/" + UnitPaths.serviceName, service, out: out)
            _ = try writeOwnedFile(unitDirectory + "/" + UnitPaths.templateName, template, out: out)
            try systemd.run(["daemon-reload"]).orFail("systemctl --user daemon-reload")
        }
        let wasActive = systemd.property("ActiveState") == "active"
        if wasActive && serviceChanged {
            try systemd.run(["--no-block", "restart", UnitPaths.serviceName]).orFail("systemctl --user restart")
            try systemd.run(["enable", UnitPaths.serviceName]).orFail("systemctl --user enable")
            out.say("restarted \(UnitPaths.serviceName) (its unit file changed)")
        } else if wasActive {
            try systemd.run(["enable", UnitPaths.serviceName]).orFail("systemctl --user enable")
            out.say("\(UnitPaths.serviceName) was already running with this unit file")
        } else {
            // --no-block: we wait ourselves, with a bound, and show why when it does not come up.
            try systemd.run(["reset-failed", UnitPaths.serviceName], allowFailure: true).orIgnore()
            try systemd.run(["--no-block", "enable", "--now", UnitPaths.serviceName]).orFail(
                "systemctl --user enable --now")
            out.say("enabled and started \(UnitPaths.serviceName)")
        }
        let state = systemd.waitActive(timeout: .seconds(30))
        guard state.active else {
            try out.fail(
                """
                \(UnitPaths.serviceName) did not become active within 30 s: \(state.description)
                \(systemd.statusText())
                Logs: journalctl --user -u ecto-tunnel
                """)
        }
        out.say(
            """
            \(UnitPaths.serviceName) is active (\(state.description))
            logs:            journalctl --user -u ecto-tunnel -f
            status:          systemctl --user status ecto-tunnel
            start at boot without logging in:  loginctl enable-linger $USER
            several daemons: put NAME.toml next to the config and run systemctl --user enable --now ecto-tunnel@NAME
            remove:          ecto-tunnel uninstall
            """)
    }

    /// The packaged unit runs `--config %E/ecto-tunnel/config.toml` on the default socket: it fits
    /// only when that is the config (and socket) asked for.
    private static func shippedUnitFits(configPath: String, socket: String?, out: Output) -> Bool {
        let defaultConfig = absolutePath(UnitPaths.configHome() + "/ecto-tunnel/config.toml")
        guard configPath == defaultConfig else {
            out.say(
                "not using the installed unit: it runs \(defaultConfig), not \(configPath); writing a unit of our own (it takes precedence)"
            )
            return false
        }
        if let socket,
            XDG.runtimeDirectory(ProcessInfo.processInfo.environment).map({
                absolutePath($0 + "/ecto-tunnel/control.sock")
            }) != absolutePath(socket)
        {
            out.say(
                "not using the installed unit: it listens on %t/ecto-tunnel/control.sock, not \(socket); writing a unit of our own"
            )
            return false
        }
        return true
    }

    /// Enables the unit installed next to this binary (the package's, or `make install`'s) instead
    /// of writing a second one: removes units an earlier `install` wrote (they would hide it), then
    /// checks that the user manager loads the installed file. False (nothing enabled) when it
    /// loads another one, e.g. a PREFIX outside the manager's unit search path.
    private static func useShippedUnit(
        _ shipped: UnitPaths.ShippedUnit, systemd: UserManager, out: Output
    ) throws -> Bool {
        let unitDirectory = UnitPaths.unitDirectory()
        for name in [UnitPaths.serviceName, UnitPaths.templateName] {
            let path = unitDirectory + "/" + name
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { continue }
            if text.hasPrefix(installMarker) {
                if unlink(path) != 0 { try out.fail("cannot remove \(path): \(String(cString: strerror(errno)))") }
                out.say("removed \(path): the installed \(shipped.path) replaces it")
            } else {
                out.say("\(path) (not written by `ecto-tunnel install`) overrides the installed \(shipped.path)")
                return false
            }
        }
        try systemd.run(["daemon-reload"]).orFail("systemctl --user daemon-reload")
        let loaded = systemd.property("FragmentPath")
        guard loaded == shipped.path else {
            out.say(
                "the user manager loads \(loaded.isEmpty ? "no ecto-tunnel.service" : loaded), not \(shipped.path) (outside its unit search path?); writing a unit of our own"
            )
            return false
        }
        out.say("using the installed unit \(shipped.path) (ExecStart=\(shipped.binary))")
        return true
    }

    /// Writes SSH_AUTH_SOCK to the unit's environment file when it is a stable path.
    private static func writeEnvironmentFile(out: Output) throws {
        let environment = ProcessInfo.processInfo.environment
        let path = UnitPaths.environmentFile()
        guard let agent = environment["SSH_AUTH_SOCK"], !agent.isEmpty else {
            out.say("SSH_AUTH_SOCK is not set: the service authenticates with identity_file only (see docs/systemd.md)")
            return
        }
        let stableRoots = [environment["XDG_RUNTIME_DIR"], environment["HOME"]].compactMap { $0 }.filter {
            $0.hasPrefix("/")
        }
        guard agent.hasPrefix("/"), stableRoots.contains(where: { agent.hasPrefix($0.hasSuffix("/") ? $0 : $0 + "/") })
        else {
            out.say(
                """
                not passing SSH_AUTH_SOCK=\(agent) to the service: it is not under $XDG_RUNTIME_DIR or $HOME, so \
                it changes at every login (per-session ssh-agent). Use a stable agent socket or \
                `systemctl --user import-environment SSH_AUTH_SOCK` after each login (docs/systemd.md).
                """)
            return
        }
        if let existing = try? String(contentsOfFile: path, encoding: .utf8), !existing.hasPrefix(installMarker) {
            out.say(
                "leaving \(path) alone (not written by install); add SSH_AUTH_SOCK=\(agent) there yourself if needed")
            return
        }
        try createDirectories(Path.directory(of: path))
        _ = try writeOwnedFile(path, "\(installMarker)\nSSH_AUTH_SOCK=\(agent)\n", out: out, mode: 0o600)
    }
    public static func uninstall(out: Output) throws {
        let systemd = try UserManager.reachable()
        let unitDirectory = UnitPaths.unitDirectory()
        let instances = systemd.instanceUnits()
        for unit in [UnitPaths.serviceName] + instances {
            let result = try systemd.run(["disable", "--now", unit], allowFailure: true)
            if result.status == 0 {
                out.say("stopped and disabled \(unit)")
            } else if !result.output.contains("not loaded") && !result.output.contains("does not exist") {
                out.say("systemctl --user disable --now \(unit): \(result.output.trimmed())")
            }
        }
        for path in [
            unitDirectory + "/" + UnitPaths.serviceName, unitDirectory + "/" + UnitPaths.templateName,
            UnitPaths.environmentFile(),
        ] {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { continue }
            if text.hasPrefix(installMarker) {
                if unlink(path) != 0 { try out.fail("cannot remove \(path): \(String(cString: strerror(errno)))") }
                out.say("removed \(path)")
            } else {
                out.say("left \(path) in place: it was not written by `ecto-tunnel install`")
            }
        }
        try systemd.run(["daemon-reload"]).orFail("systemctl --user daemon-reload")
        _ = try systemd.run(["reset-failed", UnitPaths.serviceName], allowFailure: true)
        if let binary = try? executablePath(), let shipped = UnitPaths.shippedUnit(binary: binary) {
            out.say(
                "systemd user manager reloaded; the service is stopped and disabled (\(shipped.path) stays: it belongs to the package or `make install`)"
            )
        } else {
            out.say("systemd user manager reloaded; ecto-tunnel is no longer installed")
        }
    }
}

/// Where the unit files and the environment file go.
public enum UnitPaths {
    public static let serviceName = "ecto-tunnel.service"
    public static let templateName = "ecto-tunnel@.service"
    public static let shippedBinary = "/usr/local/bin/ecto-tunnel"
    static let shippedArguments = "--config %E/ecto-tunnel/config.toml --socket %t/ecto-tunnel/control.sock"

    /// `$XDG_CONFIG_HOME` (absolute) or `~/.config`: the user manager's `%E`.
    static func configHome() -> String {
        XDG.configHome(ProcessInfo.processInfo.environment, home: ConfigEnvironment.current.home)
    }

    static func unitDirectory() -> String { configHome() + "/systemd/user" }
    static func environmentFile() -> String { configHome() + "/ecto-tunnel/environment" }

    /// The unit files by name, as `unit-file` takes them.
    public static let templates = [serviceName: UnitTemplates.service, templateName: UnitTemplates.template]

    /// A unit of `UnitTemplates` with `binary` in ExecStart and, when given, `arguments` instead
    /// of the shipped `--config … --socket …`: what units/, the package and `make install` hold.
    public static func unit(_ template: String, binary: String, arguments: [String]?) -> String {
        var text = template.replacing("ExecStart=" + shippedBinary + " ", with: "ExecStart=" + quote(binary) + " ")
        if let arguments {
            text = text.replacing(shippedArguments, with: arguments.map(quote).joined(separator: " "))
        }
        return text + "\n"
    }

    /// What `install` writes: `unit(…)` with the marker on top.
    static func render(_ template: String, binary: String, arguments: [String]?) -> String {
        installMarker + "\n" + unit(template, binary: binary, arguments: arguments)
    }

    /// An ecto-tunnel.service installed next to a binary (by the package or `make install`).
    struct ShippedUnit {
        var path: String
        var binary: String
        /// True when `install` removed a unit it had written before (so the service changed).
        var replacedOwnUnit = false
    }

    /// The unit installed next to `binary` = PREFIX/bin/ecto-tunnel: PREFIX/lib/systemd/user (the
    /// package: /usr/lib/systemd/user) or PREFIX/share/systemd/user (`make install`), if its
    /// ExecStart= runs `binary`. `unitDirectory` (what `install` writes) is never one.
    static func shippedUnit(
        binary: String, read: (String) -> String? = { try? String(contentsOfFile: $0, encoding: .utf8) }
    )
        -> ShippedUnit?
    {
        let suffix = "/bin/ecto-tunnel"
        guard binary.hasSuffix(suffix) else { return nil }
        let prefix = String(binary.dropLast(suffix.count))
        for directory in [prefix + "/lib/systemd/user", prefix + "/share/systemd/user"]
        where directory != unitDirectory() {
            let path = directory + "/" + serviceName
            guard let text = read(path) else { continue }
            let execStart = "ExecStart=" + quote(binary) + " "
            if text.split(separator: "\n").contains(where: { $0.hasPrefix(execStart) }) {
                var replaced = false
                for name in [serviceName, templateName] {
                    if let own = read(unitDirectory() + "/" + name), own.hasPrefix(installMarker) { replaced = true }
                }
                return ShippedUnit(path: path, binary: binary, replacedOwnUnit: replaced)
            }
        }
        return nil
    }

    /// One word of a systemd command line: `%` doubled (specifiers), quoted if it has blanks.
    static func quote(_ word: String) -> String {
        var escaped = word.replacing("%", with: "%%")
        if escaped.contains(where: { $0 == " " || $0 == "\t" || $0 == "\"" || $0 == "\\" }) {
            escaped = "\"" + escaped.replacing("\\", with: "\\\\").replacing("\"", with: "\\\"") + "\""
        }
        return escaped
    }
}

/// `systemctl --user`, bounded.
public struct UserManager: Sendable {
    let systemctl: String

    public struct Result: Sendable {
        public var status: Int32
        public var output: String

        public func orFail(_ what: String) throws {
            guard status == 0 else {
                throw OperatorFailure("\(what) failed (exit status \(status)): \(output.trimmed())")
            }
        }

        public func orIgnore() {}
    }

    struct ServiceState: CustomStringConvertible {
        var activeState: String
        var subState: String
        var result: String
        var active: Bool { activeState == "active" }
        var description: String { "ActiveState=\(activeState) SubState=\(subState) Result=\(result)" }
    }

    /// A user manager that answers, or exit 1 with the reason.
    /// The user manager if one answers, else nil (no message).
    public static func probe() -> UserManager? {
        let candidates =
            (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map {
                $0 + "/systemctl"
            }
            + ["/usr/bin/systemctl", "/bin/systemctl"]
        guard let systemctl = candidates.first(where: { access($0, X_OK) == 0 }) else { return nil }
        let manager = UserManager(systemctl: systemctl)
        guard let result = try? manager.run(["show", "--property=Version", "--value"], allowFailure: true),
            result.status == 0,
            !result.output.trimmed().isEmpty
        else { return nil }
        return manager
    }

    public static func reachable() throws -> UserManager {
        let candidates =
            (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map {
                $0 + "/systemctl"
            }
            + ["/usr/bin/systemctl", "/bin/systemctl"]
        let runtime = ProcessInfo.processInfo.environment["XDG_RUNTIME_DIR"] ?? "unset"
        guard let systemctl = candidates.first(where: { access($0, X_OK) == 0 }) else {
            throw OperatorFailure(
                "systemctl not found: no systemd here; start the daemon with `ecto-tunnel run` instead")
        }
        let manager = UserManager(systemctl: systemctl)
        let probe = try manager.run(["show", "--property=Version", "--value"], allowFailure: true)
        guard probe.status == 0, !probe.output.trimmed().isEmpty else {
            throw OperatorFailure(
                """
                no systemd user manager is reachable (XDG_RUNTIME_DIR=\(runtime)): start the daemon with \
                `ecto-tunnel run` instead\(probe.output.isEmpty ? "" : "\nsystemctl --user: " + probe.output.trimmed())
                """)
        }
        return manager
    }

    @discardableResult
    public func run(_ arguments: [String], allowFailure: Bool = true, timeout: Duration = .seconds(30)) throws -> Result
    {
        let outcome: ChildProcess.Outcome
        do {
            outcome = try ChildProcess.run(systemctl, ["--user"] + arguments, timeout: timeout)
        } catch {
            return Result(status: 127, output: "cannot run \(systemctl): \(error)")
        }
        if outcome.timedOut {
            return Result(
                status: 124, output: "systemctl --user \(arguments.joined(separator: " ")) timed out after \(timeout)")
        }
        return Result(status: outcome.status, output: outcome.output)
    }

    public func property(_ name: String, unit: String = UnitPaths.serviceName) -> String {
        (try? run(["show", "--property=\(name)", "--value", unit]).output.trimmed()) ?? ""
    }

    func state() -> ServiceState {
        ServiceState(activeState: property("ActiveState"), subState: property("SubState"), result: property("Result"))
    }

    /// Polls until active, failed, or `timeout`.
    func waitActive(timeout: Duration) -> ServiceState {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while true {
            let current = state()
            if current.active || current.activeState == "failed" || ContinuousClock.now >= deadline { return current }
            usleep(100_000)
        }
    }

    func statusText() -> String {
        (try? run(["status", "--no-pager", "--lines=20", UnitPaths.serviceName]).output) ?? ""
    }

    /// Loaded or enabled `ecto-tunnel@NAME.service` instances.
    func instanceUnits() -> [String] {
        var names = Set<String>()
        if let listed = try? run(["list-units", "--all", "--plain", "--no-legend", "ecto-tunnel@*.service"]) {
            for line in listed.output.split(separator: "\n") {
                if let name = line.split(separator: " ").first, name.hasPrefix("ecto-tunnel@") {
                    names.insert(String(name))
                }
            }
        }
        let wants = UnitPaths.unitDirectory() + "/default.target.wants"
        for name in (try? FileManager.default.contentsOfDirectory(atPath: wants)) ?? []
        where name.hasPrefix("ecto-tunnel@") && name.hasSuffix(".service") && name != UnitPaths.templateName {
            names.insert(name)
        }
        return names.sorted()
    }
}

/// The running binary (`/proc/self/exe`), for ExecStart.
public func executablePath() throws -> String {
    if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return path }
    throw OperatorFailure("cannot resolve /proc/self/exe to find this binary's path")
}

/// `path` absolute, with symlinks, "." and ".." resolved.
func absolutePath(_ path: String) -> String {
    Path.resolvingSymlinks(path)
}

func createDirectories(_ path: String) throws {
    do {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    } catch {
        throw OperatorFailure("cannot create \(path): \(reason(error))")
    }
}

/// Writes `contents` to `path` unless it already holds exactly that; refuses to replace a file
/// without the install marker. Returns true if the file changed.
func writeOwnedFile(_ path: String, _ contents: String, out: Output, mode: Int = 0o644) throws -> Bool {
    let existing = try? String(contentsOfFile: path, encoding: .utf8)
    if let existing, !existing.hasPrefix(installMarker) {
        try out.fail("\(path) exists and was not written by `ecto-tunnel install`: remove or rename it first")
    }
    if existing == contents {
        out.say("unchanged \(path)")
        return false
    }
    let temporary = path + ".tmp-\(getpid())"
    do {
        try Data(contents.utf8).write(to: URL(fileURLWithPath: temporary))
        chmod(temporary, mode_t(mode))
        guard rename(temporary, path) == 0 else {
            let message = String(cString: strerror(errno))
            unlink(temporary)
            try out.fail("cannot write \(path): \(message)")
        }
    } catch {
        unlink(temporary)
        try out.fail("cannot write \(path): \(reason(error))")
    }
    out.say("\(existing == nil ? "wrote" : "updated") \(path)")
    return true
}
