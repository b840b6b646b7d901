import ArgumentParser
import EctoConfig
import EctoControl
import EctoDaemon
import EctoHostKeys
import EctoOperator
import EctoPlatform
import EctoProbe
import EctoSSH
import EctoStatus
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
            Port, IdentityFile and UserKnownHostsFile are used; its ProxyJump or ProxyCommand \
            becomes jump or proxy_command, and its HostKeyAlias host_key_alias);
            2. key: --identity, else the alias's IdentityFile, else ~/.ssh/id_ed25519 (or \
            ~/.ssh/id_ecdsa); an ssh-agent (SSH_AUTH_SOCK) is tried first by the daemon;
            3. host key: fetched from the server and shown by fingerprint. A key already in \
            known_hosts is used; an unknown one must be confirmed (interactively, or with --yes, or \
            with --fingerprint SHA256:… for scripts) and is then added to known_hosts; a changed key, \
            or a key of a type known_hosts does not have for the host, is refused (the daemon's own \
            host key policy decides). Behind a jump host or a proxy command the key cannot be \
            fetched directly: the target's and each jump host's key must be in known_hosts already \
            (`ssh ALIAS true` once records them), else connect stops here (exit 1);
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

    @Argument(
        help: ArgumentHelp("The gateway host: [user@]host[:port] or an ~/.ssh/config alias.", valueName: "target"))
    var target: String

    @Option(name: .long, help: "The tunnel's name in the config.")
    var name: String = "gateway"

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Local port (and remote port unless --remote-port). Default: $OPENCLAW_GATEWAY_PORT or 18789.",
            valueName: "port"))
    var port: UInt16?

    @Option(name: .long, help: ArgumentHelp("The gateway's port on the remote host.", valueName: "port"))
    var remotePort: UInt16?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Private key file (ed25519, ecdsa or rsa; OpenSSH or PEM format). Default: ~/.ssh/id_ed25519, id_ecdsa, id_rsa.",
            valueName: "path"))
    var identity: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "known_hosts file. Default: ~/.ssh/known_hosts (or the alias's UserKnownHostsFile).", valueName: "path"))
    var knownHosts: String?

    @Flag(name: .long, help: "Trust the server's host key without asking (when it is not known yet).")
    var yes = false

    @Option(
        name: .long, help: ArgumentHelp("Trust the host key only if it has this fingerprint.", valueName: "SHA256:…"))
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
        let (sshTarget, aliasSettings, route) = try runOperator { _ in try ConnectWorkflow.resolveTarget(target) }
        step(
            1,
            "target \(sshTarget)\(route.summary)" + (aliasSettings != nil ? " (from ~/.ssh/config Host \(target))" : "")
        )

        // 2. Key.
        let agent = env["SSH_AUTH_SOCK"].map { !$0.isEmpty } ?? false
        let keyPath = try runOperator { _ in
            try ConnectWorkflow.pickKey(
                explicit: identity, alias: aliasSettings, agent: agent, home: home, target: sshTarget)
        }
        step(
            2,
            "key \(keyPath.map { SSHClientConfig.abbreviate($0, home: home) } ?? "none (ssh-agent only)")"
                + (agent ? "; ssh-agent keys are tried first" : ""))

        // 3. Host key.
        let knownHostsPath = SSHClientConfig.expandTilde(
            knownHosts ?? aliasSettings?.userKnownHostsFile?.value ?? "~/.ssh/known_hosts", home: home)
        let hostKeyAlias = route == .direct ? nil : aliasSettings?.hostKeyAlias?.value
        if route == .direct {
            try trustHostKey(sshTarget, knownHostsPath: knownHostsPath, home: home)
        } else {
            try requireKnownHostKeys(
                sshTarget, alias: target, hostKeyAlias: hostKeyAlias, route: route, knownHostsPath: knownHostsPath,
                home: home)
        }

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
        table += route.tomlLines
        if let hostKeyAlias { table += "host_key_alias = \(ImportedValue.string(hostKeyAlias).toml)\n" }
        if let keyPath { table += "identity_file = \"\(keyPath)\"\n" }
        table += "known_hosts = \"\(knownHostsPath)\"\nprobe = \"http:/\"\n"
        let previous = (try? String(contentsOfFile: configPath, encoding: .utf8)) ?? ""
        let changed = try runOperator { _ in try ConnectWorkflow.writeTunnel(table, name: name, to: configPath) }
        step(
            4,
            "config \(SSHClientConfig.abbreviate(configPath, home: home)): [tunnels.\(name)] \(changed ? "written" : "unchanged") (127.0.0.1:\(localPort) → 127.0.0.1:\(remote) on \(sshTarget.host))"
        )

        // 5. Daemon.
        let daemon = try runOperator { out in
            try ConnectWorkflow.ensureDaemon(
                configPath: configPath, socket: global.socketPath, socketOption: global.socket, tunnel: name,
                restart: restart,
                noSystemd: noSystemd, changed: changed, previous: previous, out: out)
        }
        switch daemon {
        case .restartedService: step(5, "daemon: restarted \(UnitPaths.serviceName)")
        case .restartedInBackground(let pid):
            step(5, "daemon: restarted in the background (pid \(pid), log \(BackgroundDaemon.logPath()))")
        case .reloaded(let pid, let applied):
            step(5, "daemon: running (pid \(pid)); " + (applied ? "reloaded" : "nothing to reload"))
        case .installed: break  // the installer said what it did
        case .refusedByPreflight(let pid, let failure):
            step(5, "daemon: running (pid \(pid)); the new settings of \(name) failed their pre-flight")
            printError(
                "\(name): not changed: \(failure.stage) failed: \(failure.error). The tunnel keeps its running settings and \(configPath) is as it was."
            )
            throw ExitCode(ControlExit.refused)
        case .startedInBackground(let pid, let noUserManager):
            step(
                5,
                "daemon: \(noUserManager ? "no systemd user manager here; " : "")started in the background (pid \(pid), log \(BackgroundDaemon.logPath()))"
            )
        }

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
            explicitToken: token, explicitPassword: password, settings: settings,
            environment: ProcessInfo.processInfo.environment)
    }

    private func step(_ n: Int, _ text: String) { print("[\(n)/6] \(text)") }

    /// Step 3 for a target behind a jump host or a proxy command: its keys must be known already
    /// (`ConnectWorkflow.missingHostKeys`); the daemon then checks them strictly, through the route.
    private func requireKnownHostKeys(
        _ sshTarget: SSHTarget, alias: String, hostKeyAlias: String?, route: ConnectWorkflow.Route,
        knownHostsPath: String, home: String
    ) throws {
        let known = (try? KnownHostsFile.load(path: knownHostsPath)) ?? KnownHostsFile(path: knownHostsPath)
        let missing = ConnectWorkflow.missingHostKeys(
            target: sshTarget, hostKeyAlias: hostKeyAlias, route: route, knownHosts: known)
        guard missing.isEmpty else {
            printError(
                """
                \(missing.joined(separator: ", ")) not in \(SSHClientConfig.abbreviate(knownHostsPath, home: home)): \
                connect reads a host key over a direct connection, which cannot reach a host behind a jump \
                host or a proxy command. Let ssh record the keys (it asks you to confirm each one), then \
                run connect again:
                  ssh \(alias) true
                """)
            throw ExitCode(ControlExit.refused)
        }
        let hops = if case .jump(let list, _) = route { list.count } else { 0 }
        step(
            3,
            "host key: \(hostKeyAlias ?? sshTarget.host)"
                + (hops > 0 ? " and \(hops) jump host\(hops == 1 ? "" : "s")" : "")
                + " found in \(SSHClientConfig.abbreviate(knownHostsPath, home: home)) (the daemon checks them strictly, through the route)"
        )
    }

    private func trustHostKey(_ sshTarget: SSHTarget, knownHostsPath: String, home: String) throws {
        let known = (try? KnownHostsFile.load(path: knownHostsPath)) ?? KnownHostsFile(path: knownHostsPath)
        let key: HostKey
        do {
            key = try HostKeyTrust.fetch(
                host: sshTarget.host, port: sshTarget.port, knownHosts: known, timeout: .seconds(10))
        } catch {
            printError("cannot reach \(sshTarget.host):\(sshTarget.port) to read its host key: \(error)")
            throw ExitCode(ControlExit.notUp)
        }
        let lookup = KnownHostsFile.lookupName(host: sshTarget.host, port: Int(sshTarget.port))
        let shownPath = SSHClientConfig.abbreviate(knownHostsPath, home: home)
        switch HostKeyTrust.decide(key: key, host: sshTarget.host, port: sshTarget.port, knownHosts: known) {
        case .known(let line):
            step(3, "host key \(key.algorithm) \(key.fingerprintSHA256), already trusted (\(shownPath):\(line))")
            return
        case .refused(.revoked(let line)):
            printError(
                "the host key of \(lookup) (\(key.fingerprintSHA256)) is marked @revoked in \(knownHostsPath):\(line); refusing"
            )
            throw ExitCode(ControlExit.refused)
        case .refused(.changed(let others, let sameType)):
            let old = others.map { "\($0.key.algorithm) \($0.key.fingerprintSHA256) (line \($0.line))" }.joined(
                separator: ", ")
            let what = sameType ? "" : " (a key type it does not have for this host; the daemon refuses it too)"
            printError(
                """
                THE HOST KEY OF \(lookup) HAS CHANGED: the server now shows \(key.algorithm) \(key.fingerprintSHA256)\(what); \
                \(knownHostsPath) has \(old).
                  This can be an attack, or a reinstalled server. Check the new fingerprint with the host's \
                administrator, then remove the old entry: ssh-keygen -R '\(lookup)' -f \(knownHostsPath)
                """)
            throw ExitCode(ControlExit.refused)
        case .pinned, .refused(.pinMismatch), .refused(.unknown):
            // connect decides without a pin and as accept-new: neither can come back.
            printError("unexpected host key decision for \(lookup); refusing")
            throw ExitCode(ControlExit.refused)
        case .recordNew:
            break
        }
        print("[3/6] host key of \(lookup): \(key.algorithm) \(key.fingerprintSHA256) (not in \(shownPath))")
        if let expected = fingerprint {
            let normalized = expected.hasPrefix("SHA256:") ? expected : "SHA256:" + expected
            guard normalized == key.fingerprintSHA256 else {
                printError("refused: the server's host key is \(key.fingerprintSHA256), not \(normalized)")
                throw ExitCode(ControlExit.refused)
            }
            print("      matches --fingerprint")
        } else if !yes {
            guard isatty(STDIN_FILENO) == 1 else {
                printError(
                    "not trusting an unknown host key without confirmation: pass --yes, or --fingerprint \(key.fingerprintSHA256) after checking it"
                )
                throw ExitCode(ControlExit.refused)
            }
            print("      Trust this key and remember it in \(shownPath)? [y/N] ", terminator: "")
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
        print("      added to \(shownPath)")
    }

    private func waitUntilUp(localPort: UInt16, credentials: GatewayCredentials) throws -> TunnelStatus {
        let deadline = ContinuousClock.now.advanced(by: .milliseconds(Int64(timeout * 1000)))
        let outcome = TunnelWait.untilUp(timeout: ContinuousClock.now.duration(to: deadline)) {
            guard
                let answer = try? ControlClient(path: global.socketPath).request(
                    "GET", "/v1/tunnels/\(pathComponent(name))"),
                case .success(let report) = answer.decode(StatusReport.self), let tunnel = report.tunnels.first
            else { return .retry }
            return .status(tunnel)
        }
        let up: TunnelStatus
        switch outcome {
        case .up(let tunnel):
            up = tunnel
        case .failed(let tunnel):
            printError("the tunnel failed: \(tunnel.lastError ?? "unknown error")")
            throw ExitCode(ControlExit.refused)
        case .disabled(let tunnel), .notUp(let tunnel?):
            printError(
                "the tunnel is not up after \(Int(timeout)) s: \(tunnel.state.rawValue), \(tunnel.lastError ?? "no error yet"); it keeps retrying (ecto-tunnel status)"
            )
            throw ExitCode(ControlExit.notUp)
        case .notUp(nil):
            printError(
                "the tunnel is not up after \(Int(timeout)) s: no answer from the daemon; it keeps retrying (ecto-tunnel status)"
            )
            throw ExitCode(ControlExit.notUp)
        }
        // The gateway, through the tunnel, with this run's token: HTTP first (does it answer at
        // all?), then the WebSocket that OpenClaw's clients use (does it take the token?).
        let result = TunnelWait.gateway(
            at: Endpoint(host: "127.0.0.1", port: localPort), token: credentials.token?.value, deadline: deadline)
        if result.tokenRefused {
            step(
                6,
                "tunnel up; the gateway answers, but \(credentials.token == nil ? "wants a token" : "refused the token") (\(result.detail))"
            )
            if let secret = credentials.token {
                printError(
                    "gateway refused the token from \(secret.source); check it (the gateway's gateway.auth.token), or pass the right one with --token"
                )
            } else {
                printError(
                    "the gateway wants a token and none was found: pass --token, set OPENCLAW_GATEWAY_TOKEN, or gateway.remote.token in ~/.openclaw/openclaw.json"
                        + (credentials.skipped.isEmpty
                            ? "" : " (skipped: \(credentials.skipped.joined(separator: "; ")))"))
            }
            throw ExitCode(ControlExit.tokenRefused)
        }
        guard result.ok else {
            step(6, "tunnel up, but the gateway does not answer through it: \(result.detail)")
            print(
                "      Is the OpenClaw gateway running on the remote host, on port \(up.remote)? (ecto-tunnel status --deep)"
            )
            throw ExitCode(ControlExit.notUp)
        }
        step(6, "tunnel up; the gateway answers (\(result.detail))")
        return up
    }

    private func printSummary(_ report: TunnelStatus, localPort: UInt16, credentials: GatewayCredentials) {
        let base = "127.0.0.1:\(localPort)"
        // The example references the token where it really comes from (a variable it can name,
        // else $TOKEN with a note); printed only with --show-token.
        var authHeader: String? = nil
        var tokenNote: String? = nil
        var tokenLine =
            "token:      none found (set OPENCLAW_GATEWAY_TOKEN, gateway.remote.token in ~/.openclaw/openclaw.json, or pass --token)"
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
        if let secret = credentials.password {
            passwordLine = "password:   \(showToken ? secret.reveal() : secret.description)"
        }
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
        let config = try runOperator { _ in try DisconnectWorkflow.edit(configPath: path, tunnel: tunnel, purge: purge)
        }
        print(
            purge
                ? "removed [tunnels.\(tunnel)] from \(path)"
                : "disabled [tunnels.\(tunnel)] in \(path) (enabled = false)")
        switch try runOperator({ _ in try DisconnectWorkflow.applyToDaemon(config, socket: global.socketPath) }) {
        case .notRunning: print("no daemon is running")
        case .reloaded(let pid): print("daemon (pid \(pid)) reloaded; its other tunnels keep running")
        case .stoppedService: print("no enabled tunnel left: stopped and disabled \(UnitPaths.serviceName)")
        case .stoppedInBackground(let pid): print("no enabled tunnel left: stopped the daemon (pid \(pid))")
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
func finishImport(
    _ imported: TunnelImport, global: ConfigOptions, write: Bool, replace: Bool, refuseUnsupported: Bool = false
) throws {
    let home = ConfigEnvironment.current.home
    if refuseUnsupported && !imported.unsupported.isEmpty {
        var message =
            "cannot import \(imported.source): \(imported.unsupported.count) setting\(imported.unsupported.count == 1 ? "" : "s") ecto-tunnel cannot carry over (nothing written):"
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
    try runOperator { _ in try ImportWorkflow.write(imported, configPath: path, replace: replace, home: home) }
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
            ConnectTimeout, StrictHostKeyChecking accept-new, ProxyJump (as jump, each hop through \
            its own Host block) or ProxyCommand (as proxy_command), following Include (relative to \
            ~/.ssh, globs). Harmless options (AddKeysToAgent, Compression, UseKeychain, …) are ignored. \
            Anything that would make the tunnel behave differently from ssh (a Match block, \
            RemoteForward, DynamicForward, LocalCommand, ControlMaster, StrictHostKeyChecking no, an \
            option it does not know, …) stops the import: nothing is printed or written, and each is \
            named with file:line. See docs/ssh-config.md.
            Prints the [tunnels.NAME] table; --write adds it to the config.
            Exit status: 0, or 1 when the host gives no usable target or forward, or has a setting \
            that cannot be carried over.
            """)

    @OptionGroup var global: ConfigOptions
    @Argument(help: "The Host alias.") var host: String
    @Option(name: .long, help: "The tunnel's name (default: the alias).") var name: String?
    @Option(name: .long, help: "Import only the LocalForward listening on this port (default: every LocalForward).")
    var localPort: UInt16?
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

/// Runs an operator workflow: its progress printed on stdout, its failure on stderr with its exit
/// status.
func runOperator<T>(_ body: (Output) throws -> T) throws -> T {
    do {
        return try body(Output { print($0) })
    } catch let failure as OperatorFailure {
        printError(failure.message)
        throw ExitCode(failure.exitCode)
    }
}
