import EctoPlatform
import EctoStatus
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

/// `GET /v1/status`: every tunnel, in config order.
public struct StatusReport: Codable, Sendable, Equatable {
    public var version: Int
    /// The daemon's ecto-tunnel version (`EctoVersion.current`); absent from daemons before 0.1.0.
    public var daemonVersion: String?
    public var tunnels: [TunnelStatus]

    enum CodingKeys: String, CodingKey {
        case version, tunnels
        case daemonVersion = "daemon_version"
    }

    public init(tunnels: [TunnelStatus], daemonVersion: String? = EctoVersion.current) {
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
    public var tunnels: [TunnelStatus]

    public init(message: String, tunnels: [TunnelStatus]) {
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
        config: String, added: [String], removed: [String], changed: [String], unchanged: [String],
        warnings: [ConfigProblem],
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
    public var tunnels: [TunnelStatus]?
    public var tunnel: TunnelStatus?
    public var name: String?

    public static func snapshot(_ status: StatusReport) -> ControlEvent {
        ControlEvent(event: .snapshot, time: Date(), tunnels: status.tunnels, tunnel: nil, name: nil)
    }

    public static func changed(_ tunnel: TunnelStatus) -> ControlEvent {
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
/// Methods are called on the control server's thread, one at a time, and must return at once:
/// whatever waits (probes, a driver acting on a command, a pre-flight) answers later through
/// `reply`, from any thread, while the control thread serves the other clients.
public protocol ControlRegistry: AnyObject, Sendable {
    /// A snapshot of every tunnel, in config order.
    func status() -> StatusReport
    /// Runs every enabled tunnel's probe now (a `tcp` probe where none is configured); answers
    /// through `reply` once all ran or their deadline passed.
    func deepStatus(reply: @escaping @Sendable (StatusReport) -> Void)
    func version() -> VersionReport
    /// Answers through `reply` (any thread), once the new target's pre-flight has a verdict.
    func setTarget(
        tunnel: String, _ request: TargetRequest,
        reply: @escaping @Sendable (Result<ActionReport, ControlFailure>) -> Void)
    /// Answers through `reply` once the driver acted on it (briefly awaited) or at once for an
    /// unknown tunnel.
    func setEnabled(
        tunnel: String, enabled: Bool, reply: @escaping @Sendable (Result<ActionReport, ControlFailure>) -> Void)
    /// `GET /v1/metrics`: the Prometheus text exposition format (version 0.0.4).
    func metrics() -> String
    /// `tunnel` nil: every enabled tunnel. Answers through `reply` once the drivers acted on it.
    func reconnect(tunnel: String?, reply: @escaping @Sendable (Result<ActionReport, ControlFailure>) -> Void)
    /// Answers through `reply` (any thread), once every changed tunnel's pre-flight has a verdict.
    func reload(_ request: ReloadRequest, reply: @escaping @Sendable (Result<ReloadReport, ControlFailure>) -> Void)
}
