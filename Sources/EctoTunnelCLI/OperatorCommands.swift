import ArgumentParser
import EctoConfig
import EctoControl
import EctoDaemon
import EctoHostKeys
import EctoPlatform
import EctoProbe
import EctoSSH
import EctoTunnel
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// The OpenClaw operator flow: `connect`, `disconnect`, and the imports.
struct Connect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Connect to an OpenClaw gateway over SSH in one command (safe to re-run).",
        discussion: """
            Shows each step as it goes:
            1. target: [user@]host[:port], or a Host alias from ~/.ssh/config (its HostName, User, \
            Port, IdentityFile and UserKnownHostsFile are used);
            2. key: --identity, else the alias's IdentityFile, else ~/.ssh/id_ed25519 (or \
            ~/.ssh/id_ecdsa); an ssh-agent (SSH_AUTH_SOCK) is tried first by the daemon;
            3. host key: fetched from the server and shown by fingerprint. A key already in \
            known_hosts is used; an unknown one must be confirmed (interactively, or with --yes, or \
            with --fingerprint SHA256:… for scripts) and is then added to known_hosts; a changed key \
            is refused;
            4. config: writes [tunnels.NAME] (default name gateway, local 127.0.0.1:18789 → remote \
            127.0.0.1:18789; --port, or OPENCLAW_GATEWAY_PORT, sets both; --remote-port the remote \
            one; an http probe of the gateway); re-running rewrites the same table, nothing else;
            5. daemon: reloads a running daemon; else installs and starts the systemd user service; \
            where no user manager runs (or with --no-systemd), starts the daemon in the background \
            (log: $XDG_STATE_HOME/ecto-tunnel/daemon.log);
            6. waits until the tunnel is up and the gateway answers through it (checked from here \
            with the token this run resolved: HTTP, then the WebSocket), then prints the WebSocket \
            URL, the HTTP endpoint, where the gateway token comes from (never the token itself \
            unless --show-token) and an example curl that references that token ($VARIABLE, or \
            $TOKEN with a note).
            Token precedence (OpenClaw's remote mode): --token, gateway.remote.token, \
            OPENCLAW_GATEWAY_TOKEN, gateway.auth.token; password: --password, \
            OPENCLAW_GATEWAY_PASSWORD, gateway.remote.password, gateway.auth.password.
            Exit status: 0 connected and the gateway answers; 3 the tunnel is not up, or up but the \
            gateway does not answer, within --timeout; 4 the gateway answers but refused the token \
            (HTTP 401/403), or wants one and none was found; 1 refused (host key, bad input, \
            config errors, failed tunnel, a change of a running tunnel that failed its pre-flight).
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: ArgumentHelp("The gateway host: [user@]host[:port] or an ~/.ssh/config alias.", valueName: "target"))
    var target: String

    @Option(name: .long, help: "The tunnel's name in the config.")
    var name: String = "gateway"

    @Option(name: .long, help: ArgumentHelp("Local port (and remote port unless --remote-port). Default: $OPENCLAW_GATEWAY_PORT or 18789.", valueName: "port"))
    var port: UInt16?

    @Option(name: .long, help: ArgumentHelp("The gateway's port on the remote host.", valueName: "port"))
    var remotePort: UInt16?

    @Option(name: .long, help: ArgumentHelp("Private key file (ed25519, ecdsa or rsa; OpenSSH or PEM format). Default: ~/.ssh/id_ed25519, id_ecdsa, id_rsa.", valueName: "path"))
    var identity: String?

    @Option(name: .long, help: ArgumentHelp("known_hosts file. Default: ~/.ssh/known_hosts (or the alias's UserKnownHostsFile).", valueName: "path"))
    var knownHosts: String?

    @Flag(name: .long, help: "Trust the server's host key without asking (when it is not known yet).")
    var yes = false

    @Option(name: .long, help: ArgumentHelp("Trust the host key only if it has this fingerprint.", valueName: "SHA256:…"))
    var fingerprint: String?

    @Flag(name: .long, help: "Restart the daemon (service) even if it runs already.")
    var restart = false

    @Flag(name: .long, help: "Do not use systemd; start the daemon in the background.")
    var noSystemd = false

    @Option(name: .long, help: "Gateway token (overrides the OpenClaw config and environment).")
    var token: String?

    @Option(name: .long, help: "Gateway password (overrides the OpenClaw config and environment).")
    var password: String?

    @Flag(name: .long, help: "Print the gateway token and password in the example.")
    var showToken = false

    @Option(name: .long, help: ArgumentHelp("Seconds to wait for the tunnel and the gateway.", valueName: "seconds"))
    var timeout: Double = 30

    func run() throws {
        let env = ProcessInfo.processInfo.environment
        let home = ConfigEnvironment.current.home
        guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
            printError("--name may only contain letters, digits, - and _")
            throw ExitCode(ControlExit.refused)
        }

        // 1. Target.
        let (sshTarget, aliasSettings) = try resolveTarget(home: home)
        step(1, "target \(sshTarget)" + (aliasSettings != nil ? " (from ~/.ssh/config Host \(target))" : ""))

        // 2. Key.
        let agent = env["SSH_AUTH_SOCK"].map { !$0.isEmpty } ?? false
        let keyPath = try pickKey(home: home, alias: aliasSettings, agent: agent, target: sshTarget)
        step(2, "key \(keyPath.map { SSHClientConfig.abbreviate($0, home: home) } ?? "none (ssh-agent only)")" + (agent ? "; ssh-agent keys are tried first" : ""))

        // 3. Host key.
        let knownHostsPath = SSHClientConfig.expandTilde(knownHosts ?? aliasSettings?.userKnownHostsFile?.value ?? "~/.ssh/known_hosts", home: home)
        try trustHostKey(sshTarget, knownHostsPath: knownHostsPath, home: home)

        // 4. Config.
        let localPort = port ?? env["OPENCLAW_GATEWAY_PORT"].flatMap { UInt16($0) } ?? 18789
        let remote = remotePort ?? localPort
        let configPath = global.configPath
        var table = """
            [tunnels.\(name)]   # written by `ecto-tunnel connect`
            target = "\(sshTarget)"
            local = "127.0.0.1:\(localPort)"
            remote = "127.0.0.1:\(remote)"

            """
        if let keyPath { table += "identity_file = \"\(keyPath)\"\n" }
        table += "known_hosts = \"\(knownHostsPath)\"\nprobe = \"http:/\"\n"
        let previous = (try? String(contentsOfFile: configPath, encoding: .utf8)) ?? ""
        let changed = try writeTunnel(table, to: configPath)
        step(4, "config \(SSHClientConfig.abbreviate(configPath, home: home)): [tunnels.\(name)] \(changed ? "written" : "unchanged") (127.0.0.1:\(localPort) → 127.0.0.1:\(remote) on \(sshTarget.host))")

        // 5. Daemon.
        try ensureDaemon(configPath: configPath, changed: changed, previous: previous)

        // 6. Wait for the tunnel and the gateway: probed from here, with the token resolved here.
        let credentials = resolveCredentials()
        let report = try waitUntilUp(localPort: localPort, credentials: credentials)
        printSummary(report, localPort: localPort, credentials: credentials)
    }

    /// The gateway token and password of this run (--token/--password, OpenClaw's config, the
    /// environment; OpenClaw's precedence). The probes and the printed example use exactly these.
    private func resolveCredentials() -> GatewayCredentials {
        let settings = try? OpenClawImport.readSettings(environment: .current)
        return GatewayCredentials.resolve(
            explicitToken: token, explicitPassword: password, settings: settings, environment: ProcessInfo.processInfo.environment)
    }

    private func step(_ n: Int, _ text: String) { print("[\(n)/6] \(text)") }

    private func resolveTarget(home: String) throws -> (SSHTarget, SSHHostSettings?) {
        let looksExplicit = target.contains("@") || target.contains(":")
        if !looksExplicit {
            let settings = SSHClientConfig.resolve(host: target, environment: .current)
            if settings.hostName != nil || settings.user != nil || settings.port != nil || settings.identityFile != nil {
                let host = settings.hostName?.value ?? target
                let port = settings.port.flatMap { UInt16($0.value) } ?? 22
                return (SSHTarget(user: settings.user?.value ?? ConfigEnvironment.current.user, host: host, port: port), settings)
            }
        }
        do {
            var parsed = try SSHTarget.parse(target)
            if parsed.user == nil { parsed.user = ConfigEnvironment.current.user }
            return (parsed, nil)
        } catch {
            printError("invalid target \"\(target)\": \(error.message) (expected [user@]host[:port] or an ~/.ssh/config Host alias)")
            throw ExitCode(ControlExit.refused)
        }
    }

    private func pickKey(home: String, alias: SSHHostSettings?, agent: Bool, target sshTarget: SSHTarget) throws -> String? {
        let candidates = [identity, alias?.identityFile?.value].compactMap { $0 }.map { SSHClientConfig.expandTilde($0, home: home) }
        let defaults = TunnelDefaults.identityFiles.map { SSHClientConfig.expandTilde("~/" + $0, home: home) }
        for path in candidates where !FileManager.default.fileExists(atPath: path) {
            printError("the key \(path) does not exist")
            throw ExitCode(ControlExit.refused)
        }
        guard let path = (candidates + defaults).first(where: { FileManager.default.fileExists(atPath: $0) }) else {
            if agent { return nil }
            printError(
                """
                no key: neither an ssh-agent (SSH_AUTH_SOCK) nor ~/.ssh/id_ed25519, ~/.ssh/id_ecdsa or ~/.ssh/id_rsa.
                  Create one and install it on the gateway host:
                    ssh-keygen -t ed25519 -f ~/.ssh/id_ed25519
                    ssh-copy-id -i ~/.ssh/id_ed25519.pub -p \(sshTarget.port) \(sshTarget.user.map { $0 + "@" } ?? "")\(sshTarget.host)
                """)
            throw ExitCode(ControlExit.refused)
        }
        // Judged as the daemon will use it (an encrypted key is fine when an agent may hold it).
        if let problem = IdentityCheck.problem(privateKey: path, passphraseConfigured: agent, environment: TunnelValidation.judgingKeys) {
            printError("cannot use \(path): \(problem)")
            throw ExitCode(ControlExit.refused)
        }
        return path
    }

    private func trustHostKey(_ sshTarget: SSHTarget, knownHostsPath: String, home: String) throws {
        let key: HostKey
        do {
            key = try HostKeyFetcher.fetch(host: sshTarget.host, port: sshTarget.port, timeout: .seconds(10))
        } catch {
            printError("cannot reach \(sshTarget.host):\(sshTarget.port) to read its host key: \(error)")
            throw ExitCode(ControlExit.notUp)
        }
        let known = (try? KnownHostsFile.load(path: knownHostsPath)) ?? KnownHostsFile(path: knownHostsPath)
        let lookup = KnownHostsFile.lookupName(host: sshTarget.host, port: Int(sshTarget.port))
        switch known.check(host: sshTarget.host, port: Int(sshTarget.port), key: key) {
        case .match(let line):
            step(3, "host key \(key.algorithm) \(key.fingerprintSHA256), already trusted (\(SSHClientConfig.abbreviate(knownHostsPath, home: home)):\(line))")
            return
        case .revoked(let line):
            printError("the host key of \(lookup) (\(key.fingerprintSHA256)) is marked @revoked in \(knownHostsPath):\(line); refusing")
            throw ExitCode(ControlExit.refused)
        case .mismatch(let others) where others.contains(where: \.sameAlgorithm):
            let old = others.map { "\($0.key.fingerprintSHA256) (line \($0.line))" }.joined(separator: ", ")
            printError(
                """
                THE HOST KEY OF \(lookup) HAS CHANGED: the server now shows \(key.algorithm) \(key.fingerprintSHA256); \
                \(knownHostsPath) has \(old).
                  This can be an attack, or a reinstalled server. Check the new fingerprint with the host's \
                administrator, then remove the old entry: ssh-keygen -R '\(lookup)' -f \(knownHostsPath)
                """)
            throw ExitCode(ControlExit.refused)
        case .mismatch, .notFound:
            break
        }
        print("[3/6] host key of \(lookup): \(key.algorithm) \(key.fingerprintSHA256) (not in \(SSHClientConfig.abbreviate(knownHostsPath, home: home)))")
        if let expected = fingerprint {
            let normalized = expected.hasPrefix("SHA256:") ? expected : "SHA256:" + expected
            guard normalized == key.fingerprintSHA256 else {
                printError("refused: the server's host key is \(key.fingerprintSHA256), not \(normalized)")
                throw ExitCode(ControlExit.refused)
            }
            print("      matches --fingerprint")
        } else if !yes {
            guard isatty(STDIN_FILENO) == 1 else {
                printError("not trusting an unknown host key without confirmation: pass --yes, or --fingerprint \(key.fingerprintSHA256) after checking it")
                throw ExitCode(ControlExit.refused)
            }
            print("      Trust this key and remember it in \(SSHClientConfig.abbreviate(knownHostsPath, home: home))? [y/N] ", terminator: "")
            fflush(nil)
            let answer = readLine()?.trimmed(.whitespaces).lowercased() ?? ""
            guard answer == "y" || answer == "yes" else {
                printError("host key not trusted; nothing was changed")
                throw ExitCode(ControlExit.refused)
            }
        }
        do {
            try KnownHostsFile.append(host: sshTarget.host, port: Int(sshTarget.port), key: key, to: knownHostsPath)
        } catch {
            printError("cannot record the host key: \(error)")
            throw ExitCode(ControlExit.refused)
        }
        print("      added to \(SSHClientConfig.abbreviate(knownHostsPath, home: home))")
    }

    /// Writes (or rewrites) the tunnel's table; true when the file changed.
    private func writeTunnel(_ table: String, to path: String) throws -> Bool {
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
            printError("cannot add [tunnels.\(name)] to \(path):\n\(error)")
            throw ExitCode(ControlExit.refused)
        }
        if text == old { return false }
        do {
            try writeConfigFile(path, text)
        } catch {
            printError("cannot write \(path): \(error)")
            throw ExitCode(ControlExit.refused)
        }
        return true
    }

    private func ensureDaemon(configPath: String, changed: Bool, previous: String) throws {
        if let version = runningDaemon(global.socketPath) {
            if restart {
                if let systemd = serviceManaging(version.pid) {
                    try systemd.run(["restart", UnitPaths.serviceName]).orFail("systemctl --user restart")
                    step(5, "daemon: restarted \(UnitPaths.serviceName)")
                } else {
                    terminateAndWait(version.pid)
                    let pid = try BackgroundDaemon.start(configPath: configPath, socket: global.socketPath)
                    step(5, "daemon: restarted in the background (pid \(pid), log \(BackgroundDaemon.logPath()))")
                }
                return
            }
            if version.config != configPath {
                printError("the daemon on \(global.socketPath) (pid \(version.pid)) runs another config (\(version.config)); pass --config \(version.config) or stop it")
                throw ExitCode(ControlExit.refused)
            }
            let reload = try call(global, "POST", "/v1/reload", as: ReloadReport.self, timeout: 600)
            if let failure = reload.failed.first(where: { $0.tunnel == name }) {
                // The running tunnel keeps its session: put the file back as it was, so that it
                // says what runs.
                if changed { try? writeConfigFile(configPath, previous) }
                step(5, "daemon: running (pid \(version.pid)); the new settings of \(name) failed their pre-flight")
                printError(
                    "\(name): not changed: \(failure.stage) failed: \(failure.error). The tunnel keeps its running settings and \(configPath) is as it was.")
                throw ExitCode(ControlExit.refused)
            }
            step(5, "daemon: running (pid \(version.pid)); " + (changed || !reload.changed.isEmpty || !reload.added.isEmpty ? "reloaded" : "nothing to reload"))
            return
        }
        if !noSystemd, UserManager.probe() != nil {
            step(5, "daemon: installing the systemd user service")
            let install = try Install.parse(["--config", configPath] + (global.socket.map { ["--socket", $0] } ?? []))
            try install.run()
            return
        }
        let pid = try BackgroundDaemon.start(configPath: configPath, socket: global.socketPath)
        step(5, "daemon: \(noSystemd ? "" : "no systemd user manager here; ")started in the background (pid \(pid), log \(BackgroundDaemon.logPath()))")
    }

    private func waitUntilUp(localPort: UInt16, credentials: GatewayCredentials) throws -> TunnelReport {
        let deadline = ContinuousClock.now.advanced(by: .milliseconds(Int64(timeout * 1000)))
        var last: TunnelReport?
        while ContinuousClock.now < deadline {
            if let answer = try? ControlClient(path: global.socketPath).request("GET", "/v1/tunnels/\(pathComponent(name))"),
                case .success(let report) = answer.decode(StatusReport.self), let tunnel = report.tunnels.first
            {
                last = tunnel
                if tunnel.state == "up" { break }
                if tunnel.state == "failed" {
                    printError("the tunnel failed: \(tunnel.lastError ?? "unknown error")")
                    throw ExitCode(ControlExit.refused)
                }
            }
            usleep(100_000)
        }
        guard let up = last, up.state == "up" else {
            printError("the tunnel is not up after \(Int(timeout)) s: \(last.map { "\($0.state), \($0.lastError ?? "no error yet")" } ?? "no answer from the daemon"); it keeps retrying (ecto-tunnel status)")
            throw ExitCode(ControlExit.notUp)
        }
        // The gateway, through the tunnel, with this run's token: HTTP first (does it answer at
        // all?), then the WebSocket that OpenClaw's clients use (does it take the token?).
        let endpoint = Endpoint(host: "127.0.0.1", port: localPort)
        let options = ProbeOptions(token: credentials.token?.value)
        var result = Prober.run(.http(path: "/"), endpoint: endpoint, options: options)
        while !result.ok && !result.tokenRefused && ContinuousClock.now < deadline {
            usleep(500_000)
            result = Prober.run(.http(path: "/"), endpoint: endpoint, options: options)
        }
        if result.ok {
            let websocket = Prober.run(.websocket(path: "/"), endpoint: endpoint, options: options)
            if websocket.tokenRefused { result = websocket }
        }
        if result.tokenRefused {
            step(6, "tunnel up; the gateway answers, but \(credentials.token == nil ? "wants a token" : "refused the token") (\(result.detail))")
            if let secret = credentials.token {
                printError("gateway refused the token from \(secret.source); check it (the gateway's gateway.auth.token), or pass the right one with --token")
            } else {
                printError(
                    "the gateway wants a token and none was found: pass --token, set OPENCLAW_GATEWAY_TOKEN, or gateway.remote.token in ~/.openclaw/openclaw.json"
                        + (credentials.skipped.isEmpty ? "" : " (skipped: \(credentials.skipped.joined(separator: "; ")))"))
            }
            throw ExitCode(ControlExit.tokenRefused)
        }
        guard result.ok else {
            step(6, "tunnel up, but the gateway does not answer through it: \(result.detail)")
            print("      Is the OpenClaw gateway running on the remote host, on port \(up.remote)? (ecto-tunnel status --deep)")
            throw ExitCode(ControlExit.notUp)
        }
        step(6, "tunnel up; the gateway answers (\(result.detail))")
        return up
    }

    private func printSummary(_ report: TunnelReport, localPort: UInt16, credentials: GatewayCredentials) {
        let base = "127.0.0.1:\(localPort)"
        // The example references the token where it really comes from (a variable it can name,
        // else $TOKEN with a note); printed only with --show-token.
        var authHeader: String? = nil
        var tokenNote: String? = nil
        var tokenLine = "token:      none found (set OPENCLAW_GATEWAY_TOKEN, gateway.remote.token in ~/.openclaw/openclaw.json, or pass --token)"
        if let secret = credentials.token {
            tokenLine = "token:      \(showToken ? secret.reveal() : secret.description)"
            switch secret.source {
            case _ where showToken:
                authHeader = "-H 'Authorization: Bearer \(secret.value)'"
            case .environment(let variable), .openClawConfig(_, _, let variable?):
                authHeader = "-H \"Authorization: Bearer $\(variable)\""
            default:
                authHeader = "-H \"Authorization: Bearer $TOKEN\""
                tokenNote = "TOKEN=…  # the token from \(secret.source) (--show-token prints it)"
            }
        }
        var passwordLine: String? = nil
        if let secret = credentials.password { passwordLine = "password:   \(showToken ? secret.reveal() : secret.description)" }
        print(
            """

            Connected: \(report.name) → \(report.target)
              WebSocket:  ws://\(base)
              HTTP:       http://\(base)/v1/chat/completions
              \(tokenLine)
            """)
        if let passwordLine { print("  " + passwordLine) }
        print(
            """
              try it:\(tokenNote.map { "\n    " + $0 } ?? "")
                curl -sS http://\(base)/v1/chat/completions \\\(authHeader.map { "\n      " + $0 + " \\" } ?? "")
                  -H 'Content-Type: application/json' \\
                  -d '{"model":"openclaw","messages":[{"role":"user","content":"Hello"}]}'
              status:     ecto-tunnel status --deep
              disconnect: ecto-tunnel disconnect \(report.name)
            """)
    }
}

struct Disconnect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Stop a tunnel and keep it stopped (--purge: also remove it from the config).",
        discussion: """
            Sets enabled = false in the tunnel's table (or, with --purge, removes the table; nothing \
            else in the config is touched) and tells a running daemon to reload. When no enabled \
            tunnel is left, the daemon is stopped too: the systemd user service is disabled and \
            stopped, or a background daemon gets SIGTERM. `ecto-tunnel connect` enables it again.
            Exit status: 0 done, 1 unknown tunnel or the config cannot be written.
            """)

    @OptionGroup var global: GlobalOptions

    @Argument(help: "The tunnel's name.")
    var tunnel: String = "gateway"

    @Flag(name: .long, help: "Remove the tunnel's table from the config.")
    var purge = false

    func run() throws {
        let path = global.configPath
        guard let old = try? String(contentsOfFile: path, encoding: .utf8) else {
            printError("cannot read \(path)")
            throw ExitCode(ControlExit.refused)
        }
        let text: String
        let config: Config
        do {
            guard try ConfigLoader.parse(text: old, path: path).tunnels.contains(where: { $0.name == tunnel }) else {
                printError("no tunnel named \(tunnel) in \(path)")
                throw ExitCode(ControlExit.refused)
            }
            if purge {
                text = try ConfigEditor.removeTunnel(named: tunnel, from: old)
            } else {
                text = try ConfigEditor.setValue("__ecto_false__", forKey: "enabled", inTunnel: tunnel, in: old)
                    .replacing("\"__ecto_false__\"", with: "false")
            }
            config = try ConfigLoader.parse(text: text, path: path)
        } catch let error as ConfigErrors {
            printError("cannot edit \(path):\n\(error.description)")
            throw ExitCode(ControlExit.refused)
        }
        if text != old {
            do {
                try writeConfigFile(path, text)
            } catch {
                printError("cannot write \(path): \(error)")
                throw ExitCode(ControlExit.refused)
            }
        }
        print(purge ? "removed [tunnels.\(tunnel)] from \(path)" : "disabled [tunnels.\(tunnel)] in \(path) (enabled = false)")
        guard let version = runningDaemon(global.socketPath) else {
            print("no daemon is running")
            return
        }
        if config.tunnels.contains(where: \.enabled) {
            _ = try call(global, "POST", "/v1/reload", as: ReloadReport.self, timeout: 600)  // other changed tunnels are pre-flighted
            print("daemon (pid \(version.pid)) reloaded; its other tunnels keep running")
            return
        }
        if let systemd = serviceManaging(version.pid) {
            try systemd.run(["disable", "--now", UnitPaths.serviceName]).orFail("systemctl --user disable --now")
            print("no enabled tunnel left: stopped and disabled \(UnitPaths.serviceName)")
        } else {
            terminateAndWait(version.pid)
            print("no enabled tunnel left: stopped the daemon (pid \(version.pid))")
        }
    }
}

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Import a tunnel from ~/.ssh/config or from OpenClaw's config.",
        subcommands: [ImportSSHConfig.self, ImportOpenClaw.self])
}

/// Shared by both imports: print, and with --write add the table to the config. With
/// `refuseUnsupported` (ssh-config) anything that cannot be carried over stops it: nothing is
/// printed as a table or written, each setting is named with file:line, exit 1.
func finishImport(_ imported: TunnelImport, global: ConfigOptions, write: Bool, replace: Bool, refuseUnsupported: Bool = false) throws {
    let home = ConfigEnvironment.current.home
    if refuseUnsupported && !imported.unsupported.isEmpty {
        var message = "cannot import \(imported.source): \(imported.unsupported.count) setting\(imported.unsupported.count == 1 ? "" : "s") ecto-tunnel cannot carry over (nothing written):"
        for item in imported.unsupported { message += "\n  \(item.description(home: home))" }
        message += "\nsee docs/ssh-config.md for what each ssh option becomes"
        printError(message)
        throw ExitCode(ControlExit.refused)
    }
    print(imported.tableText(home: home))
    for note in imported.notes { print("note: \(note)") }
    if !imported.unsupported.isEmpty {
        print("cannot carry over:")
        for item in imported.unsupported { print("  \(item.description(home: home))") }
    }
    guard write else {
        print("(not written; add --write to add it to \(global.configPath))")
        return
    }
    let path = global.configPath
    let old = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    do {
        let text = try ConfigEditor.addTunnel(imported.tableText(home: home), named: imported.name, to: old, replace: replace)
        _ = try ConfigLoader.parse(text: text, path: path)
        try writeConfigFile(path, text)
    } catch let error as ConfigErrors {
        printError("not written to \(path):\n\(error.description)")
        throw ExitCode(ControlExit.refused)
    }
    print("written to \(path); apply it with: ecto-tunnel reload")
}

struct ImportSSHConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ssh-config",
        abstract: "Make a tunnel from a Host in ~/.ssh/config.",
        discussion: """
            Reads HostName, User, Port, every IdentityFile, IdentitiesOnly, CertificateFile, every \
            LocalForward (several become `forwards`, one tunnel and one SSH session), HostKeyAlias, \
            UserKnownHostsFile (the first file), ServerAliveInterval, ServerAliveCountMax, \
            ConnectTimeout, StrictHostKeyChecking accept-new, following Include (relative to ~/.ssh, \
            globs). Harmless options (AddKeysToAgent, Compression, UseKeychain, …) are ignored. \
            Anything that would make the tunnel behave differently from ssh (a Match block, \
            ProxyJump, ProxyCommand, RemoteForward, DynamicForward, LocalCommand, ControlMaster, \
            StrictHostKeyChecking no, an option it does not know, …) stops the import: nothing is \
            printed or written, and each is named with file:line. See docs/ssh-config.md.
            Prints the [tunnels.NAME] table; --write adds it to the config.
            Exit status: 0, or 1 when the host gives no usable target or forward, or has a setting \
            that cannot be carried over.
            """)

    @OptionGroup var global: ConfigOptions
    @Argument(help: "The Host alias.") var host: String
    @Option(name: .long, help: "The tunnel's name (default: the alias).") var name: String?
    @Option(name: .long, help: "Import only the LocalForward listening on this port (default: every LocalForward).") var localPort: UInt16?
    @Option(name: .long, help: ArgumentHelp("The ssh config file.", valueName: "path")) var sshConfig: String?
    @Flag(name: .long, help: "Add the table to the config file.") var write = false
    @Flag(name: .long, help: "With --write: replace a tunnel of the same name.") var replace = false

    func run() throws {
        do {
            let imported = try SSHConfigImport.importHost(
                host, name: name, forwardLocalPort: localPort, environment: .current, configPath: sshConfig)
            try finishImport(imported, global: global, write: write, replace: replace, refuseUnsupported: true)
        } catch let error as ImportError {
            printError(error.description)
            throw ExitCode(ControlExit.refused)
        }
    }
}

struct ImportOpenClaw: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "openclaw",
        abstract: "Make a tunnel from OpenClaw's remote gateway settings.",
        discussion: """
            Reads ~/.openclaw/openclaw.json (JSON5; OPENCLAW_CONFIG_PATH / OPENCLAW_STATE_DIR are \
            honoured): gateway.remote.sshTarget, sshIdentity, remotePort and the port of \
            gateway.remote.url. Tokens are never copied into the tunnel config. Prints the table; \
            --write adds it to the config.
            Exit status: 0, or 1 when the file has no usable remote settings.
            """)

    @OptionGroup var global: ConfigOptions
    @Option(name: .long, help: ArgumentHelp("The OpenClaw config file.", valueName: "path")) var file: String?
    @Option(name: .long, help: "The tunnel's name.") var name: String = "openclaw"
    @Flag(name: .long, help: "Add the table to the config file.") var write = false
    @Flag(name: .long, help: "With --write: replace a tunnel of the same name.") var replace = false

    func run() throws {
        do {
            let settings = try OpenClawImport.readSettings(path: file, environment: .current)
            let imported = try OpenClawImport.makeImport(settings, name: name, home: ConfigEnvironment.current.home)
            try finishImport(imported, global: global, write: write, replace: replace)
        } catch let error as ImportError {
            printError(error.description)
            throw ExitCode(ControlExit.refused)
        }
    }
}

/// Starts `ecto-tunnel run` detached (new session, stdin /dev/null, output to a log file).
enum BackgroundDaemon {
    static func logPath() -> String {
        let env = ProcessInfo.processInfo.environment
        let state = env["XDG_STATE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? ConfigEnvironment.current.home + "/.local/state"
        return state + "/ecto-tunnel/daemon.log"
    }

    static func start(configPath: String, socket: String) throws -> pid_t {
        let log = logPath()
        try FileManager.default.createDirectory(
            atPath: Path.directory(of: log), withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let binary = try executablePath()
        let arguments = [binary, "run", "--config", configPath, "--socket", socket]
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setflags(&attributes, Int16(0x80))  // POSIX_SPAWN_SETSID: not our terminal's session
        var pid: pid_t = 0
        let argv = arguments.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        let rc = posix_spawn(&pid, binary, &actions, &attributes, argv, environ)
        guard rc == 0 else {
            printError("cannot start the daemon: \(String(cString: strerror(rc)))")
            throw ExitCode(ControlExit.refused)
        }
        // Up when its control socket answers (or it exited: show why).
        for _ in 0..<100 {
            if runningDaemon(socket) != nil { return pid }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                let tail = (try? String(contentsOfFile: log, encoding: .utf8))?.split(separator: "\n").suffix(10).joined(separator: "\n") ?? ""
                printError("the daemon exited at once; its log (\(log)):\n\(tail)")
                throw ExitCode(ControlExit.refused)
            }
            usleep(50_000)
        }
        return pid
    }
}

/// Reads a server's host key: TCP connect, SSH handshake, no authentication.
enum HostKeyFetcher {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func fetch(host: String, port: UInt16, timeout: Duration) throws -> HostKey {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let first = result else {
            throw Failure(description: "cannot resolve \(host)")
        }
        defer { freeaddrinfo(first) }
        let fd = socket(first.pointee.ai_family, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: String(cString: strerror(errno))) }
        var tv = timeval(tv_sec: Int(timeout.components.seconds), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        guard connect(fd, first.pointee.ai_addr, first.pointee.ai_addrlen) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw Failure(description: message)
        }
        SSHLibrary.initialize()
        let session = try SSHSession(socket: fd)  // owns and closes fd
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while true {
            session.beginPass()  // the transport hook answers EAGAIN until the next pass
            if case .done = try session.handshake() { break }
            guard ContinuousClock.now < deadline else { throw Failure(description: "no SSH handshake within \(timeout)") }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN | POLLOUT), revents: 0)
            _ = poll(&pfd, 1, 100)
        }
        let key = try session.hostKey()
        _ = try? session.disconnect(reason: "host key read by ecto-tunnel connect")
        return key
    }
}

/// The daemon answering on the control socket, if any.
func runningDaemon(_ socket: String) -> VersionReport? {
    guard let answer = try? ControlClient(path: socket).request("GET", "/v1/version"),
        case .success(let version) = answer.decode(VersionReport.self)
    else { return nil }
    return version
}

/// The user manager when `pid` is its ecto-tunnel.service's main process (else nil: not ours).
func serviceManaging(_ pid: Int32) -> UserManager? {
    guard let systemd = UserManager.probe(), systemd.property("ActiveState") == "active",
        Int32(systemd.property("MainPID")) == pid
    else { return nil }
    return systemd
}

/// SIGTERM, then wait (at most 10 s) until the process is gone.
func terminateAndWait(_ pid: Int32) {
    kill(pid, SIGTERM)
    for _ in 0..<100 {
        if kill(pid, 0) != 0 { return }
        usleep(100_000)
    }
}

/// Writes the config file atomically; a new file (and its directory) is created owner-only.
func writeConfigFile(_ path: String, _ text: String) throws {
    try FileManager.default.createDirectory(
        atPath: Path.directory(of: path), withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    if !FileManager.default.fileExists(atPath: path) {
        _ = FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600])
    }
    try AtomicFile.replace(path: path, with: text)
}
