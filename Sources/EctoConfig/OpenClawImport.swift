#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `ecto-tunnel import openclaw`: reads OpenClaw's own config (`~/.openclaw/openclaw.json`, JSON5) and
/// makes the tunnel its macOS app would open in "Remote over SSH" mode.
///
/// What OpenClaw documents (checked 2026-11 against docs.openclaw.ai):
/// - Config file: `~/.openclaw/openclaw.json`, JSON5; `OPENCLAW_CONFIG_PATH` overrides the file,
///   `OPENCLAW_STATE_DIR` the directory (default `~/.openclaw`), `OPENCLAW_HOME` the home directory
///   used for both. https://docs.openclaw.ai/help/environment
/// - `gateway.port`: the gateway's single WS + HTTP port; `--port` > `OPENCLAW_GATEWAY_PORT` >
///   `gateway.port` > 18789. https://docs.openclaw.ai/gateway/configuration-reference
/// - `gateway.remote.url` (`ws://127.0.0.1:18789` with an SSH tunnel: the local end of the tunnel),
///   `gateway.remote.transport` (`ssh`, the default, or `direct`), `gateway.remote.sshTarget`
///   (`user@host` or `user@host:port`), `gateway.remote.sshIdentity` (identity file path),
///   `gateway.remote.remotePort` ("gateway port on the remote SSH host. Defaults to 18789; use this
///   when the local tunnel port differs from the remote gateway port"), `gateway.remote.token` /
///   `gateway.remote.password` (client credentials), `gateway.remote.sshHostKeyPolicy` (`strict` or
///   `openssh`). https://docs.openclaw.ai/gateway/remote, https://docs.openclaw.ai/cli/gateway
/// - Credential precedence in remote mode (see `GatewayCredentials`):
///   token: `--token` → `gateway.remote.token` → `OPENCLAW_GATEWAY_TOKEN` → `gateway.auth.token`;
///   password: `--password` → `OPENCLAW_GATEWAY_PASSWORD` → `gateway.remote.password` →
///   `gateway.auth.password`. https://docs.openclaw.ai/gateway/remote ("Credential precedence")
/// - Secret fields may also be SecretRef objects `{ source: "env", provider: "default", id: "VAR" }`
///   or `"${VAR}"` strings. https://docs.openclaw.ai/help/environment

/// The gateway settings of an OpenClaw config that matter for a tunnel, each with its line.
public struct OpenClawGatewaySettings: Sendable, Equatable {
    /// A value and the line of its key.
    public struct Located<Value: Sendable & Equatable>: Sendable, Equatable {
        public var value: Value
        public var location: SettingLocation

        public init(_ value: Value, at location: SettingLocation) {
            self.value = value
            self.location = location
        }
    }

    /// The file read.
    public var path: String
    /// `gateway.mode`: `local` or `remote`.
    public var mode: Located<String>?
    /// `gateway.port`.
    public var port: Located<Int>?
    public var remoteURL: Located<String>?
    public var remoteTransport: Located<String>?
    public var sshTarget: Located<String>?
    public var sshIdentity: Located<String>?
    public var remotePort: Located<Int>?
    public var sshHostKeyPolicy: Located<String>?
    /// Secrets as written (a string, `${VAR}`, or an env SecretRef); resolved by `GatewayCredentials`.
    public var remoteToken: Located<OpenClawSecret>?
    public var remotePassword: Located<OpenClawSecret>?
    public var authToken: Located<OpenClawSecret>?
    public var authPassword: Located<OpenClawSecret>?

    public init(path: String) {
        self.path = path
    }
}

/// A secret field of the OpenClaw config, as written.
public enum OpenClawSecret: Sendable, Equatable {
    /// A literal string.
    case literal(String)
    /// `"${VAR}"` or `{ source: "env", id: "VAR" }`: the value of an environment variable.
    case environment(String)
    /// A SecretRef of another source (file, exec, ...), which ecto-tunnel does not resolve.
    case unsupportedReference(String)
}

public enum OpenClawImport {
    /// OpenClaw's default gateway port.
    public static let defaultGatewayPort: UInt16 = 18789

    /// The config file OpenClaw itself would read: `OPENCLAW_CONFIG_PATH`, else
    /// `$OPENCLAW_STATE_DIR/openclaw.json`, else `$OPENCLAW_HOME/.openclaw/openclaw.json`, else
    /// `~/.openclaw/openclaw.json`. `~` in the variables is expanded.
    public static func defaultPath(environment: ConfigEnvironment) -> String {
        let v = environment.variables
        func expand(_ p: String) -> String { SSHClientConfig.expandTilde(p, home: environment.home) }
        if let p = v["OPENCLAW_CONFIG_PATH"], !p.isEmpty { return expand(p) }
        if let d = v["OPENCLAW_STATE_DIR"], !d.isEmpty { return SSHClientConfig.joinPath(expand(d), "openclaw.json") }
        let home = v["OPENCLAW_HOME"].flatMap { $0.isEmpty ? nil : expand($0) } ?? environment.home
        return SSHClientConfig.joinPath(home, ".openclaw/openclaw.json")
    }

    /// Reads and parses the OpenClaw config at `path` (default: `defaultPath`).
    /// - Throws: `ImportError` when the file cannot be read, is not JSON5 (with line:column), or a
    ///   gateway key has the wrong type.
    public static func readSettings(
        path: String? = nil, environment: ConfigEnvironment
    ) throws(ImportError) -> OpenClawGatewaySettings {
        let file = path ?? defaultPath(environment: environment)
        guard let text = environment.readFile(file) else {
            let shown = SSHClientConfig.abbreviate(file, home: environment.home)
            throw ImportError(
                environment.fileExists(file) == .missing
                    ? "\(shown) not found (set OPENCLAW_CONFIG_PATH, or pass the file's path)"
                    : "\(shown) cannot be read")
        }
        return try parseSettings(text: text, path: file)
    }

    /// Parses OpenClaw config text; `path` is used in locations.
    public static func parseSettings(text: String, path: String) throws(ImportError) -> OpenClawGatewaySettings {
        let root: JSON5Value
        do {
            root = try JSON5.parse(text)
        } catch {
            throw ImportError("\(error.column): \(error.message)", at: SettingLocation(file: path, line: error.line))
        }
        guard case .object = root else {
            throw ImportError(
                "the top level is \(root.typeName), not an object", at: SettingLocation(file: path, line: 1))
        }
        var s = OpenClawGatewaySettings(path: path)
        func at(_ m: JSON5Member) -> SettingLocation { SettingLocation(file: path, line: m.line) }
        func string(_ key: String) throws(ImportError) -> OpenClawGatewaySettings.Located<String>? {
            guard let m = root.member(path: key) else { return nil }
            if case .null = m.value { return nil }
            guard let v = m.value.stringValue else {
                throw ImportError("\(key) must be a string, not \(m.value.typeName)", at: at(m))
            }
            return .init(v, at: at(m))
        }
        func port(_ key: String) throws(ImportError) -> OpenClawGatewaySettings.Located<Int>? {
            guard let m = root.member(path: key) else { return nil }
            if case .null = m.value { return nil }
            var number = m.value.numberValue
            if number == nil, let str = m.value.stringValue { number = Double(str) }
            guard let d = number, d == d.rounded(), d >= 1, d <= 65535 else {
                throw ImportError("\(key) must be a port number 1-65535", at: at(m))
            }
            return .init(Int(d), at: at(m))
        }
        func secret(_ key: String) throws(ImportError) -> OpenClawGatewaySettings.Located<OpenClawSecret>? {
            guard let m = root.member(path: key) else { return nil }
            switch m.value {
            case .null: return nil
            case .string(let str):
                if str.isEmpty { return nil }
                if str.hasPrefix("${") && str.hasSuffix("}") && str.count > 3 {
                    return .init(.environment(String(str.dropFirst(2).dropLast())), at: at(m))
                }
                return .init(.literal(str), at: at(m))
            case .object:
                let source = m.value["source"]?.stringValue ?? "?"
                if source == "env", let id = m.value["id"]?.stringValue, !id.isEmpty {
                    return .init(.environment(id), at: at(m))
                }
                return .init(.unsupportedReference(source), at: at(m))
            default:
                throw ImportError("\(key) must be a string or a SecretRef object, not \(m.value.typeName)", at: at(m))
            }
        }
        s.mode = try string("gateway.mode")
        s.port = try port("gateway.port")
        s.remoteURL = try string("gateway.remote.url")
        s.remoteTransport = try string("gateway.remote.transport")
        s.sshTarget = try string("gateway.remote.sshTarget")
        s.sshIdentity = try string("gateway.remote.sshIdentity")
        s.remotePort = try port("gateway.remote.remotePort")
        s.sshHostKeyPolicy = try string("gateway.remote.sshHostKeyPolicy")
        s.remoteToken = try secret("gateway.remote.token")
        s.remotePassword = try secret("gateway.remote.password")
        s.authToken = try secret("gateway.auth.token")
        s.authPassword = try secret("gateway.auth.password")
        return s
    }

    /// The tunnel for OpenClaw's remote gateway:
    /// - `target` from `gateway.remote.sshTarget` (required; `sshTarget` overrides it, e.g. from `connect USER@HOST`);
    /// - `identity_file` from `gateway.remote.sshIdentity`;
    /// - `remote = 127.0.0.1:<gateway.remote.remotePort, default 18789>`;
    /// - `local = 127.0.0.1:<port of gateway.remote.url>`, else the remote port.
    ///
    /// Tokens and passwords are never written to the tunnel config. `name` defaults to `openclaw`.
    public static func makeImport(
        _ s: OpenClawGatewaySettings, name: String = "openclaw", sshTarget override: String? = nil, home: String = ""
    ) throws(ImportError) -> TunnelImport {
        var keys: [ImportedKey] = []
        var unsupported: [UnsupportedSetting] = []
        var notes: [String] = []
        let shown = SSHClientConfig.abbreviate(s.path, home: home)

        let targetText: String
        var targetOrigin: SettingLocation? = nil
        if let override {
            targetText = override
        } else if let t = s.sshTarget {
            targetText = t.value
            targetOrigin = t.location
        } else {
            throw ImportError(
                "gateway.remote.sshTarget is not set in \(shown): set it with `openclaw config set gateway.remote.sshTarget user@host`, or give the target on the command line"
            )
        }
        let target: SSHTarget
        do { target = try SSHTarget.parse(targetText) } catch {
            throw ImportError(
                "gateway.remote.sshTarget \"\(targetText)\" is not [user@]host[:port]: \(error.message)",
                at: targetOrigin)
        }
        keys.append(ImportedKey(key: "target", value: .string(target.description), origin: targetOrigin))

        let remotePort = s.remotePort.map { UInt16($0.value) } ?? defaultGatewayPort
        keys.append(
            ImportedKey(
                key: "remote", value: .string(Endpoint(host: "127.0.0.1", port: remotePort).description),
                origin: s.remotePort?.location))

        var localPort = remotePort
        var localOrigin = s.remotePort?.location
        if let url = s.remoteURL {
            switch parseURL(url.value) {
            case .success(let parsed):
                if let p = parsed.port {
                    localPort = p
                    localOrigin = url.location
                } else if parsed.scheme == "ws" || parsed.scheme == "http" {
                    localPort = 80
                    localOrigin = url.location
                } else {
                    localPort = 443
                    localOrigin = url.location
                }
                if !HostSyntax.isLoopback(parsed.host) {
                    unsupported.append(
                        UnsupportedSetting(
                            setting: "gateway.remote.url", value: url.value, location: url.location,
                            reason:
                                "not a loopback URL, so OpenClaw does not reach the gateway through this tunnel; set it to ws://127.0.0.1:\(remotePort) to use the tunnel"
                        ))
                    localPort = remotePort
                    localOrigin = s.remotePort?.location
                }
            case .failure(let problem):
                unsupported.append(
                    UnsupportedSetting(
                        setting: "gateway.remote.url", value: url.value, location: url.location, reason: problem.message
                    ))
            }
        }
        keys.append(
            ImportedKey(
                key: "local", value: .string(Endpoint(host: "127.0.0.1", port: localPort).description),
                origin: localOrigin))

        if let id = s.sshIdentity {
            let path = SSHClientConfig.expandTilde(id.value, home: home)
            keys.append(ImportedKey(key: "identity_file", value: .string(path), origin: id.location))
        }
        if let t = s.remoteTransport, t.value != "ssh" {
            unsupported.append(
                UnsupportedSetting(
                    setting: "gateway.remote.transport", value: t.value, location: t.location,
                    reason:
                        "OpenClaw connects directly (no SSH tunnel); the imported tunnel is only used once transport is \"ssh\""
                ))
        }
        if let m = s.mode, m.value != "remote" {
            notes.append(
                "gateway.mode is \"\(m.value)\" at \(m.location.abbreviated(home: home)): OpenClaw's CLI uses gateway.remote.* only in remote mode (`openclaw config set gateway.mode remote`)"
            )
        }
        if let p = s.sshHostKeyPolicy, p.value != "strict" {
            unsupported.append(
                UnsupportedSetting(
                    setting: "gateway.remote.sshHostKeyPolicy", value: p.value, location: p.location,
                    reason:
                        "ecto-tunnel checks host keys against known_hosts itself (strict, or host_key_policy = \"accept-new\")"
                ))
        }
        if s.remotePort == nil {
            notes.append(
                "gateway.remote.remotePort is not set: the gateway is taken to listen on \(defaultGatewayPort) on the SSH host"
            )
        }
        return TunnelImport(
            name: TunnelImport.sanitizedName(name), source: "OpenClaw config \(shown)", keys: keys,
            unsupported: unsupported,
            notes: notes)
    }

    /// A ws/wss/http/https URL's scheme, host and port.
    public static func parseURL(_ url: String) -> Result<(scheme: String, host: String, port: UInt16?), ParseURLError> {
        guard let sep = url.firstRange(of: "://") else {
            return .failure(ParseURLError("not a URL (expected ws://host:port)"))
        }
        let scheme = url[..<sep.lowerBound].lowercased()
        guard ["ws", "wss", "http", "https"].contains(scheme) else {
            return .failure(ParseURLError("scheme \(scheme) is not ws, wss, http or https"))
        }
        var rest = url[sep.upperBound...]
        if let end = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) { rest = rest[..<end] }
        if let at = rest.lastIndex(of: "@") { rest = rest[rest.index(after: at)...] }
        do {
            let (host, port) = try HostSyntax.splitHostPort(String(rest), defaultPort: 0)
            return .success((scheme, host, port))
        } catch {
            return .failure(ParseURLError("\(error.message)"))
        }
    }

    public struct ParseURLError: Error, Sendable, Equatable {
        public var message: String
        init(_ message: String) { self.message = message }
    }
}

extension OpenClawImport.ParseURLError: CustomStringConvertible {
    public var description: String { message }
}
