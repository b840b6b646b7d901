/// Value types produced by `ConfigLoader`.

/// How the SSH server's host key is verified.
public enum HostKeyPolicy: String, Sendable, Equatable, CaseIterable {
    /// The key must already be in `known_hosts` (or match `host_key_fingerprint`).
    case strict
    /// An unknown host's key is added to `known_hosts` on first connect; a changed key is still refused.
    case acceptNew = "accept-new"
}

/// One `[tunnels.NAME]` table after defaults, `~/.ssh/config` and built-in defaults have been applied.
public struct TunnelConfig: Sendable, Equatable {
    public var name: String
    /// After `ssh_host` resolution; `user` is always filled in (default user if the config gives none).
    public var target: SSHTarget
    /// The `ssh_host` alias, if the tunnel used one.
    public var sshHostAlias: String?
    /// What the tunnel forwards, in config order (`forwards`, or the one `local`/`remote` pair):
    /// never empty; one session carries them all.
    public var forwards: [Forward]
    /// The first forward's listen address (what single-forward code paths and the status contract's
    /// `local` use).
    public var local: Endpoint {
        get { forwards[0].local }
        set { forwards[0].local = newValue }
    }
    /// The first forward's destination.
    public var remote: Endpoint {
        get { forwards[0].remote }
        set { forwards[0].remote = newValue }
    }
    /// Private key files to offer, in order (absolute, `~` expanded; `identity_file`, a path or a
    /// list). Empty: ssh's defaults, `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa` (those that exist).
    public var identityFiles: [String]
    /// Only the keys of `identityFiles` (or the defaults) are offered, also from the agent (ssh's
    /// `IdentitiesOnly`).
    public var identitiesOnly: Bool
    /// An OpenSSH user certificate (`certificate_file`); without it, `KEY-cert.pub` beside a key is
    /// looked for.
    public var certificateFile: String?
    /// The first identity file (what single-key code paths use).
    public var identityFile: String? {
        get { identityFiles.first }
        set { identityFiles = newValue.map { [$0] } ?? [] }
    }
    /// Absolute path (with `~` expanded).
    public var identityPassphraseFile: String?
    /// Name of a systemd credential, read from `$CREDENTIALS_DIRECTORY/<name>` at run time.
    public var identityPassphraseCredential: String?
    /// Absolute path (with `~` expanded).
    public var knownHosts: String
    public var hostKeyPolicy: HostKeyPolicy
    /// `SHA256:<43 base64 characters>`.
    public var hostKeyFingerprint: String?
    /// The name known_hosts lists the server's key under (`host_key_alias`, ssh's `HostKeyAlias`),
    /// looked up and recorded as written, without the port; nil: the target's host and port.
    public var hostKeyAlias: String?
    public var allowNonLoopback: Bool
    public var enabled: Bool
    /// `.zero` disables keepalives.
    public var keepaliveInterval: Duration
    public var keepaliveCountMax: Int
    public var connectTimeout: Duration
    public var backoffInitial: Duration
    public var backoffMax: Duration
    public var holdTimeout: Duration
    /// After a retarget or reload, how long connections open on the old session may go on.
    public var drainTimeout: Duration
    /// How to check end to end that the service behind the tunnel answers; nil: no probe.
    public var probe: ProbeSpec?
    /// How often the probe runs while the tunnel is up; `.zero`: only on demand (`status --deep`).
    public var probeInterval: Duration
    /// SSH sessions kept open to the target, each on its own thread; new connections go to the
    /// least busy one that is up (`TunnelDefaults.sessionsRange`).
    public var sessions: Int
    /// Local clients served or held at once; one more is refused at once (a reset) and counted
    /// (`clients_refused`), so no local user can exhaust the daemon's descriptors.
    public var maxClients: Int
    /// Jump hosts (`jump`, ssh's `ProxyJump`), first hop first, each with its user filled in;
    /// empty: the target is reached directly (or through `proxyCommand`).
    public var jump: [SSHTarget]
    /// `proxy_command` (ssh's `ProxyCommand`) as written, tokens `%h %p %r %n %%` not yet expanded
    /// (`ProxyCommandLine`); nil: the target is reached directly (or through `jump`).
    public var proxyCommand: String?
    /// Line of the `[tunnels.NAME]` header (1-based).
    public var line: Int

    public init(
        name: String,
        target: SSHTarget,
        sshHostAlias: String? = nil,
        local: Endpoint,
        remote: Endpoint,
        forwards: [Forward] = [],
        identityFile: String? = nil,
        identityFiles: [String] = [],
        identitiesOnly: Bool = false,
        certificateFile: String? = nil,
        identityPassphraseFile: String? = nil,
        identityPassphraseCredential: String? = nil,
        knownHosts: String,
        hostKeyPolicy: HostKeyPolicy = .strict,
        hostKeyFingerprint: String? = nil,
        hostKeyAlias: String? = nil,
        allowNonLoopback: Bool = false,
        enabled: Bool = true,
        keepaliveInterval: Duration = TunnelDefaults.keepaliveInterval,
        keepaliveCountMax: Int = TunnelDefaults.keepaliveCountMax,
        connectTimeout: Duration = TunnelDefaults.connectTimeout,
        backoffInitial: Duration = TunnelDefaults.backoffInitial,
        backoffMax: Duration = TunnelDefaults.backoffMax,
        holdTimeout: Duration = TunnelDefaults.holdTimeout,
        drainTimeout: Duration = TunnelDefaults.drainTimeout,
        probe: ProbeSpec? = nil,
        probeInterval: Duration = TunnelDefaults.probeInterval,
        sessions: Int = TunnelDefaults.sessions,
        maxClients: Int = TunnelDefaults.maxClients,
        jump: [SSHTarget] = [],
        proxyCommand: String? = nil,
        line: Int = 0
    ) {
        self.name = name
        self.target = target
        self.sshHostAlias = sshHostAlias
        self.forwards = forwards.isEmpty ? [Forward(local: local, remote: remote)] : forwards
        self.identityFiles = identityFile.map { [$0] + identityFiles.filter { $0 != identityFile } } ?? identityFiles
        self.identitiesOnly = identitiesOnly
        self.certificateFile = certificateFile
        self.identityPassphraseFile = identityPassphraseFile
        self.identityPassphraseCredential = identityPassphraseCredential
        self.knownHosts = knownHosts
        self.hostKeyPolicy = hostKeyPolicy
        self.hostKeyFingerprint = hostKeyFingerprint
        self.hostKeyAlias = hostKeyAlias
        self.allowNonLoopback = allowNonLoopback
        self.enabled = enabled
        self.keepaliveInterval = keepaliveInterval
        self.keepaliveCountMax = keepaliveCountMax
        self.connectTimeout = connectTimeout
        self.backoffInitial = backoffInitial
        self.backoffMax = backoffMax
        self.holdTimeout = holdTimeout
        self.drainTimeout = drainTimeout
        self.probe = probe
        self.probeInterval = probeInterval
        self.sessions = sessions
        self.maxClients = maxClients
        self.jump = jump
        self.proxyCommand = proxyCommand
        self.line = line
    }
}

extension TunnelConfig {
    /// The host and port known_hosts is searched and written under: `host_key_alias` as written
    /// (port 22, so no `[host]:port` form, as ssh does with HostKeyAlias), else the target's.
    public var knownHostsKey: (host: String, port: Int) {
        if let hostKeyAlias { return (hostKeyAlias, 22) }
        return (target.host, Int(target.port))
    }

    /// Equal apart from where the table sits in the file (what a reload compares).
    public func sameSettings(as other: TunnelConfig) -> Bool {
        var a = self
        var b = other
        a.line = 0
        b.line = 0
        return a == b
    }
}

/// Built-in defaults of the tunnel keys.
public enum TunnelDefaults {
    public static let keepaliveInterval: Duration = .seconds(15)
    public static let keepaliveCountMax = 3
    public static let connectTimeout: Duration = .seconds(10)
    public static let backoffInitial: Duration = .seconds(1)
    public static let backoffMax: Duration = .seconds(60)
    public static let holdTimeout: Duration = .seconds(10)
    public static let drainTimeout: Duration = .seconds(300)
    public static let probeInterval: Duration = .seconds(60)
    public static let sessions = 1
    /// Jump hosts one tunnel may chain (`jump`); ssh sets no limit, but every hop costs a session,
    /// a relay and a handshake per reconnect, and no real setup needs more.
    public static let maxJumpHosts = 8
    /// The private keys ssh tries when none is configured, in this order (relative to `~`).
    public static let identityFiles = [".ssh/id_ed25519", ".ssh/id_ecdsa", ".ssh/id_rsa"]
    /// More than 16 sessions buys nothing on any machine we know (one core each at full speed)
    /// and multiplies logins, memory and keepalive traffic.
    public static let sessionsRange = 1...16
    /// Clients per tunnel (held and forwarded). 1,024 covers a gateway's browsers, CLIs and
    /// agents many times over; each costs a descriptor and up to 128 KiB of buffers.
    public static let maxClients = 1024
    public static let maxClientsRange = 1...65536

    /// The keepalive interval libssh2 really keeps for `interval`: whole seconds (rounded up),
    /// 2 s at the least (`libssh2_keepalive_config` turns 1 into 2 and counts in `time()`
    /// seconds); 0 stays 0 (no keepalives). The dead-peer time is computed from this.
    public static func sendableKeepaliveInterval(_ interval: Duration) -> Duration {
        guard interval > .zero else { return .zero }
        let (seconds, attoseconds) = interval.components
        let whole = seconds + (attoseconds > 0 ? 1 : 0)
        return .seconds(max(2, whole))
    }
}

/// A loaded, validated configuration file.
public struct Config: Sendable, Equatable {
    /// The path the configuration was loaded from (or the name given to `ConfigLoader.parse`).
    public var path: String
    /// In file order.
    public var tunnels: [TunnelConfig]
    /// Things that are not errors but that the user should know about, e.g. `Match` blocks in
    /// `~/.ssh/config` that were skipped. Same format as errors.
    public var warnings: [ConfigError]

    public init(path: String, tunnels: [TunnelConfig], warnings: [ConfigError] = []) {
        self.path = path
        self.tunnels = tunnels
        self.warnings = warnings
    }
}

/// One problem in a configuration file.
///
/// `description` is `file:line[:column]: [key: ]message`; a `line` of 0 (the file as a whole) is left out.
public struct ConfigError: Error, Sendable, Equatable, Hashable, CustomStringConvertible {
    public var file: String
    /// 1-based; 0 when the error concerns the whole file (e.g. it cannot be read).
    public var line: Int
    /// 1-based, counted in Unicode scalars; only for syntax errors.
    public var column: Int?
    /// Dotted key path such as `tunnels.gw.local`, when the error concerns a key.
    public var key: String?
    public var message: String

    public init(file: String, line: Int, column: Int? = nil, key: String? = nil, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.key = key
        self.message = message
    }

    public var description: String {
        var s = file
        if line > 0 {
            s += ":\(line)"
            if let column { s += ":\(column)" }
        }
        s += ": "
        if let key { s += "\(key): " }
        s += message
        return s
    }
}

/// All problems found in a configuration file, in line order.
public struct ConfigErrors: Error, Sendable, Equatable, CustomStringConvertible {
    public var errors: [ConfigError]

    public init(_ errors: [ConfigError]) {
        self.errors = errors
    }

    public init(errors: [ConfigError]) {
        self.errors = errors
    }

    /// One error per line.
    public var description: String {
        errors.map(\.description).joined(separator: "\n")
    }
}
