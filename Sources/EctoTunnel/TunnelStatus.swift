#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A snapshot of one tunnel for status queries (the fields of the status contract).
public struct TunnelStatus: Sendable, Equatable {
    public var name: String
    public var state: TunnelState
    public var enabled: Bool
    public var target: String
    public var local: String
    public var remote: String
    /// Forwarded connections currently open (including ones held while reconnecting).
    public var connections: Int
    /// Payload bytes received from the remote side and delivered towards local clients.
    public var bytesIn: UInt64
    /// Payload bytes read from local clients and sent towards the remote side.
    public var bytesOut: UInt64
    /// Sessions established after the first one.
    public var reconnects: Int
    /// Wall-clock time of the last state change.
    public var since: Date
    public var lastError: String?
    /// The local listener is open (false before the first bind attempt, after a failed bind, and
    /// while disabled or stopping).
    public var listening: Bool
    /// Connections accepted since start (for tests and benchmarks).
    public var acceptedTotal: UInt64
    /// Channel opens the server refused since start.
    public var refusedTotal: UInt64
    /// Local clients refused at once since start (`max_clients`, or descriptors running out).
    public var clientsRefused: UInt64
    /// When the next attempt is due (state `backoff`).
    public var retryAt: Date?
    /// What the pending retry waits for (state `backoff`): the server, a refusing SSH port, or
    /// this machine.
    public var retryCause: RetryCause?
    /// Sessions of earlier configurations (an old target) still finishing their connections.
    public var draining: [Draining]
    /// SSH sessions configured (`sessions`) and how many of them are up.
    public var sessions: Int
    public var sessionsUp: Int
    /// Set on the driver of a configuration change while it proves the new session (see
    /// `Tunnel.prepare`); nil on every other driver.
    public var preflight: Preflight?
    /// A change of this tunnel being pre-flighted now: the new target and how far it got.
    public var change: Change?
    /// Each forward of the tunnel, in config order (the first is `local`/`remote`).
    public var forwards: [ForwardStatus]

    /// How far a pre-flight got: the stages are resolve, connect, handshake, host key,
    /// authentication, channel (a channel opened to `remote` through the new session).
    public enum Preflight: Sendable, Equatable {
        case running(stage: String)
        case passed
        case failed(stage: String, reason: String)
    }

    public struct Change: Sendable, Equatable {
        public var target: String
        public var stage: String
        public var started: Date
        public init(target: String, stage: String, started: Date) {
            self.target = target
            self.stage = stage
            self.started = started
        }
    }

    public struct Draining: Sendable, Equatable {
        public var target: String
        public var connections: Int
    }

    public init(
        name: String, state: TunnelState, enabled: Bool, target: String, local: String, remote: String,
        forwards: [(local: String, remote: String)] = []
    ) {
        self.name = name
        self.state = state
        self.enabled = enabled
        self.target = target
        self.local = local
        self.remote = remote
        self.connections = 0
        self.bytesIn = 0
        self.bytesOut = 0
        self.reconnects = 0
        self.since = Date()
        self.lastError = nil
        self.listening = false
        self.acceptedTotal = 0
        self.refusedTotal = 0
        self.clientsRefused = 0
        self.retryAt = nil
        self.retryCause = nil
        self.draining = []
        self.sessions = 1
        self.sessionsUp = state == .up ? 1 : 0
        self.forwards = (forwards.isEmpty ? [(local, remote)] : forwards).map { ForwardStatus(local: $0.local, remote: $0.remote) }
    }
}

/// One forward of a tunnel (`forwards`, or its one `local`/`remote`): its listener and what went
/// through it. The tunnel's figures are these added up (plus nothing else).
public struct ForwardStatus: Sendable, Equatable {
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
    public enum State: String, Sendable, Equatable {
        /// Open: clients are accepted (and held, served or refused as the tunnel's state says).
        case listening
        /// It could not be opened (a busy port, an address that is gone); tried again every few
        /// seconds while the tunnel's other forwards serve.
        case retrying
        /// Not open: the tunnel is disabled, stopping, or its listeners are being handed over.
        case closed
    }

    public init(local: String, remote: String, state: State = .closed) {
        self.local = local
        self.remote = remote
        self.state = state
        self.connections = 0
        self.bytesIn = 0
        self.bytesOut = 0
        self.lastError = nil
    }
}
