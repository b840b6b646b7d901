/// `ecto-tunnel import ssh-config HOST`: turns what `~/.ssh/config` says about one Host alias into a
/// tunnel table, the way ssh itself would read it (`SSHClientConfig.resolve`: Include, wildcards,
/// first value wins, IdentityFile/CertificateFile/LocalForward accumulate). See docs/ssh-config.md.
///
/// | ssh keyword | tunnel key |
/// | --- | --- |
/// | `HostName`, `User`, `Port` | `target = "user@host:port"` (the alias itself when there is no HostName) |
/// | `LocalForward [bind:]port host:hostport` | one: `local` (127.0.0.1 without bind) + `remote`; several: `forwards` |
/// | `IdentityFile` (every one, in order) | `identity_file` (a list when several) |
/// | `IdentitiesOnly yes` | `identities_only = true` |
/// | `CertificateFile` (one) | `certificate_file` |
/// | `HostKeyAlias` | `host_key_alias` |
/// | `UserKnownHostsFile` (the first path) | `known_hosts` |
/// | `ServerAliveInterval` / `ServerAliveCountMax` | `keepalive_interval` / `keepalive_count_max` |
/// | `ConnectTimeout` | `connect_timeout` |
/// | `StrictHostKeyChecking accept-new` | `host_key_policy = "accept-new"` (`yes`/`ask`: the default, strict) |
///
/// | `ProxyJump a,b` (or `ProxyCommand`, whichever comes first; `none`: neither) | `jump = ["a", "b"]` (each alias's HostName, User, Port applied) / `proxy_command` |
///
/// What cannot be carried (a `Match` block, `StrictHostKeyChecking no`, `RemoteForward`, the
/// settings of `cannotCarryOver`, a value of `refusedUnless` other than the harmless one, a keyword
/// the import does not know) is an `UnsupportedSetting` with its file and line, and the CLI then
/// writes nothing and exits 1. `ignored` lists the harmless ones and why.
public enum SSHConfigImport {
    /// The port local and remote get when the alias has no `LocalForward`: OpenClaw's gateway port.
    public static let defaultForwardPort: UInt16 = 18789

    /// Imports the Host `alias`.
    ///
    /// - Parameters:
    ///   - name: the tunnel name; default: the alias (characters other than `A-Z a-z 0-9 _ -` become `-`).
    ///   - forwardLocalPort: import only the `LocalForward` listening on this port (as `local`/`remote`).
    ///     Default: every LocalForward. Throws when no LocalForward listens on it.
    ///   - configPath: default `~/.ssh/config`.
    /// - Throws: `ImportError` when the alias gives no usable host, port, user or forward.
    public static func importHost(
        _ alias: String, name: String? = nil, forwardLocalPort: UInt16? = nil,
        environment: ConfigEnvironment, configPath: String? = nil
    ) throws(ImportError) -> TunnelImport {
        let path = configPath ?? SSHClientConfig.defaultPath(environment: environment)
        guard environment.readFile(path) != nil else {
            throw ImportError("\(SSHClientConfig.abbreviate(path, home: environment.home)) cannot be read")
        }
        let settings = SSHClientConfig.resolve(host: alias, environment: environment, configPath: path)
        return try makeImport(
            alias: alias, settings: settings, name: name, forwardLocalPort: forwardLocalPort, environment: environment,
            configPath: path)
    }

    /// The same, from settings already resolved (for tests and callers that resolved them already).
    public static func makeImport(
        alias: String, settings s: SSHHostSettings, name: String? = nil, forwardLocalPort: UInt16? = nil,
        environment: ConfigEnvironment, configPath: String
    ) throws(ImportError) -> TunnelImport {
        let home = environment.home
        func loc(_ v: SSHConfigValue) -> SettingLocation { SettingLocation(file: v.file, line: v.line) }
        var keys: [ImportedKey] = []
        var unsupported: [UnsupportedSetting] = []
        var notes: [String] = []
        let shownPath = SSHClientConfig.abbreviate(configPath, home: home)
        func refuse(_ v: SSHConfigValue, _ setting: String, _ reason: String) {
            unsupported.append(UnsupportedSetting(setting: setting, value: v.value, location: loc(v), reason: reason))
        }

        let nothing =
            s.hostName == nil && s.user == nil && s.port == nil && s.identityFiles.isEmpty
            && s.userKnownHostsFiles.isEmpty && s.localForwards.isEmpty && s.serverAliveInterval == nil
            && s.serverAliveCountMax == nil && s.strictHostKeyChecking == nil && s.connectTimeout == nil
            && s.certificateFiles.isEmpty && s.identitiesOnly == nil && s.hostKeyAlias == nil
            && s.otherDirectives.isEmpty
        if nothing {
            throw ImportError("no Host block in \(shownPath) applies to \"\(alias)\"")
        }

        // target
        let host = s.hostName?.value ?? alias
        do {
            try HostSyntax.validateHost(host)
        } catch {
            throw ImportError(
                s.hostName == nil
                    ? "\"\(alias)\" has no HostName and is not a valid host name: \(error.message)"
                    : "HostName \"\(host)\" is not a valid host: \(error.message)",
                at: s.hostName.map(loc))
        }
        var port: UInt16 = 22
        if let p = s.port {
            do { port = try HostSyntax.parsePort(p.value) } catch {
                throw ImportError("Port \"\(p.value)\" is not valid: \(error.message)", at: loc(p))
            }
        }
        let user = s.user?.value ?? environment.user
        if user.isEmpty || user.contains("@") || user.contains(where: { $0 == " " || $0 == "\t" }) {
            throw ImportError("User \"\(user)\" is not a valid user name", at: s.user.map(loc))
        }
        let target = SSHTarget(user: user, host: host, port: port)
        keys.append(ImportedKey(key: "target", value: .string(target.description), origin: s.hostName.map(loc)))
        if s.user == nil { notes.append("no User for \"\(alias)\": the target uses your login name \(user)") }

        // local / remote, or forwards
        var forwards: [(forward: Forward, origin: SSHConfigValue)] = []
        for f in s.localForwards {
            do {
                let (l, r) = try parseLocalForward(f.value)
                if let clash = forwards.first(where: {
                    $0.forward.local.port == l.port && HostSyntax.overlaps($0.forward.local.host, l.host)
                }) {
                    refuse(
                        f, "LocalForward",
                        "listens on \(l), which overlaps the LocalForward at \(loc(clash.origin).abbreviated(home: home)) (ssh would fail to bind it too)"
                    )
                    continue
                }
                forwards.append((Forward(local: l, remote: r), f))
            } catch {
                refuse(f, "LocalForward", error.message)
            }
        }
        if let want = forwardLocalPort {
            guard let match = forwards.first(where: { $0.forward.local.port == want }) else {
                let have = forwards.map { "\($0.forward.local.port)" }.joined(separator: ", ")
                throw ImportError(
                    "no LocalForward of \"\(alias)\" listens on port \(want)"
                        + (have.isEmpty ? "" : " (its LocalForward ports: \(have))"))
            }
            for other in forwards where other.origin != match.origin {
                notes.append(
                    "LocalForward \(other.origin.value) at \(loc(other.origin).abbreviated(home: home)) not imported (--local-port \(want) chose one)"
                )
            }
            forwards = [match]
        }
        if forwards.count == 1 {
            let only = forwards[0]
            keys.append(
                ImportedKey(key: "local", value: .string(only.forward.local.description), origin: loc(only.origin)))
            keys.append(
                ImportedKey(key: "remote", value: .string(only.forward.remote.description), origin: loc(only.origin)))
        } else if forwards.count > 1 {
            if forwards.count > Forward.maximumPerTunnel {
                throw ImportError(
                    "\"\(alias)\" has \(forwards.count) LocalForward lines: a tunnel carries at most \(Forward.maximumPerTunnel)"
                )
            }
            keys.append(
                ImportedKey(
                    key: "forwards", value: .strings(forwards.map(\.forward.description)),
                    origin: loc(forwards[0].origin)))
        } else if s.localForwards.isEmpty {
            let ep = Endpoint(host: "127.0.0.1", port: defaultForwardPort)
            keys.append(ImportedKey(key: "local", value: .string(ep.description)))
            keys.append(ImportedKey(key: "remote", value: .string(ep.description)))
            notes.append("\"\(alias)\" has no LocalForward: using the OpenClaw gateway's port, local = remote = \(ep)")
        }
        if let open = forwards.first(where: { !$0.forward.local.isLoopback }) {
            keys.append(ImportedKey(key: "allow_non_loopback", value: .bool(true), origin: loc(open.origin)))
            notes.append(
                "LocalForward at \(loc(open.origin).abbreviated(home: home)) listens on \(open.forward.local.host), not loopback: allow_non_loopback = true makes the tunnel reachable from other machines"
            )
        }

        // keys and certificates
        if !s.identityFiles.isEmpty {
            let paths = s.identityFiles.map(\.value).reduce(into: [String]()) { if !$0.contains($1) { $0.append($1) } }
            keys.append(
                ImportedKey(
                    key: "identity_file", value: paths.count == 1 ? .string(paths[0]) : .strings(paths),
                    origin: loc(s.identityFiles[0])))
            for p in paths where environment.fileExists(p) != .regular {
                notes.append("IdentityFile \(SSHClientConfig.abbreviate(p, home: home)) does not exist (yet)")
            }
        }
        if let v = s.identitiesOnly {
            switch v.value.lowercased() {
            case "yes", "true": keys.append(ImportedKey(key: "identities_only", value: .bool(true), origin: loc(v)))
            case "no", "false": break  // the default
            default: refuse(v, "IdentitiesOnly", "expected yes or no")
            }
        }
        if let first = s.certificateFiles.first {
            keys.append(ImportedKey(key: "certificate_file", value: .string(first.value), origin: loc(first)))
            for other in s.certificateFiles.dropFirst() where other.value != first.value {
                refuse(
                    other, "CertificateFile",
                    "a second certificate: certificate_file takes one (keep the one for the key the server accepts)")
            }
        }

        // host keys
        if let v = s.hostKeyAlias {
            keys.append(ImportedKey(key: "host_key_alias", value: .string(v.value), origin: loc(v)))
        }
        if let first = s.userKnownHostsFiles.first {
            keys.append(ImportedKey(key: "known_hosts", value: .string(first.value), origin: loc(first)))
            let others = s.userKnownHostsFiles.dropFirst().map { SSHClientConfig.abbreviate($0.value, home: home) }
            if !others.isEmpty {
                notes.append(
                    "UserKnownHostsFile at \(loc(first).abbreviated(home: home)) lists \(s.userKnownHostsFiles.count) files: only the first is read (ecto-tunnel checks and records host keys in one file); if \(others.joined(separator: ", ")) hold\(others.count == 1 ? "s" : "") this host's key, append it to \(SSHClientConfig.abbreviate(first.value, home: home))"
                )
            }
        }
        if let v = s.strictHostKeyChecking {
            switch v.value.lowercased() {
            case "accept-new":
                keys.append(
                    ImportedKey(
                        key: "host_key_policy", value: .string(HostKeyPolicy.acceptNew.rawValue), origin: loc(v)))
            case "yes", "ask", "true":
                break  // strict is the default
            case "no", "off", "false":
                refuse(
                    v, "StrictHostKeyChecking",
                    "ecto-tunnel never turns host key checking off: add the key with ssh-keyscan (or let `ecto-tunnel connect` do it), or set host_key_policy = \"accept-new\" to record it on first connect, then drop this line for the host"
                )
            default:
                refuse(v, "StrictHostKeyChecking", "unknown value")
            }
        }

        // keepalives and timeouts
        if let v = s.serverAliveInterval {
            if let n = Int(v.value), n >= 0 {
                keys.append(ImportedKey(key: "keepalive_interval", value: .integer(n), origin: loc(v)))
                if n == 0 {
                    notes.append("ServerAliveInterval 0 disables keepalives; ecto-tunnel's default would be 15 s")
                }
            } else {
                refuse(v, "ServerAliveInterval", "not a number of seconds")
            }
        }
        if let v = s.serverAliveCountMax {
            if let n = Int(v.value), n >= 1 {
                keys.append(ImportedKey(key: "keepalive_count_max", value: .integer(n), origin: loc(v)))
            } else {
                refuse(v, "ServerAliveCountMax", "must be an integer ≥ 1")
            }
        }
        if let v = s.connectTimeout {
            if let n = Int(v.value), n >= 1 {
                keys.append(ImportedKey(key: "connect_timeout", value: .integer(n), origin: loc(v)))
            } else {
                refuse(v, "ConnectTimeout", "must be a number of seconds ≥ 1")
            }
        }

        // jump hosts or a proxy command (the first of the two wins, as in ssh)
        switch route(s, environment: environment, configPath: configPath) {
        case .none, .turnedOff:
            break
        case .jump(let hops, let origin):
            keys.append(ImportedKey(key: "jump", value: .strings(hops.map(\.description)), origin: origin))
        case .proxyCommand(let command, let origin):
            keys.append(ImportedKey(key: "proxy_command", value: .string(command), origin: origin))
        case .unusable(let setting, let value, let origin, let reason):
            unsupported.append(UnsupportedSetting(setting: setting, value: value, location: origin, reason: reason))
        }

        // everything else
        for d in s.otherDirectives {
            let k = d.keyword.lowercased()
            if k == "proxyjump" || k == "proxycommand" { continue }  // above
            let value = d.arguments.joined(separator: " ")
            let location = SettingLocation(file: d.file, line: d.line)
            if let reason = cannotCarryOver[k] {
                unsupported.append(
                    UnsupportedSetting(setting: d.keyword, value: value, location: location, reason: reason))
            } else if let rule = refusedUnless[k] {
                if !rule.harmless.contains(value.lowercased()) {
                    unsupported.append(
                        UnsupportedSetting(setting: d.keyword, value: value, location: location, reason: rule.reason))
                }
            } else if ignored[k] == nil {
                unsupported.append(
                    UnsupportedSetting(
                        setting: d.keyword, value: value, location: location,
                        reason:
                            "not known to ecto-tunnel's import, so it cannot tell whether the tunnel would behave as ssh does; remove it for this host (or move it to a Host block that does not match) and import again"
                    ))
            }
        }
        for m in s.skippedMatchBlocks {
            refuse(
                m, "Match",
                "Match blocks are not evaluated, so what ssh would apply here is unknown; move its settings into Host blocks (or out of the files read for this host) and import again"
            )
        }
        for p in s.problems {
            refuse(p, "(syntax)", p.value)
        }
        let fileOrder = Dictionary(
            s.filesRead.enumerated().map { ($0.element, $0.offset) }, uniquingKeysWith: { a, _ in a })
        unsupported = unsupported.enumerated()
            .sorted {
                (fileOrder[$0.element.location.file] ?? Int.max, $0.element.location.line, $0.offset)
                    < (fileOrder[$1.element.location.file] ?? Int.max, $1.element.location.line, $1.offset)
            }
            .map(\.element)

        let tunnelName = name ?? TunnelImport.sanitizedName(alias)
        return TunnelImport(
            name: tunnelName, source: "Host \(alias) in \(shownPath)", keys: keys, unsupported: unsupported,
            notes: notes)
    }

    /// Parses a `LocalForward` value: `[bind_address:]port host:hostport`, with IPv6 in brackets or the
    /// `bind/port host/hostport` form. A bind address of `*` or empty (all interfaces) gives `0.0.0.0`;
    /// no bind address gives `127.0.0.1` (ssh's default with `GatewayPorts no`). Unix socket paths
    /// are refused.
    public static func parseLocalForward(_ value: String) throws(ImportError) -> (local: Endpoint, remote: Endpoint) {
        let parts = value.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard parts.count == 2 else {
            throw ImportError("expected \"[bind_address:]port host:hostport\"")
        }
        if parts[0].contains("/") && !parts[0].hasPrefix("/") || parts[1].contains("/") && !parts[1].hasPrefix("/") {
            // The "host/port" spelling ssh accepts for IPv6.
            return try parseLocalForward(parts.map { $0.replacingSlashWithColon() }.joined(separator: " "))
        }
        if parts[0].hasPrefix("/") || parts[1].hasPrefix("/") {
            throw ImportError("Unix domain socket forwards are not supported; ecto-tunnel forwards TCP ports")
        }
        // Local side.
        let local: Endpoint
        let l = parts[0]
        if l.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) {
            do { local = Endpoint(host: "127.0.0.1", port: try HostSyntax.parsePort(l)) } catch {
                throw ImportError("local port \"\(l)\": \(error.message)")
            }
        } else if l.hasPrefix("*:") || l.hasPrefix(":") {
            let p = String(l[l.index(after: l.firstIndex(of: ":")!)...])
            do { local = Endpoint(host: "0.0.0.0", port: try HostSyntax.parsePort(p)) } catch {
                throw ImportError("local port \"\(p)\": \(error.message)")
            }
        } else {
            do { local = try Endpoint.parse(l) } catch {
                throw ImportError("local address \"\(l)\": \(error.message)")
            }
        }
        let remote: Endpoint
        do { remote = try Endpoint.parse(parts[1]) } catch {
            throw ImportError("remote address \"\(parts[1])\": \(error.message)")
        }
        return (local, remote)
    }

    /// How ssh would reach the host besides connecting to it: `ProxyJump` or `ProxyCommand`,
    /// whichever comes first (ssh ignores the later one), `none` for neither.
    public enum Route: Equatable, Sendable {
        /// Neither keyword applies.
        case none
        /// `ProxyJump none` or `ProxyCommand none`: explicitly direct (beats `[defaults]`).
        case turnedOff
        /// Each hop with its Host block's HostName, User and Port applied, as ssh does.
        case jump([SSHTarget], origin: SettingLocation)
        case proxyCommand(String, origin: SettingLocation)
        case unusable(setting: String, value: String, origin: SettingLocation, reason: String)
    }

    /// The route of resolved settings (`import ssh-config`, and `ssh_host` aliases in the loader).
    /// `configPath`: the ssh config the hops' Host blocks are read from (default `~/.ssh/config`).
    public static func route(_ s: SSHHostSettings, environment: ConfigEnvironment, configPath: String? = nil) -> Route {
        guard
            let d = s.otherDirectives.first(where: {
                let k = $0.keyword.lowercased()
                return k == "proxyjump" || k == "proxycommand"
            })
        else { return .none }
        let origin = SettingLocation(file: d.file, line: d.line)
        let value = d.arguments.joined(separator: " ")
        if value.lowercased() == "none" { return .turnedOff }
        if d.keyword.lowercased() == "proxycommand" {
            if let problem = ProxyCommandLine.problem(value) {
                return .unusable(
                    setting: d.keyword, value: value, origin: origin, reason: "cannot be carried over: \(problem)")
            }
            return .proxyCommand(value, origin: origin)
        }
        var hops: [SSHTarget] = []
        for piece in value.split(separator: ",") {
            let item = String(
                piece.drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" })
                    .reversed())
            var text = item
            if text.hasPrefix("ssh://") { text.removeFirst(6) }
            guard var hop = try? SSHTarget.parse(text) else {
                return .unusable(
                    setting: d.keyword, value: value, origin: origin, reason: "\"\(item)\" is not [user@]host[:port]")
            }
            // A hop named by a Host alias gets that block's HostName, User and Port, as in ssh.
            let alias = SSHClientConfig.resolve(
                host: hop.host, environment: environment,
                configPath: configPath ?? SSHClientConfig.defaultPath(environment: environment))
            let hostPart = text.split(separator: "@").last.map(String.init) ?? text
            let explicitPort = hostPart.hasPrefix("[") ? hostPart.contains("]:") : hostPart.contains(":")
            if let name = alias.hostName?.value { hop.host = name }
            if hop.user == nil, let user = alias.user?.value { hop.user = user }
            if !explicitPort, let p = alias.port, let port = try? HostSyntax.parsePort(p.value) { hop.port = port }
            hops.append(hop)
        }
        if hops.isEmpty || hops.count > TunnelDefaults.maxJumpHosts {
            return .unusable(
                setting: d.keyword, value: value, origin: origin,
                reason: "between 1 and \(TunnelDefaults.maxJumpHosts) jump hosts are supported")
        }
        return .jump(hops, origin: origin)
    }

    /// ssh settings a tunnel would need but ecto-tunnel cannot reproduce (lowercased keyword → why).
    /// Any of them makes the import refuse (exit 1, nothing written).
    public static let cannotCarryOver: [String: String] = [
        "remoteforward": "remote forwards (-R) are not supported: ecto-tunnel makes LocalForward tunnels only",
        "dynamicforward": "SOCKS forwards (-D) are not supported: ecto-tunnel makes LocalForward tunnels only",
        "localcommand": "local commands are not run",
        "identityagent":
            "not supported: the agent is always $SSH_AUTH_SOCK (set it for the service, see docs/troubleshooting.md)",
        "pkcs11provider": "PKCS#11 keys are not supported: use a key file or the agent",
        "securitykeyprovider": "security keys are not supported directly: use the agent",
        "globalknownhostsfile": "not read: only known_hosts (UserKnownHostsFile) is checked",
        "bindaddress": "the source address of the SSH connection cannot be chosen",
        "bindinterface": "the source interface of the SSH connection cannot be chosen",
        "addressfamily": "not supported: every address of the host is tried",
        "ciphers": "algorithms are libssh2's defaults and cannot be configured",
        "macs": "algorithms are libssh2's defaults and cannot be configured",
        "kexalgorithms": "algorithms are libssh2's defaults and cannot be configured",
        "hostkeyalgorithms": "algorithms are libssh2's defaults and cannot be configured",
        "pubkeyacceptedalgorithms": "algorithms are libssh2's defaults and cannot be configured",
        "pubkeyacceptedkeytypes": "algorithms are libssh2's defaults and cannot be configured",
        "casignaturealgorithms": "algorithms are libssh2's defaults and cannot be configured",
        "tunnel": "tun/tap forwarding is not supported",
        "tunneldevice": "tun/tap forwarding is not supported",
        "knownhostscommand": "known_hosts comes from a file only (known_hosts)",
        "revokedhostkeys": "a separate revocation file is not read: mark keys @revoked in known_hosts instead",
        "verifyhostkeydns": "SSHFP lookups are not done: the key must be in known_hosts",
    ]

    /// Settings that are harmless with one value and change the connection with any other
    /// (lowercased keyword → harmless values, and why the others cannot be carried).
    public static let refusedUnless: [String: (harmless: Set<String>, reason: String)] = [
        "permitlocalcommand": (["no"], "local commands are not run"),
        "controlmaster": (["no"], "connection sharing is not used: the daemon holds its own session"),
        "gatewayports": (
            ["no"], "use a non-loopback bind address in the forward and allow_non_loopback = true instead"
        ),
        "canonicalizehostname": (["no"], "host names are used as written"),
        "clearallforwardings": (["no"], "the import would carry forwards that ssh clears"),
        "forwardagent": (["no"], "agent forwarding is not offered: no session channel is opened"),
        "forwardx11": (["no"], "X11 forwarding is not offered: no session channel is opened"),
    ]

    /// ssh settings that do not change a forwarding-only session (lowercased keyword → why they
    /// are ignored), listed in docs/ssh-config.md.
    public static let ignored: [String: String] = [
        "addkeystoagent": "keys are used, never added to an agent",
        "exitonforwardfailure": "a forward that cannot listen is retried and shown per forward in status",
        "usekeychain": "macOS keychain option; passphrases come from identity_passphrase_file or a credential",
        "ignoreunknown": "only tells ssh which keywords to skip",
        "batchmode": "the daemon never prompts anyway",
        "checkhostip": "host keys are checked under the host name (or host_key_alias)",
        "compression": "libssh2 does not compress; it changes speed, not what is forwarded",
        "connectionattempts": "the daemon retries with its own backoff (backoff_initial, backoff_max)",
        "escapechar": "no terminal session",
        "forwardx11trusted": "no session channel is opened",
        "forwardx11timeout": "no session channel is opened",
        "hashknownhosts": "hashed and plain known_hosts entries are both read; new ones are written plain",
        "loglevel": "the daemon has its own --log-level",
        "nohostauthenticationforlocalhost": "host keys are always checked",
        "numberofpasswordprompts": "no prompts",
        "preferredauthentications": "only public key authentication is used",
        "pubkeyauthentication": "only public key authentication is used",
        "passwordauthentication":
            "only public key authentication is used (a host that needs a password fails `check`/`connect`)",
        "kbdinteractiveauthentication": "only public key authentication is used",
        "challengeresponseauthentication": "only public key authentication is used",
        "gssapiauthentication": "only public key authentication is used",
        "gssapidelegatecredentials": "only public key authentication is used",
        "hostbasedauthentication": "only public key authentication is used",
        "enablesshkeysign": "only public key authentication is used",
        "remotecommand": "no command runs (like ssh -N)",
        "requesttty": "no terminal session (like ssh -N)",
        "sessiontype": "no session (like ssh -N)",
        "stdinnull": "no session (like ssh -N)",
        "forkafterauthentication": "the daemon stays in the foreground under systemd",
        "sendenv": "no session, no environment sent",
        "setenv": "no session, no environment sent",
        "tcpkeepalive": "the daemon always sets TCP keepalives on the SSH socket",
        "updatehostkeys": "known_hosts is only changed by accept-new or `ecto-tunnel connect`",
        "visualhostkey": "no terminal",
        "xauthlocation": "no X11",
        "fingerprinthash": "fingerprints are always SHA256",
        "logverbose": "the daemon has its own --log-level",
        "syslogfacility": "the daemon logs to stderr / the journal",
        "obscurekeystroketiming": "no terminal session",
        "requiredrsasize": "RSA keys are judged by ecto-tunnel's own rules",
        "streamlocalbindmask": "no Unix socket forwards",
        "streamlocalbindunlink": "no Unix socket forwards",
        "ipqos": "the kernel's defaults are used",
        "rekeylimit": "libssh2's rekeying defaults are used",
        "controlpath": "only used with ControlMaster, which is refused unless no",
        "controlpersist": "only used with ControlMaster, which is refused unless no",
        "identitiesonly": "carried as identities_only",
        "serveralivecountmax": "carried as keepalive_count_max",
    ]
}

extension String {
    /// `::1/8080` → `[::1]:8080`, `host/80` → `host:80` (ssh's slash spelling of forwards).
    fileprivate func replacingSlashWithColon() -> String {
        guard let slash = lastIndex(of: "/") else { return self }
        let host = String(self[..<slash])
        let port = String(self[index(after: slash)...])
        if host.contains(":") && !host.hasPrefix("[") { return "[\(host)]:\(port)" }
        return host.isEmpty ? port : "\(host):\(port)"
    }
}
