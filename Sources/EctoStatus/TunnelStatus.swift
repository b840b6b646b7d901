#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The state of a tunnel, as in the status contract (`state`).
public enum TunnelState: String, Sendable, Codable, CaseIterable {
    /// A session is being established (TCP connect, handshake, host key, authentication).
    case connecting
    /// The session is established and forwarding.
    case up
    /// The last attempt failed; the next one is scheduled.
    case backoff
    /// Disabled by the operator (or by the config).
    case down
    /// Needs the operator: host key unknown/changed, authentication refused repeatedly, bad local
    /// setup (key file, busy port). No automatic retries (except re-binding a busy port).
    case failed
}

/// What a pending retry waits for, in status (`retry_cause`).
public enum RetryCause: String, Sendable, Codable, Equatable {
    /// The server or the network: exponential backoff (or the fast refused cadence).
    case remote
    /// Connections refused by the SSH port (sshd down or restarting).
    case refused
    /// Something on this machine (a busy local port, a missing key file, descriptors or memory).
    case local
}

/// What an end-to-end probe found (`gateway.outcome`).
public enum ProbeOutcome: String, Sendable, Codable, Equatable, CaseIterable {
    /// The service answered (any HTTP status but 401/403 for http; 101 for websocket; open
    /// connection for tcp).
    case up
    /// The gateway answers but refused the token (HTTP 401 or 403), or wants one and none was
    /// sent: not "ok", and not "down" either.
    case tokenRefused = "token-refused"
    /// Nothing listens on the local address: the daemon or the tunnel is down.
    case refused
    /// The tunnel accepted, then closed or reset the connection: the remote port does not answer.
    case closedByTunnel = "closed-by-tunnel"
    /// No connection or answer before the deadline.
    case timeout
    /// Something answered, but not what the probe expects (not HTTP, no WebSocket, bad accept key).
    case protocolError = "protocol-error"
    /// A local error (resolution, socket).
    case error
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

/// A change of a running tunnel being pre-flighted (`change`).
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

/// The end-to-end check of the service behind a tunnel (the `probe` key), apart from the SSH state.
public struct GatewayReport: Codable, Sendable, Equatable {
    /// The service answered.
    public var ok: Bool
    public var outcome: ProbeOutcome
    /// One line, e.g. "HTTP 200 in 3.1 ms".
    public var detail: String
    public var latencyMs: Double
    /// The probe that ran, e.g. "http:/health".
    public var probe: String
    public var checked: Date
    /// Where the daemon's probe took the gateway token from (`$OPENCLAW_GATEWAY_TOKEN`,
    /// `gateway.remote.token (~/.openclaw/openclaw.json:12)`, …), or `none`; never the token.
    public var tokenSource: String?

    public init(
        ok: Bool, outcome: ProbeOutcome, detail: String, latencyMs: Double, probe: String, checked: Date,
        tokenSource: String? = nil
    ) {
        self.ok = ok
        self.outcome = outcome
        self.detail = detail
        self.latencyMs = latencyMs
        self.probe = probe
        self.checked = checked
        self.tokenSource = tokenSource
    }

    /// The gateway answers but refused the token.
    public var tokenRefused: Bool { outcome == .tokenRefused }

    enum CodingKeys: String, CodingKey {
        case ok, outcome, detail, latencyMs = "latency_ms", probe, checked, tokenSource = "token_source"
    }
}

/// One forward of a tunnel (`forwards`, or its one `local`/`remote`): its listener and what went
/// through it. The tunnel's figures are these added up.
public struct ForwardStatus: Codable, Sendable, Equatable {
    /// The listen address, `host:port`.
    public var local: String
    /// The destination as seen from the SSH server, `host:port`.
    public var remote: String
    public var state: State
    /// Connections of this forward open now (held ones included).
    public var connections: Int
    /// Bytes from the remote side to this forward's clients, and from them to the remote side.
    public var bytesIn: UInt64
    public var bytesOut: UInt64
    /// Why the listener is not open (`retrying`), e.g. a busy port and its holder; nil otherwise.
    public var lastError: String?

    /// The listener's state.
    public enum State: String, Codable, Sendable, Equatable {
        /// Open: clients are accepted (and held, served or refused as the tunnel's state says).
        case listening
        /// It could not be opened (a busy port, an address that is gone); tried again every few
        /// seconds while the tunnel's other forwards serve.
        case retrying
        /// Not open: the tunnel is disabled, stopping, or its listeners are being handed over.
        case closed
    }

    public init(
        local: String, remote: String, state: State = .closed, connections: Int = 0, bytesIn: UInt64 = 0,
        bytesOut: UInt64 = 0, lastError: String? = nil
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

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        local = try c.decode(String.self, forKey: .local)
        remote = try c.decode(String.self, forKey: .remote)
        state = try c.decode(State.self, forKey: .state)
        connections = try c.decodeIfPresent(Int.self, forKey: .connections) ?? 0
        bytesIn = try c.decodeIfPresent(UInt64.self, forKey: .bytesIn) ?? 0
        bytesOut = try c.decodeIfPresent(UInt64.self, forKey: .bytesOut) ?? 0
        lastError = try c.decodeIfPresent(String.self, forKey: .lastError)
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

/// One tunnel's status: what the driver publishes, what the supervisor adds (the probe result),
/// what `GET /v1/status` sends and what the CLI decodes. One type on both sides of the control
/// socket; its JSON form is the status contract (docs/control-protocol.md), written out by hand
/// below so that the daemon-side fields stay out of it and absent keys of older daemons decode.
public struct TunnelStatus: Codable, Sendable, Equatable {
    public var name: String
    public var state: TunnelState
    public var enabled: Bool
    public var target: String
    public var local: String
    public var remote: String
    /// Forwarded connections currently open (including ones held while reconnecting, and those of
    /// draining sessions).
    public var connections: Int
    /// Payload bytes received from the remote side and delivered towards local clients.
    public var bytesIn: UInt64
    /// Payload bytes read from local clients and sent towards the remote side.
    public var bytesOut: UInt64
    /// Sessions established after the first one.
    public var reconnects: Int
    /// Wall-clock time of the last state change.
    public var since: Date
    /// The latest failure, kept after recovery for diagnosis.
    public var lastError: String?
    /// Sessions of earlier configurations (an old target) still finishing their connections.
    public var draining: [DrainingSession]
    /// The latest probe of the service behind the tunnel (nil: no probe configured or not run yet).
    /// Set by the daemon's supervisor, never by a driver.
    public var gateway: GatewayReport?
    /// SSH sessions configured (`sessions`) and how many of them are up.
    public var sessions: Int
    public var sessionsUp: Int
    /// Local clients refused at once since start (`max_clients`, or descriptors running out).
    public var clientsRefused: UInt64
    /// When the next attempt is due (state `backoff`; encoded as null in every other state).
    public var retryAt: Date?
    /// What the pending retry waits for (state `backoff`; encoded as null in every other state).
    public var retryCause: RetryCause?
    /// With jump hosts: the hop that failed the last attempt or ended the last session
    /// (`hop 1/2 (ops@bastion:22)`), while the tunnel is not up; nil (absent) otherwise.
    public var hop: String?
    /// A change of this tunnel being pre-flighted now: the new target and how far it got.
    public var change: ChangeReport?
    /// Every forward, in config order (the first is `local`/`remote`); empty from daemons before
    /// forwards existed.
    public var forwards: [ForwardStatus]

    // Daemon-side only: not part of the status contract, not encoded (decoded as the defaults).

    /// The local listener is open (false before the first bind attempt, after a failed bind, and
    /// while disabled or stopping).
    public var listening: Bool = false
    /// Connections accepted since start (for tests and benchmarks).
    public var acceptedTotal: UInt64 = 0
    /// Channel opens the server refused since start.
    public var refusedTotal: UInt64 = 0
    /// Set on the driver of a configuration change while it proves the new session (see
    /// `Tunnel.prepare`); nil on every other driver.
    public var preflight: Preflight?

    /// How far a pre-flight got: the stages are resolve, connect, handshake, host key,
    /// authentication, channel (a channel opened to `remote` through the new session).
    public enum Preflight: Sendable, Equatable {
        case running(stage: String)
        case passed
        case failed(stage: String, reason: String)
    }

    public init(
        name: String, state: TunnelState, enabled: Bool, target: String, local: String, remote: String,
        connections: Int = 0, bytesIn: UInt64 = 0, bytesOut: UInt64 = 0, reconnects: Int = 0, since: Date = Date(),
        lastError: String? = nil, draining: [DrainingSession] = [], sessions: Int = 1, sessionsUp: Int? = nil,
        forwards: [(local: String, remote: String)] = []
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
        self.gateway = nil
        self.sessions = sessions
        self.sessionsUp = sessionsUp ?? (state == .up ? 1 : 0)
        self.clientsRefused = 0
        self.retryAt = nil
        self.retryCause = nil
        self.hop = nil
        self.change = nil
        self.forwards = (forwards.isEmpty ? [(local, remote)] : forwards).map {
            ForwardStatus(local: $0.local, remote: $0.remote)
        }
    }

    /// Up, or deliberately down: what `status` counts as healthy.
    public var isHealthy: Bool { !enabled || state == .up }

    /// When the next attempt is due and why, only in `backoff` (what the contract publishes).
    public var pendingRetry: (at: Date?, cause: RetryCause?) {
        state == .backoff ? (retryAt, retryCause) : (nil, nil)
    }

    enum CodingKeys: String, CodingKey {
        case name, state, enabled, target, local, remote, connections
        case bytesIn = "bytes_in", bytesOut = "bytes_out", reconnects, since
        case lastError = "last_error", draining, gateway, sessions, sessionsUp = "sessions_up", change
        case clientsRefused = "clients_refused", retryAt = "retry_at", retryCause = "retry_cause", hop
        case forwards
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        state = try c.decode(TunnelState.self, forKey: .state)
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
        sessionsUp = try c.decodeIfPresent(Int.self, forKey: .sessionsUp) ?? (state == .up ? 1 : 0)
        clientsRefused = try c.decodeIfPresent(UInt64.self, forKey: .clientsRefused) ?? 0
        retryAt = try c.decodeIfPresent(Date.self, forKey: .retryAt)
        retryCause = try c.decodeIfPresent(RetryCause.self, forKey: .retryCause)
        hop = try c.decodeIfPresent(String.self, forKey: .hop)
        change = try c.decodeIfPresent(ChangeReport.self, forKey: .change)
        forwards = try c.decodeIfPresent([ForwardStatus].self, forKey: .forwards) ?? []
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
        let retry = pendingRetry
        try c.encode(retry.at, forKey: .retryAt)
        try c.encode(retry.cause, forKey: .retryCause)
        try c.encodeIfPresent(hop, forKey: .hop)
        try c.encodeIfPresent(change, forKey: .change)
        // Every tunnel of a running daemon has at least one forward; empty only in values made
        // without one (a daemon from before forwards sent none): then the key is left out, and
        // documents recorded before it existed stay byte for byte the same.
        if !forwards.isEmpty { try c.encode(forwards, forKey: .forwards) }
    }
}
