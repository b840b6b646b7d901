import EctoPlatform
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The control protocol's value types (version 1). See docs/control-protocol.md.
///
/// Everything travels as JSON over HTTP/1.1 on a Unix-domain socket; field names are snake_case.
/// Fields are only ever added within a version; a client ignores fields it does not know.
public enum ControlProtocol {
    public static let version = 1

    public static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }

    /// One JSON document on one line (what the event stream carries).
    public static func line<T: Encodable>(_ value: T) -> Data {
        var data = (try? encoder().encode(value)) ?? Data("{}".utf8)
        data.append(0x0A)
        return data
    }
}

/// A session of an earlier target that still carries connections after a retarget or a reload.
public struct DrainingSession: Codable, Sendable, Equatable {
    public var target: String
    public var connections: Int

    public init(target: String, connections: Int) {
        self.target = target
        self.connections = connections
    }
}

/// One forward of a tunnel (`forwards` in the config, or its one `local`/`remote`).
public struct ForwardReport: Codable, Sendable, Equatable {
    /// The listen address, `host:port`.
    public var local: String
    /// The destination as seen from the SSH server, `host:port`.
    public var remote: String
    /// The listener: `listening`, `retrying` (it could not be opened, e.g. the port is held by
    /// another process: `last_error` says which; tried again every few seconds while the other
    /// forwards serve) or `closed` (the tunnel is disabled or stopping).
    public var state: String
    public var connections: Int
    public var bytesIn: UInt64
    public var bytesOut: UInt64
    public var lastError: String?

    public init(
        local: String, remote: String, state: String, connections: Int = 0, bytesIn: UInt64 = 0, bytesOut: UInt64 = 0,
        lastError: String? = nil
    ) {
        self.local = local
        self.remote = remote
        self.state = state
        self.connections = connections
        self.bytesIn = bytesIn
        self.bytesOut = bytesOut
        self.lastError = lastError
    }

    enum CodingKeys: String, CodingKey {
        case local, remote, state, connections, bytesIn = "bytes_in", bytesOut = "bytes_out", lastError = "last_error"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(local, forKey: .local)
        try c.encode(remote, forKey: .remote)
        try c.encode(state, forKey: .state)
        try c.encode(connections, forKey: .connections)
        try c.encode(bytesIn, forKey: .bytesIn)
        try c.encode(bytesOut, forKey: .bytesOut)
        try c.encode(lastError, forKey: .lastError)  // null when there is none
    }
}

/// The end-to-end check of the service behind a tunnel (the `probe` key), apart from the SSH state.
public struct GatewayReport: Codable, Sendable, Equatable {
    /// The service answered.
    public var ok: Bool
    /// `up`, `token-refused` (HTTP 401/403: the gateway answers but refused the token, or wants
    /// one and none was found), `refused`, `closed-by-tunnel`, `timeout`, `protocol-error`, `error`.
    public var outcome: String
    /// One line, e.g. "HTTP 200 in 3.1 ms".
    public var detail: String
    public var latencyMs: Double
    /// The probe that ran, e.g. "http:/health".
    public var probe: String
    public var checked: Date
    /// Where the daemon's probe took the gateway token from (`$OPENCLAW_GATEWAY_TOKEN`,
    /// `gateway.remote.token (~/.openclaw/openclaw.json:12)`, …), or `none`; never the token.
    public var tokenSource: String?

    public init(ok: Bool, outcome: String, detail: String, latencyMs: Double, probe: String, checked: Date, tokenSource: String? = nil) {
        self.ok = ok
        self.outcome = outcome
        self.detail = detail
        self.latencyMs = latencyMs
        self.probe = probe
        self.checked = checked
        self.tokenSource = tokenSource
    }

    /// The gateway answers but refused the token.
    public var tokenRefused: Bool { outcome == "token-refused" }

    enum CodingKeys: String, CodingKey {
        case ok, outcome, detail, latencyMs = "latency_ms", probe, checked, tokenSource = "token_source"
    }
}

/// One tunnel, as `status --json` prints it (the status contract in design.md, plus additions).
public struct TunnelReport: Codable, Sendable, Equatable {
    public var name: String
    /// `connecting`, `up`, `backoff`, `down` (disabled) or `failed` (needs the operator).
    public var state: String
    public var enabled: Bool
    public var target: String
    public var local: String
    public var remote: String
    public var connections: Int
    public var bytesIn: UInt64
    public var bytesOut: UInt64
    public var reconnects: Int
    /// When the tunnel entered its current state.
    public var since: Date
    public var lastError: String?
    /// Sessions to earlier targets still finishing their connections (empty most of the time).
    public var draining: [DrainingSession]
    /// The latest probe of the service behind the tunnel (null: no probe configured or not run yet).
    public var gateway: GatewayReport?
    /// SSH sessions configured for the tunnel (`sessions`), and how many are up.
    public var sessions: Int
    public var sessionsUp: Int
    /// Local clients refused at once since start (`max_clients`, or file descriptors running low).
    public var clientsRefused: UInt64 = 0
    /// When the next connection attempt is due (state `backoff`; null otherwise).
    public var retryAt: Date?
    /// What that retry waits for: `remote` (the server or the network, exponential backoff),
    /// `refused` (the SSH port refuses connections), `local` (this machine: a busy port, a missing
    /// key file, descriptors or memory running out; a short fixed retry). Null unless in backoff.
    public var retryCause: String?
    /// A change of this tunnel being pre-flighted now (`target`, `reload`); absent otherwise.
    public var change: ChangeReport?
    /// Every forward, in config order (the first is `local`/`remote`); empty from daemons before
    /// forwards existed.
    public var forwards: [ForwardReport] = []

    public init(
        name: String, state: String, enabled: Bool, target: String, local: String, remote: String, connections: Int,
        bytesIn: UInt64, bytesOut: UInt64, reconnects: Int, since: Date, lastError: String?,
        draining: [DrainingSession] = [], sessions: Int = 1, sessionsUp: Int? = nil
    ) {
        self.name = name
        self.state = state
        self.enabled = enabled
        self.target = target
        self.local = local
        self.remote = remote
        self.connections = connections
        self.bytesIn = bytesIn
        self.bytesOut = bytesOut
        self.reconnects = reconnects
        self.since = since
        self.lastError = lastError
        self.draining = draining
        self.sessions = sessions
        self.sessionsUp = sessionsUp ?? (state == "up" ? 1 : 0)
    }

    enum CodingKeys: String, CodingKey {
        case name, state, enabled, target, local, remote, connections
        case bytesIn = "bytes_in", bytesOut = "bytes_out", reconnects, since
        case lastError = "last_error", draining, gateway, sessions, sessionsUp = "sessions_up", change
        case clientsRefused = "clients_refused", retryAt = "retry_at", retryCause = "retry_cause"
        case forwards
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        state = try c.decode(String.self, forKey: .state)
        enabled = try c.decode(Bool.self, forKey: .enabled)
        target = try c.decode(String.self, forKey: .target)
        local = try c.decode(String.self, forKey: .local)
        remote = try c.decode(String.self, forKey: .remote)
        connections = try c.decode(Int.self, forKey: .connections)
        bytesIn = try c.decode(UInt64.self, forKey: .bytesIn)
        bytesOut = try c.decode(UInt64.self, forKey: .bytesOut)
        reconnects = try c.decode(Int.self, forKey: .reconnects)
        since = try c.decode(Date.self, forKey: .since)
        lastError = try c.decodeIfPresent(String.self, forKey: .lastError)
        draining = try c.decodeIfPresent([DrainingSession].self, forKey: .draining) ?? []
        gateway = try c.decodeIfPresent(GatewayReport.self, forKey: .gateway)
        sessions = try c.decodeIfPresent(Int.self, forKey: .sessions) ?? 1
        sessionsUp = try c.decodeIfPresent(Int.self, forKey: .sessionsUp) ?? (state == "up" ? 1 : 0)
        clientsRefused = try c.decodeIfPresent(UInt64.self, forKey: .clientsRefused) ?? 0
        retryAt = try c.decodeIfPresent(Date.self, forKey: .retryAt)
        retryCause = try c.decodeIfPresent(String.self, forKey: .retryCause)
        change = try c.decodeIfPresent(ChangeReport.self, forKey: .change)
        forwards = try c.decodeIfPresent([ForwardReport].self, forKey: .forwards) ?? []
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(state, forKey: .state)
        try c.encode(enabled, forKey: .enabled)
        try c.encode(target, forKey: .target)
        try c.encode(local, forKey: .local)
        try c.encode(remote, forKey: .remote)
        try c.encode(connections, forKey: .connections)
        try c.encode(bytesIn, forKey: .bytesIn)
        try c.encode(bytesOut, forKey: .bytesOut)
        try c.encode(reconnects, forKey: .reconnects)
        try c.encode(since, forKey: .since)
        try c.encode(lastError, forKey: .lastError)  // null when there is none: the contract has the key
        try c.encode(draining, forKey: .draining)
        try c.encode(gateway, forKey: .gateway)
        try c.encode(sessions, forKey: .sessions)
        try c.encode(sessionsUp, forKey: .sessionsUp)
        try c.encode(clientsRefused, forKey: .clientsRefused)
        try c.encode(retryAt, forKey: .retryAt)
        try c.encode(retryCause, forKey: .retryCause)
        try c.encodeIfPresent(change, forKey: .change)
        try c.encode(forwards, forKey: .forwards)
    }

    /// Up, or deliberately down: what `status` counts as healthy.
    public var isHealthy: Bool { !enabled || state == "up" }
}

/// `GET /v1/status`: every tunnel, in config order.
public struct StatusReport: Codable, Sendable, Equatable {
    public var version: Int
    /// The daemon's ecto-tunnel version (`EctoVersion.current`); absent from daemons before 0.1.0.
    public var daemonVersion: String?
    public var tunnels: [TunnelReport]

    enum CodingKeys: String, CodingKey {
        case version, tunnels
        case daemonVersion = "daemon_version"
    }

    public init(tunnels: [TunnelReport], daemonVersion: String? = EctoVersion.current) {
        self.version = ControlProtocol.version
        self.daemonVersion = daemonVersion
        self.tunnels = tunnels
    }
}

/// A config problem, as `reload` reports it.
public struct ConfigProblem: Codable, Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int?
    public var key: String?
    public var message: String

    public init(file: String, line: Int, column: Int?, key: String?, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.key = key
        self.message = message
    }

    public var description: String {
        var text = "\(file):\(line)"
        if let column { text += ":\(column)" }
        text += ": "
        if let key { text += "\(key): " }
        return text + message
    }
}

/// The body of every non-2xx response.
public struct ErrorReport: Codable, Sendable, Equatable {
    public var error: String
    /// Config problems (reload, target), each with file:line and key.
    public var problems: [ConfigProblem]?
    /// A change refused by its pre-flight: the stage that failed (resolve, connect, handshake,
    /// host key, authentication, credentials, channel, timeout).
    public var stage: String?

    public init(error: String, problems: [ConfigProblem]? = nil, stage: String? = nil) {
        self.error = error
        self.problems = problems
        self.stage = stage
    }
}

/// A tunnel whose change was refused by its pre-flight (`reload`): it keeps its running session.
public struct ChangeFailure: Codable, Sendable, Equatable {
    public var tunnel: String
    public var stage: String
    public var error: String

    public init(tunnel: String, stage: String, error: String) {
        self.tunnel = tunnel
        self.stage = stage
        self.error = error
    }
}

/// A change of a running tunnel being pre-flighted (`TunnelReport.change`).
public struct ChangeReport: Codable, Sendable, Equatable {
    /// The target being proven.
    public var target: String
    /// starting, resolve, connect, handshake, authentication, channel, switching, failed at STAGE.
    public var stage: String
    public var started: Date

    public init(target: String, stage: String, started: Date) {
        self.target = target
        self.stage = stage
        self.started = started
    }
}

/// `POST /v1/tunnels/NAME/target`.
public struct TargetRequest: Codable, Sendable, Equatable {
    /// `[user@]host[:port]`.
    public var target: String
    /// Seconds the old session may keep its open connections; the tunnel's `drain_timeout` if absent.
    public var drainTimeout: Double?
    /// Switch even when the pre-flight of the new target fails.
    public var force: Bool?

    public init(target: String, drainTimeout: Double? = nil, force: Bool? = nil) {
        self.target = target
        self.drainTimeout = drainTimeout
        self.force = force
    }

    enum CodingKeys: String, CodingKey {
        case target
        case drainTimeout = "drain_timeout"
        case force
    }
}

/// The optional body of `POST /v1/reload`.
public struct ReloadRequest: Codable, Sendable, Equatable {
    /// Apply changed tunnels even when their pre-flight fails.
    public var force: Bool?

    public init(force: Bool? = nil) { self.force = force }
}

/// The answer to target, up, down and reconnect.
public struct ActionReport: Codable, Sendable, Equatable {
    public var ok: Bool
    /// One sentence for the operator, e.g. "gateway: target set to ops@b:22 (written to …)".
    public var message: String
    public var tunnels: [TunnelReport]

    public init(message: String, tunnels: [TunnelReport]) {
        self.ok = true
        self.message = message
        self.tunnels = tunnels
    }
}

/// `POST /v1/reload`.
public struct ReloadReport: Codable, Sendable, Equatable {
    public var ok: Bool
    public var config: String
    public var added: [String]
    public var removed: [String]
    public var changed: [String]
    public var unchanged: [String]
    public var warnings: [ConfigProblem]
    /// Changed tunnels whose pre-flight failed: they keep their running session and settings.
    public var failed: [ChangeFailure]
    /// Changed tunnels applied with `force` although their pre-flight failed.
    public var forced: [ChangeFailure]

    public init(
        config: String, added: [String], removed: [String], changed: [String], unchanged: [String], warnings: [ConfigProblem],
        failed: [ChangeFailure] = [], forced: [ChangeFailure] = []
    ) {
        self.ok = failed.isEmpty
        self.config = config
        self.added = added
        self.removed = removed
        self.changed = changed
        self.unchanged = unchanged
        self.warnings = warnings
        self.failed = failed
        self.forced = forced
    }

    enum CodingKeys: String, CodingKey {
        case ok, config, added, removed, changed, unchanged, warnings, failed, forced
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        ok = try c.decode(Bool.self, forKey: .ok)
        config = try c.decode(String.self, forKey: .config)
        added = try c.decode([String].self, forKey: .added)
        removed = try c.decode([String].self, forKey: .removed)
        changed = try c.decode([String].self, forKey: .changed)
        unchanged = try c.decode([String].self, forKey: .unchanged)
        warnings = try c.decode([ConfigProblem].self, forKey: .warnings)
        failed = try c.decodeIfPresent([ChangeFailure].self, forKey: .failed) ?? []
        forced = try c.decodeIfPresent([ChangeFailure].self, forKey: .forced) ?? []
    }
}

/// `GET /v1/version`.
public struct VersionReport: Codable, Sendable, Equatable {
    /// The control protocol's version (1).
    public var version: Int
    /// The daemon's ecto-tunnel version (`EctoVersion.current`, what `ecto-tunnel --version`
    /// prints); absent from daemons before 0.1.0.
    public var daemonVersion: String?
    public var pid: Int32
    public var config: String

    enum CodingKeys: String, CodingKey {
        case version, pid, config
        case daemonVersion = "daemon_version"
    }

    public init(pid: Int32, config: String, daemonVersion: String? = EctoVersion.current) {
        self.version = ControlProtocol.version
        self.daemonVersion = daemonVersion
        self.pid = pid
        self.config = config
    }
}

/// One line of `GET /v1/events`.
public struct ControlEvent: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable {
        /// First line of every subscription: the whole status.
        case snapshot
        /// A tunnel changed state (or was added, replaced or its target changed).
        case tunnel
        /// A tunnel was removed by a reload.
        case removed
    }

    public var event: Kind
    public var time: Date
    public var tunnels: [TunnelReport]?
    public var tunnel: TunnelReport?
    public var name: String?

    public static func snapshot(_ status: StatusReport) -> ControlEvent {
        ControlEvent(event: .snapshot, time: Date(), tunnels: status.tunnels, tunnel: nil, name: nil)
    }

    public static func changed(_ tunnel: TunnelReport) -> ControlEvent {
        ControlEvent(event: .tunnel, time: Date(), tunnels: nil, tunnel: tunnel, name: tunnel.name)
    }

    public static func removed(_ name: String) -> ControlEvent {
        ControlEvent(event: .removed, time: Date(), tunnels: nil, tunnel: nil, name: name)
    }
}

/// A refused operation: HTTP status and the error body.
public struct ControlFailure: Error, Sendable, Equatable {
    public var status: Int
    public var report: ErrorReport

    public init(_ status: Int, _ message: String, problems: [ConfigProblem]? = nil, stage: String? = nil) {
        self.status = status
        self.report = ErrorReport(error: message, problems: problems, stage: stage)
    }
}

/// What the daemon offers the control server: the server routes and encodes, the registry acts.
/// Methods are called on the control server's thread, one at a time.
public protocol ControlRegistry: AnyObject, Sendable {
    /// `deep`: run every enabled tunnel's probe now (a `tcp` probe where none is configured).
    func status(deep: Bool) -> StatusReport
    func version() -> VersionReport
    /// Answers through `reply` (any thread), once the new target's pre-flight has a verdict.
    func setTarget(tunnel: String, _ request: TargetRequest, reply: @escaping @Sendable (Result<ActionReport, ControlFailure>) -> Void)
    func setEnabled(tunnel: String, enabled: Bool) -> Result<ActionReport, ControlFailure>
    /// `GET /v1/metrics`: the Prometheus text exposition format (version 0.0.4).
    func metrics() -> String
    /// `tunnel` nil: every enabled tunnel.
    func reconnect(tunnel: String?) -> Result<ActionReport, ControlFailure>
    /// Answers through `reply` (any thread), once every changed tunnel's pre-flight has a verdict.
    func reload(_ request: ReloadRequest, reply: @escaping @Sendable (Result<ReloadReport, ControlFailure>) -> Void)
}

extension ControlRegistry {
    public func status() -> StatusReport { status(deep: false) }
}
