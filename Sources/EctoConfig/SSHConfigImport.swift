/// `ecto-tunnel import ssh-config HOST`: turns what `~/.ssh/config` says about one Host alias into a
/// tunnel table, the way ssh itself would read it (`SSHClientConfig.resolve`: Include, wildcards,
/// first value wins).
///
/// | ssh keyword | tunnel key |
/// | --- | --- |
/// | `HostName`, `User`, `Port` | `target = "user@host:port"` (the alias itself when there is no HostName) |
/// | `LocalForward [bind:]port host:hostport` | `local = "bind:port"` (127.0.0.1 without bind), `remote = "host:hostport"` |
/// | `IdentityFile` (the first) | `identity_file` |
/// | `UserKnownHostsFile` (the first) | `known_hosts` |
/// | `ServerAliveInterval` | `keepalive_interval` |
/// | `ServerAliveCountMax` | `keepalive_count_max` |
/// | `ConnectTimeout` | `connect_timeout` |
/// | `StrictHostKeyChecking accept-new` | `host_key_policy = "accept-new"` (`yes`/`ask`: the default, strict) |
///
/// | `ProxyJump a,b` (or `ProxyCommand`, whichever comes first; `none`: neither) | `jump = ["a", "b"]` (each alias's HostName, User, Port applied) / `proxy_command` |
///
/// `StrictHostKeyChecking no`/`off` is not carried over (ecto-tunnel never turns host key checks
/// off), nor are `CertificateFile` and the other settings listed in
/// `cannotCarryOver`: each is reported as an `UnsupportedSetting` with its file and line.
public enum SSHConfigImport {
    /// The port local and remote get when the alias has no `LocalForward`: OpenClaw's gateway port.
    public static let defaultForwardPort: UInt16 = 18789

    /// Imports the Host `alias`.
    ///
    /// - Parameters:
    ///   - name: the tunnel name; default: the alias (characters other than `A-Z a-z 0-9 _ -` become `-`).
    ///   - forwardLocalPort: which `LocalForward` to import when there are several: the one listening on
    ///     this port. Default: the first. Throws when no LocalForward listens on it.
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

        let nothing = s.hostName == nil && s.user == nil && s.port == nil && s.identityFile == nil
            && s.userKnownHostsFile == nil && s.localForwards.isEmpty && s.serverAliveInterval == nil
            && s.serverAliveCountMax == nil && s.strictHostKeyChecking == nil && s.connectTimeout == nil
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

        // local / remote
        var forwards: [(local: Endpoint, remote: Endpoint, origin: SSHConfigValue)] = []
        for f in s.localForwards {
            do {
                let (l, r) = try parseLocalForward(f.value)
                forwards.append((l, r, f))
            } catch {
                unsupported.append(
                    UnsupportedSetting(setting: "LocalForward", value: f.value, location: loc(f), reason: error.message))
            }
        }
        var chosen: (local: Endpoint, remote: Endpoint, origin: SSHConfigValue)?
        if let want = forwardLocalPort {
            guard let match = forwards.first(where: { $0.local.port == want }) else {
                let have = forwards.map { "\($0.local.port)" }.joined(separator: ", ")
                throw ImportError(
                    "no LocalForward of \"\(alias)\" listens on port \(want)"
                        + (have.isEmpty ? "" : " (its LocalForward ports: \(have))"))
            }
            chosen = match
        } else {
            chosen = forwards.first
        }
        if let chosen {
            keys.append(ImportedKey(key: "local", value: .string(chosen.local.description), origin: loc(chosen.origin)))
            keys.append(ImportedKey(key: "remote", value: .string(chosen.remote.description), origin: loc(chosen.origin)))
            if !chosen.local.isLoopback {
                keys.append(ImportedKey(key: "allow_non_loopback", value: .bool(true), origin: loc(chosen.origin)))
                notes.append(
                    "LocalForward at \(loc(chosen.origin).abbreviated(home: home)) listens on \(chosen.local.host), not loopback: allow_non_loopback = true makes the tunnel reachable from other machines")
            }
            for other in forwards where other.origin != chosen.origin {
                notes.append(
                    "LocalForward \(other.origin.value) at \(loc(other.origin).abbreviated(home: home)) not imported (one forward per tunnel): import it again with the forward's local port \(other.local.port) and another name")
            }
        } else {
            let ep = Endpoint(host: "127.0.0.1", port: defaultForwardPort)
            keys.append(ImportedKey(key: "local", value: .string(ep.description)))
            keys.append(ImportedKey(key: "remote", value: .string(ep.description)))
            notes.append("\"\(alias)\" has no usable LocalForward: using the OpenClaw gateway's port, local = remote = \(ep)")
        }

        // files
        if let id = s.identityFile {
            keys.append(ImportedKey(key: "identity_file", value: .string(id.value), origin: loc(id)))
            if environment.fileExists(id.value) != .regular {
                notes.append("IdentityFile \(SSHClientConfig.abbreviate(id.value, home: home)) does not exist (yet)")
            }
        }
        if let kh = s.userKnownHostsFile {
            keys.append(ImportedKey(key: "known_hosts", value: .string(kh.value), origin: loc(kh)))
        }

        // keepalives and timeouts
        if let v = s.serverAliveInterval {
            if let n = Int(v.value), n >= 0 {
                keys.append(ImportedKey(key: "keepalive_interval", value: .integer(n), origin: loc(v)))
                if n == 0 { notes.append("ServerAliveInterval 0 disables keepalives; ecto-tunnel's default would be 15 s") }
            } else {
                unsupported.append(
                    UnsupportedSetting(
                        setting: "ServerAliveInterval", value: v.value, location: loc(v), reason: "not a number of seconds"))
            }
        }
        if let v = s.serverAliveCountMax {
            if let n = Int(v.value), n >= 1 {
                keys.append(ImportedKey(key: "keepalive_count_max", value: .integer(n), origin: loc(v)))
            } else {
                unsupported.append(
                    UnsupportedSetting(
                        setting: "ServerAliveCountMax", value: v.value, location: loc(v), reason: "must be an integer ≥ 1"))
            }
        }
        if let v = s.connectTimeout {
            if let n = Int(v.value), n >= 1 {
                keys.append(ImportedKey(key: "connect_timeout", value: .integer(n), origin: loc(v)))
            } else {
                unsupported.append(
                    UnsupportedSetting(
                        setting: "ConnectTimeout", value: v.value, location: loc(v), reason: "must be a number of seconds ≥ 1"))
            }
        }

        // host keys
        if let v = s.strictHostKeyChecking {
            switch v.value.lowercased() {
            case "accept-new":
                keys.append(ImportedKey(key: "host_key_policy", value: .string(HostKeyPolicy.acceptNew.rawValue), origin: loc(v)))
            case "yes", "ask", "true":
                break  // strict is the default
            case "no", "off", "false":
                unsupported.append(
                    UnsupportedSetting(
                        setting: "StrictHostKeyChecking", value: v.value, location: loc(v),
                        reason:
                            "ecto-tunnel never turns host key checking off; the tunnel stays strict: add the key with ssh-keyscan, or set host_key_policy = \"accept-new\" to record it on first connect"
                    ))
            default:
                unsupported.append(
                    UnsupportedSetting(
                        setting: "StrictHostKeyChecking", value: v.value, location: loc(v),
                        reason: "unknown value; the tunnel stays strict"))
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
            if let reason = cannotCarryOver[k] {
                unsupported.append(
                    UnsupportedSetting(
                        setting: d.keyword, value: d.arguments.joined(separator: " "),
                        location: SettingLocation(file: d.file, line: d.line), reason: reason))
            } else if !irrelevant.contains(k) {
                unsupported.append(
                    UnsupportedSetting(
                        setting: d.keyword, value: d.arguments.joined(separator: " "),
                        location: SettingLocation(file: d.file, line: d.line),
                        reason: "not understood by ecto-tunnel's import; check whether the tunnel needs it"))
            }
        }
        for m in s.skippedMatchBlocks {
            unsupported.append(
                UnsupportedSetting(
                    setting: "Match", value: m.value, location: loc(m),
                    reason: "Match blocks are not evaluated; copy what it sets by hand if it applies"))
        }
        let fileOrder = Dictionary(s.filesRead.enumerated().map { ($0.element, $0.offset) }, uniquingKeysWith: { a, _ in a })
        unsupported = unsupported.enumerated()
            .sorted {
                (fileOrder[$0.element.location.file] ?? Int.max, $0.element.location.line, $0.offset)
                    < (fileOrder[$1.element.location.file] ?? Int.max, $1.element.location.line, $1.offset)
            }
            .map(\.element)

        let tunnelName = name ?? TunnelImport.sanitizedName(alias)
        return TunnelImport(
            name: tunnelName, source: "Host \(alias) in \(shownPath)", keys: keys, unsupported: unsupported, notes: notes)
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
                return .unusable(setting: d.keyword, value: value, origin: origin, reason: "cannot be carried over: \(problem)")
            }
            return .proxyCommand(value, origin: origin)
        }
        var hops: [SSHTarget] = []
        for piece in value.split(separator: ",") {
            let item = String(piece.drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed())
            var text = item
            if text.hasPrefix("ssh://") { text.removeFirst(6) }
            guard var hop = try? SSHTarget.parse(text) else {
                return .unusable(setting: d.keyword, value: value, origin: origin, reason: "\"\(item)\" is not [user@]host[:port]")
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
    public static let cannotCarryOver: [String: String] = [
        "certificatefile": "SSH certificates are not supported: use a plain key (identity_file) or the agent",
        "remoteforward": "remote forwards (-R) are not supported: ecto-tunnel makes LocalForward tunnels only",
        "dynamicforward": "SOCKS forwards (-D) are not supported: ecto-tunnel makes LocalForward tunnels only",
        "hostkeyalias": "not supported: known_hosts is looked up under the target's host name and port",
        "identityagent": "not supported: the agent is always $SSH_AUTH_SOCK (set it for the service, see docs/troubleshooting.md)",
        "pkcs11provider": "PKCS#11 keys are not supported: use a key file or the agent",
        "securitykeyprovider": "security keys are not supported directly: use the agent",
        "globalknownhostsfile": "not read: only known_hosts (UserKnownHostsFile) is checked",
        "gatewayports": "use allow_non_loopback = true and a non-loopback local address instead",
        "bindaddress": "the source address of the SSH connection cannot be chosen",
        "bindinterface": "the source interface of the SSH connection cannot be chosen",
        "addressfamily": "not supported: every address of the host is tried",
        "ciphers": "algorithms are libssh2's defaults and cannot be configured",
        "macs": "algorithms are libssh2's defaults and cannot be configured",
        "kexalgorithms": "algorithms are libssh2's defaults and cannot be configured",
        "hostkeyalgorithms": "algorithms are libssh2's defaults and cannot be configured",
        "pubkeyacceptedalgorithms": "algorithms are libssh2's defaults and cannot be configured",
        "pubkeyacceptedkeytypes": "algorithms are libssh2's defaults and cannot be configured",
        "canonicalizehostname": "host names are used as written",
        "controlmaster": "connection sharing is not used: the daemon holds its own session",
        "controlpath": "connection sharing is not used: the daemon holds its own session",
        "controlpersist": "connection sharing is not used: the daemon holds its own session",
        "localcommand": "local commands are not run",
        "permitlocalcommand": "local commands are not run",
        "tunnel": "tun/tap forwarding is not supported",
        "tunneldevice": "tun/tap forwarding is not supported",
        "forwardagent": "agent forwarding is not offered through the tunnel",
        "passwordauthentication": "password authentication is not supported: use a key",
        "kbdinteractiveauthentication": "keyboard-interactive authentication is not supported: use a key",
        "challengeresponseauthentication": "keyboard-interactive authentication is not supported: use a key",
    ]

    /// ssh settings that do not matter for a forwarding-only session (lowercased).
    public static let irrelevant: Set<String> = [
        "addkeystoagent", "usekeychain", "batchmode", "checkhostip", "compression", "connectionattempts",
        "escapechar", "exitonforwardfailure", "forwardx11", "forwardx11trusted", "forwardx11timeout", "hashknownhosts",
        "identitiesonly", "ignoreunknown", "loglevel", "nohostauthenticationforlocalhost", "numberofpasswordprompts",
        "preferredauthentications", "pubkeyauthentication", "remotecommand", "requesttty", "sendenv", "setenv",
        "tcpkeepalive", "updatehostkeys", "visualhostkey", "verifyhostkeydns", "xauthlocation", "sessiontype",
        "stdinnull", "forkafterauthentication", "clearallforwardings", "gssapiauthentication",
        "gssapidelegatecredentials", "hostbasedauthentication", "enablesshkeysign", "fingerprinthash", "logverbose",
        "syslogfacility", "obscurekeystroketiming", "requiredrsasize", "streamlocalbindmask",
        "streamlocalbindunlink", "revokedhostkeys", "ipqos", "rekeylimit", "serveralivecountmax",
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
