/// The state of a tunnel, as in the status contract.
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

/// Why an attempt or a session failed, as far as the retry policy cares.
public enum FailureKind: Sendable, Equatable {
    /// Unreachable, timed out, reset, dead peer, protocol hiccup: retried forever with backoff.
    case transport
    /// The host answered but nothing listens on the SSH port (ECONNREFUSED): typically sshd
    /// restarting. Retried forever every `Policy.refusedRetryCap` (jittered down to half of it):
    /// a refused TCP connect costs the server nothing and never reaches authentication (no ban
    /// risk), and it lets the tunnel come back within that cap (plus one handshake) of the
    /// server accepting again: 500 ms + ~100 ms stays under the 1 s we promise.
    ///
    /// A refusal also clears the failure count: the server was away, so whatever ended the last
    /// session was an outage, not a server that keeps accepting and dropping us (the storm the
    /// count guards against). Without this, two restarts within `stableAfter` made the first
    /// attempt after the second one wait the grown backoff (4–8 s) instead of ≤ 1 s.
    case refused
    /// Host key unknown, changed, revoked, or not the pinned one: the operator must decide.
    case hostKey
    /// The server refused our credentials: retried a few times, then the operator must act.
    case authentication
    /// Our own setup is wrong (key file missing or too open, wrong passphrase, port busy).
    case local
}

/// What the owner of a `ReconnectMachine` must do next.
public enum ReconnectAction<Instant: Sendable>: Sendable {
    /// Nothing to do.
    case none
    /// Start a connection attempt now.
    case connect
    /// Tear down the current session (if any) and do nothing until the given instant, then call
    /// `deadlineReached`.
    case waitUntil(Instant)
    /// Tear down the current session (if any); the tunnel stays in `failed` until the operator acts.
    case giveUp
    /// Tear down the current session (if any); the tunnel is disabled.
    case disconnect
}

extension ReconnectAction: Equatable where Instant: Equatable {}

/// The per-tunnel reconnect policy as a pure value: events and the current instant go in,
/// actions come out. It never sleeps, never does I/O and never reads a clock, so it is tested
/// with plain instants.
public struct ReconnectMachine<Instant: InstantProtocol & Sendable>: Sendable where Instant.Duration == Duration {
    /// Tunable rules.
    public struct Policy: Sendable {
        public var backoff: BackoffPolicy
        /// A session that stayed up this long resets the failure count ("grace" rule).
        public var stableAfter: Duration
        /// Consecutive authentication refusals tolerated before `failed`.
        public var authenticationAttempts: Int
        /// The longest wait after a refused TCP connect.
        public var refusedRetryCap: Duration

        public init(
            backoff: BackoffPolicy, stableAfter: Duration = .seconds(30), authenticationAttempts: Int = 3,
            refusedRetryCap: Duration = .milliseconds(500)
        ) {
            self.backoff = backoff
            self.stableAfter = stableAfter
            self.authenticationAttempts = authenticationAttempts
            self.refusedRetryCap = refusedRetryCap
        }
    }

    public let policy: Policy
    public private(set) var state: TunnelState
    /// Consecutive failed attempts and short-lived sessions (reset by a stable session or a
    /// refused connect; see `FailureKind.refused`).
    public private(set) var failures = 0
    /// Consecutive authentication refusals.
    public private(set) var authenticationFailures = 0
    /// Sessions established after the first one.
    public private(set) var reconnects = 0
    /// When the state last changed.
    public private(set) var since: Instant
    /// The last failure, for status.
    public private(set) var lastError: String?
    /// When the pending backoff ends (state `backoff`).
    public private(set) var retryAt: Instant?
    private var everUp = false
    private var upSince: Instant?

    public init(policy: Policy, enabled: Bool, now: Instant) {
        self.policy = policy
        self.state = enabled ? .connecting : .down
        self.since = now
    }

    private mutating func enter(_ newState: TunnelState, _ now: Instant) {
        if newState != state { since = now }
        state = newState
    }

    /// The first action after creation: connect if enabled.
    public func initialAction() -> ReconnectAction<Instant> { state == .connecting ? .connect : .none }

    /// The attempt succeeded: the session is up.
    public mutating func connected(now: Instant) -> ReconnectAction<Instant> {
        guard state == .connecting else { return .none }
        if everUp { reconnects += 1 }
        everUp = true
        upSince = now
        authenticationFailures = 0
        retryAt = nil
        enter(.up, now)
        return .none
    }

    /// The attempt failed before the session was up.
    public mutating func attemptFailed(_ kind: FailureKind, message: String, now: Instant, random: inout some RandomNumberGenerator)
        -> ReconnectAction<Instant>
    {
        guard state == .connecting else { return .none }
        lastError = message
        switch kind {
        case .hostKey, .local:
            return fail(now)
        case .authentication:
            authenticationFailures += 1
            if authenticationFailures >= policy.authenticationAttempts { return fail(now) }
        case .refused:
            failures = 0
            return schedule(BackoffPolicy.jittered(policy.refusedRetryCap, using: &random), now)
        case .transport:
            break
        }
        failures += 1
        return scheduleRetry(now, &random)
    }

    /// An established session ended (dead peer, reset, server shutdown).
    public mutating func sessionLost(message: String, now: Instant, random: inout some RandomNumberGenerator) -> ReconnectAction<Instant> {
        guard state == .up else { return .none }
        lastError = message
        if let upSince, upSince.duration(to: now) >= policy.stableAfter {
            // The session was healthy for a while: this is a fresh outage, reconnect at once.
            failures = 0
            enter(.connecting, now)
            return .connect
        }
        failures += 1
        return scheduleRetry(now, &random)
    }

    /// The backoff deadline passed.
    public mutating func deadlineReached(now: Instant) -> ReconnectAction<Instant> {
        guard state == .backoff, let retryAt, now >= retryAt else { return .none }
        self.retryAt = nil
        enter(.connecting, now)
        return .connect
    }

    /// Reconnect now, skipping any backoff: an operator's `reconnect`, a resume from suspend, a
    /// network change. A `failed` tunnel is retried too (the operator asked), a `down` one is not.
    public mutating func reconnectNow(now: Instant) -> ReconnectAction<Instant> {
        switch state {
        case .down, .connecting:
            return .none
        case .up, .backoff, .failed:
            if state == .failed { failures = 0; authenticationFailures = 0 }
            retryAt = nil
            enter(.connecting, now)
            return .connect
        }
    }

    /// Hint that the network changed or the machine resumed: in backoff, retry at once (the cause
    /// may be gone); when up, the owner should probe the session (not our decision to drop it).
    public mutating func networkChanged(now: Instant) -> ReconnectAction<Instant> {
        guard state == .backoff else { return .none }
        retryAt = nil
        enter(.connecting, now)
        return .connect
    }

    /// Our own side broke outside any attempt (the local port is taken by another process):
    /// `failed` from any enabled state, with `message` as the reason.
    public mutating func localFailure(message: String, now: Instant) -> ReconnectAction<Instant> {
        guard state != .down, state != .failed else { return .none }
        lastError = message
        return fail(now)
    }

    /// The operator disabled the tunnel.
    public mutating func disable(now: Instant) -> ReconnectAction<Instant> {
        guard state != .down else { return .none }
        retryAt = nil
        enter(.down, now)
        return .disconnect
    }

    /// The operator enabled the tunnel.
    public mutating func enable(now: Instant) -> ReconnectAction<Instant> {
        guard state == .down else { return .none }
        failures = 0
        authenticationFailures = 0
        enter(.connecting, now)
        return .connect
    }

    private mutating func fail(_ now: Instant) -> ReconnectAction<Instant> {
        retryAt = nil
        enter(.failed, now)
        return .giveUp
    }

    private mutating func scheduleRetry(_ now: Instant, _ random: inout some RandomNumberGenerator) -> ReconnectAction<Instant> {
        schedule(policy.backoff.delay(afterFailures: failures, using: &random), now)
    }

    /// Waits `delay`, in state `backoff`.
    private mutating func schedule(_ delay: Duration, _ now: Instant) -> ReconnectAction<Instant> {
        let at = now.advanced(by: delay)
        retryAt = at
        enter(.backoff, now)
        return .waitUntil(at)
    }
}
