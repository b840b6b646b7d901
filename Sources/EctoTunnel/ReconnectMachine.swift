import EctoStatus

/// Why an attempt or a session failed, as far as the retry policy cares.
public enum FailureKind: Sendable, Equatable {
    /// Unreachable, timed out, reset, dead peer, protocol hiccup: retried forever with
    /// exponential backoff (each counts in `failures`).
    case transport
    /// The host answered but nothing listens on the SSH port (ECONNREFUSED): typically sshd
    /// restarting. Within `Policy.fastWindow` of the start of an outage (unless sessions keep dying
    /// young, see `ReconnectMachine`), retried every `Policy.refusedRetryCap` (jittered down to
    /// half of it): a refused TCP connect costs the server nothing and lets the tunnel come back
    /// within that cap (plus one handshake) of the server accepting again. After the window it
    /// joins the exponential backoff, so a permanent outage costs a few attempts an hour.
    case refused
    /// Host key unknown, changed, revoked, or not the pinned one: the operator must decide.
    case hostKey
    /// The server refused our credentials: retried a few times, then the operator must act.
    case authentication
    /// Our own setup is wrong in a way only the operator fixes (a key file readable by others, a
    /// wrong passphrase, an unusable key): `failed`.
    case local
    /// Our own side, and it may clear by itself (a key file not there yet, the local port held by
    /// another process, known_hosts not writable): a fixed retry every `Policy.localRetry`, never
    /// the server's backoff count.
    case localTemporary
    /// This process ran out of something (file descriptors, kernel buffers, memory): a fixed retry
    /// every `Policy.resourceRetry`, never the server's backoff count.
    case resources
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
/// with plain instants (`ReconnectMachineTests` simulates outages, flapping servers and storms).
///
/// The rules, in short:
/// - `failures` is the evidence against the server: failed attempts (transport, authentication,
///   refusals after the fast window) and sessions that died young (< `provenAfter`, no channel
///   opened). It drives the
///   exponential backoff. A session that lived `provenAfter`, or carried traffic (a channel
///   opened), proves the server works: losing it
///   clears the count and reconnects at once, however short the outage and however often it
///   repeats. A server that accepts and drops every session at once keeps growing the count, so
///   it is met with longer and longer waits, never a storm.
/// - Refused connects in the first `fastWindow` of an outage are retried at the fast cadence
///   (≤ `refusedRetryCap`) without counting, unless the last two sessions or more died young; after the window
///   they join the backoff.
/// - Local trouble (`localTemporary`, `resources`) has fixed short retries of its own and never
///   touches `failures`.
public struct ReconnectMachine<Instant: InstantProtocol & Sendable>: Sendable where Instant.Duration == Duration {
    /// Tunable rules.
    public struct Policy: Sendable {
        public var backoff: BackoffPolicy
        /// A session that lived this long proves the server works: losing it is an outage, not a
        /// failure, so the next attempt starts at once with a clean count.
        public var provenAfter: Duration
        /// Consecutive authentication refusals tolerated before `failed`.
        public var authenticationAttempts: Int
        /// The longest wait after a refused TCP connect in the fast window.
        public var refusedRetryCap: Duration
        /// How long into an outage refused connects keep the fast cadence.
        public var fastWindow: Duration
        /// The fixed wait after a `localTemporary` failure.
        public var localRetry: Duration
        /// The fixed wait after a `resources` failure.
        public var resourceRetry: Duration

        public init(
            backoff: BackoffPolicy, provenAfter: Duration = .seconds(2), authenticationAttempts: Int = 3,
            refusedRetryCap: Duration = .milliseconds(500), fastWindow: Duration = .seconds(10),
            localRetry: Duration = .seconds(5), resourceRetry: Duration = .seconds(1)
        ) {
            self.backoff = backoff
            self.provenAfter = provenAfter
            self.authenticationAttempts = authenticationAttempts
            self.refusedRetryCap = refusedRetryCap
            self.fastWindow = fastWindow
            self.localRetry = localRetry
            self.resourceRetry = resourceRetry
        }
    }

    public let policy: Policy
    public private(set) var state: TunnelState
    /// Evidence against the server since it last proved itself (see the type's rules).
    public private(set) var failures = 0
    /// Consecutive authentication refusals.
    public private(set) var authenticationFailures = 0
    /// Sessions established after the first one.
    public private(set) var reconnects = 0
    /// When the state last changed.
    public private(set) var since: Instant
    /// The last failure, for status.
    public private(set) var lastError: String?
    /// When the pending retry is due (state `backoff`).
    public private(set) var retryAt: Instant?
    /// What the pending retry waits for (state `backoff`).
    public private(set) var retryCause: RetryCause?
    /// The nominal (un-jittered) wait of the rule that scheduled the pending retry: the fast
    /// cadence, a backoff step, or a fixed local wait. A log line is worth writing when it grows.
    public private(set) var retryStep: Duration?
    /// When the current outage began: the first failure or loss since the last session (nil while
    /// up, or before the first attempt failed).
    public private(set) var outageStart: Instant?
    private var everUp = false
    private var upSince: Instant?
    /// The last session ended before `provenAfter`: refusals get no fast cadence until one lives.
    private var youngDeaths = 0
    /// The current session carried traffic (`sessionProven`).
    private var proven = false
    /// After a proven session is lost: until when one young death is still part of that outage.
    private var graceUntil: Instant?
    private var graceUsed = false

    public init(policy: Policy, enabled: Bool, now: Instant) {
        self.policy = policy
        self.state = enabled ? .connecting : .down
        self.since = now
    }

    private mutating func enter(_ newState: TunnelState, _ now: Instant) {
        if newState != state { since = now }
        state = newState
        if newState != .backoff {
            retryAt = nil
            retryCause = nil
            retryStep = nil
        }
        if newState == .up || newState == .down { outageStart = nil }
    }

    /// The first action after creation: connect if enabled.
    public func initialAction() -> ReconnectAction<Instant> { state == .connecting ? .connect : .none }

    /// The attempt succeeded: the session is up.
    public mutating func connected(now: Instant) -> ReconnectAction<Instant> {
        guard state == .connecting else { return .none }
        if everUp { reconnects += 1 }
        everUp = true
        upSince = now
        proven = false
        authenticationFailures = 0
        enter(.up, now)
        return .none
    }

    /// The session carried traffic (a channel opened): the server works, whatever the session's
    /// age. A server that accepts and then drops every session never gets this far.
    public mutating func sessionProven() {
        guard state == .up else { return }
        proven = true
    }

    /// The attempt failed before the session was up.
    public mutating func attemptFailed(_ kind: FailureKind, message: String, now: Instant, random: inout some RandomNumberGenerator)
        -> ReconnectAction<Instant>
    {
        guard state == .connecting else { return .none }
        lastError = message
        let outageStart = self.outageStart ?? now
        self.outageStart = outageStart
        switch kind {
        case .hostKey, .local:
            return fail(now)
        case .localTemporary:
            return schedule(policy.localRetry, .local, now, step: policy.localRetry)
        case .resources:
            return schedule(policy.resourceRetry, .local, now, step: policy.resourceRetry)
        case .authentication:
            authenticationFailures += 1
            if authenticationFailures >= policy.authenticationAttempts { return fail(now) }
            failures += 1
            return scheduleBackoff(.remote, now, &random)
        case .refused:
            // Fast unless the last sessions died young, twice in a row or more (a server that
            // crashes on every session and restarts must not get the fast cadence; one short
            // session, say a server stopped just after we connected, is forgiven); a transport
            // hiccup as the server went away (the port still open for a moment) is no evidence.
            if youngDeaths < 2 && outageStart.duration(to: now) < policy.fastWindow {
                return schedule(BackoffPolicy.jittered(policy.refusedRetryCap, using: &random), .refused, now, step: policy.refusedRetryCap)
            }
            failures += 1
            return scheduleBackoff(.refused, now, &random)
        case .transport:
            failures += 1
            return scheduleBackoff(.remote, now, &random)
        }
    }

    /// An established session ended (dead peer, reset, server shutdown).
    public mutating func sessionLost(message: String, now: Instant, random: inout some RandomNumberGenerator) -> ReconnectAction<Instant> {
        guard state == .up else { return .none }
        lastError = message
        outageStart = now
        if proven || (upSince.map { $0.duration(to: now) >= policy.provenAfter } ?? false) {
            // The server worked: this is an outage, not a server that drops us. Try again now.
            failures = 0
            youngDeaths = 0
            graceUntil = now.advanced(by: policy.fastWindow)
            graceUsed = false
            enter(.connecting, now)
            return .connect
        }
        if let graceUntil, now < graceUntil, !graceUsed {
            // The first young death right after a proven session ended belongs to the same outage
            // (the server went away while we reconnected): retried at the fast cadence, once.
            graceUsed = true
            return schedule(BackoffPolicy.jittered(policy.refusedRetryCap, using: &random), .remote, now, step: policy.refusedRetryCap)
        }
        // Died young: evidence against the server (it may accept and drop every session).
        failures += 1
        youngDeaths += 1
        return scheduleBackoff(.remote, now, &random)
    }

    /// The backoff deadline passed.
    public mutating func deadlineReached(now: Instant) -> ReconnectAction<Instant> {
        guard state == .backoff, let retryAt, now >= retryAt else { return .none }
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
            if state == .failed { failures = 0; authenticationFailures = 0; youngDeaths = 0 }
            enter(.connecting, now)
            return .connect
        }
    }

    /// Hint that the network changed or the machine resumed: in backoff, retry at once (the cause
    /// may be gone); when up, the owner should probe the session (not our decision to drop it).
    public mutating func networkChanged(now: Instant) -> ReconnectAction<Instant> {
        guard state == .backoff else { return .none }
        enter(.connecting, now)
        return .connect
    }

    /// Our own side broke outside any attempt (the local port is taken by another process): from
    /// any enabled state, a fixed wait of `localRetry` (state `backoff`, cause `local`), with
    /// `message` as the reason; `deadlineReached` then asks for a new attempt, which begins by
    /// trying the local side again.
    public mutating func localFailure(message: String, now: Instant) -> ReconnectAction<Instant> {
        guard state != .down else { return .none }
        if state == .failed { return .none }  // the operator's problem stays the reason shown
        lastError = message
        if outageStart == nil { outageStart = now }
        return schedule(policy.localRetry, .local, now, step: policy.localRetry)
    }

    /// The operator disabled the tunnel.
    public mutating func disable(now: Instant) -> ReconnectAction<Instant> {
        guard state != .down else { return .none }
        enter(.down, now)
        return .disconnect
    }

    /// The operator enabled the tunnel.
    public mutating func enable(now: Instant) -> ReconnectAction<Instant> {
        guard state == .down else { return .none }
        failures = 0
        authenticationFailures = 0
        youngDeaths = 0
        enter(.connecting, now)
        return .connect
    }

    private mutating func fail(_ now: Instant) -> ReconnectAction<Instant> {
        enter(.failed, now)
        return .giveUp
    }

    private mutating func scheduleBackoff(_ cause: RetryCause, _ now: Instant, _ random: inout some RandomNumberGenerator)
        -> ReconnectAction<Instant>
    {
        schedule(
            policy.backoff.delay(afterFailures: failures, using: &random), cause, now,
            step: policy.backoff.nominalDelay(afterFailures: failures))
    }

    /// Waits `delay`, in state `backoff`; `step` is the nominal wait of the rule applied.
    private mutating func schedule(_ delay: Duration, _ cause: RetryCause, _ now: Instant, step: Duration) -> ReconnectAction<Instant> {
        let at = now.advanced(by: delay)
        enter(.backoff, now)
        retryAt = at
        retryCause = cause
        retryStep = step
        return .waitUntil(at)
    }
}
