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

    /// A retry that is scheduled: when, why, and the nominal wait of the rule that scheduled it.
    public struct Retry: Sendable, Equatable {
        public var at: Instant
        public var cause: RetryCause
        /// The nominal (un-jittered) wait: the fast cadence, a backoff step, or a fixed local wait.
        /// A log line is worth writing when it grows.
        public var step: Duration
    }

    /// Where the tunnel is, with the data that exists only there (the status contract's states).
    private enum Phase: Sendable {
        /// An attempt is under way, or about to start (the owner starts it on `.connect`).
        case connecting
        /// The session is established since `since`; `proven`: it carried traffic (a channel opened).
        case up(since: Instant, proven: Bool)
        /// The last attempt or session failed; `retry` says when the next attempt is due and why.
        case backoff(Retry)
        /// Disabled by the operator or the config: no attempts until `enable`.
        case down
        /// Needs the operator: no automatic attempts until `reconnectNow` or `enable`.
        case failed
    }

    public let policy: Policy
    private var phase: Phase
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
    /// When the current outage began: the first failure or loss since the last session (nil while
    /// up, or before the first attempt failed).
    public private(set) var outageStart: Instant?
    private var everUp = false
    /// The last session ended before `provenAfter`: refusals get no fast cadence until one lives.
    private var youngDeaths = 0
    /// After a proven session is lost: until when one young death is still part of that outage.
    private var graceUntil: Instant?
    private var graceUsed = false

    public init(policy: Policy, enabled: Bool, now: Instant) {
        self.policy = policy
        self.phase = enabled ? .connecting : .down
        self.since = now
    }

    /// The state, as in the status contract.
    public var state: TunnelState {
        switch phase {
        case .connecting: .connecting
        case .up: .up
        case .backoff: .backoff
        case .down: .down
        case .failed: .failed
        }
    }

    /// The pending retry (state `backoff`; nil otherwise).
    public var retry: Retry? {
        if case .backoff(let retry) = phase { return retry }
        return nil
    }

    /// When the pending retry is due (state `backoff`).
    public var retryAt: Instant? { retry?.at }
    /// What the pending retry waits for (state `backoff`).
    public var retryCause: RetryCause? { retry?.cause }
    /// The nominal wait of the rule that scheduled the pending retry (state `backoff`).
    public var retryStep: Duration? { retry?.step }

    private mutating func enter(_ newPhase: Phase, _ now: Instant) {
        let before = state
        phase = newPhase
        if state != before { since = now }
        if state == .up || state == .down { outageStart = nil }
    }

    /// The first action after creation: connect if enabled.
    public func initialAction() -> ReconnectAction<Instant> { state == .connecting ? .connect : .none }

    /// The attempt succeeded: the session is up. A duplicate (already up) changes nothing. Only an
    /// attempt connects, and the owner tears the attempt down when the machine leaves
    /// `connecting` for `backoff`, `down` or `failed`: `connected` there is a bug in the owner.
    public mutating func connected(now: Instant) -> ReconnectAction<Instant> {
        switch phase {
        case .connecting:
            break
        case .up:
            return .none  // a duplicate
        case .backoff, .down, .failed:
            assertionFailure("connected in state \(state): only an attempt (state connecting) connects")
            return .none
        }
        if everUp { reconnects += 1 }
        everUp = true
        authenticationFailures = 0
        enter(.up(since: now, proven: false), now)
        return .none
    }

    /// The session carried traffic (a channel opened): the server works, whatever the session's
    /// age. A server that accepts and then drops every session never gets this far.
    public mutating func sessionProven() {
        switch phase {
        case .up(let since, _):
            phase = .up(since: since, proven: true)
        case .connecting, .backoff, .down, .failed:
            break  // stale: a channel of a session already given up
        }
    }

    /// The attempt failed before the session was up.
    public mutating func attemptFailed(
        _ kind: FailureKind, message: String, now: Instant, random: inout some RandomNumberGenerator
    )
        -> ReconnectAction<Instant>
    {
        switch phase {
        case .connecting:
            break
        case .up, .backoff, .down, .failed:
            return .none  // stale: the attempt was abandoned (disabled, reconnect, local failure) before it ended
        }
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
                return schedule(
                    BackoffPolicy.jittered(policy.refusedRetryCap, using: &random), .refused, now,
                    step: policy.refusedRetryCap)
            }
            failures += 1
            return scheduleBackoff(.refused, now, &random)
        case .transport:
            failures += 1
            return scheduleBackoff(.remote, now, &random)
        }
    }

    /// An established session ended (dead peer, reset, server shutdown).
    public mutating func sessionLost(
        message: String, now: Instant, random: inout some RandomNumberGenerator
    ) -> ReconnectAction<Instant> {
        guard case .up(let upSince, let proven) = phase else {
            return .none  // stale: the session was already given up (disabled, reconnect, local failure)
        }
        lastError = message
        outageStart = now
        if proven || upSince.duration(to: now) >= policy.provenAfter {
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
            return schedule(
                BackoffPolicy.jittered(policy.refusedRetryCap, using: &random), .remote, now,
                step: policy.refusedRetryCap)
        }
        // Died young: evidence against the server (it may accept and drop every session).
        failures += 1
        youngDeaths += 1
        return scheduleBackoff(.remote, now, &random)
    }

    /// The backoff deadline passed. A timer that fires early (before `retryAt`) changes nothing;
    /// in another state it is stale (the backoff was ended by a reconnect, a network change or the
    /// operator) and is ignored.
    public mutating func deadlineReached(now: Instant) -> ReconnectAction<Instant> {
        switch phase {
        case .backoff(let retry):
            guard now >= retry.at else { return .none }  // early: the retry is not due yet
            enter(.connecting, now)
            return .connect
        case .connecting, .up, .down, .failed:
            return .none
        }
    }

    /// Reconnect now, skipping any backoff: an operator's `reconnect`, a resume from suspend, a
    /// network change. A `failed` tunnel is retried too (the operator asked), a `down` one is not.
    public mutating func reconnectNow(now: Instant) -> ReconnectAction<Instant> {
        switch phase {
        case .down, .connecting:
            return .none
        case .failed:
            failures = 0
            authenticationFailures = 0
            youngDeaths = 0
            enter(.connecting, now)
            return .connect
        case .up, .backoff:
            enter(.connecting, now)
            return .connect
        }
    }

    /// Hint that the network changed or the machine resumed: in backoff, retry at once (the cause
    /// may be gone); when up, the owner should probe the session (not our decision to drop it).
    public mutating func networkChanged(now: Instant) -> ReconnectAction<Instant> {
        switch phase {
        case .backoff:
            enter(.connecting, now)
            return .connect
        case .connecting, .up, .down, .failed:
            return .none
        }
    }

    /// Our own side broke outside any attempt (the local port is taken by another process): from
    /// any enabled state, a fixed wait of `localRetry` (state `backoff`, cause `local`), with
    /// `message` as the reason; `deadlineReached` then asks for a new attempt, which begins by
    /// trying the local side again.
    public mutating func localFailure(message: String, now: Instant) -> ReconnectAction<Instant> {
        switch phase {
        case .down, .failed:
            return .none  // disabled, or the operator's problem stays the reason shown
        case .connecting, .up, .backoff:
            lastError = message
            if outageStart == nil { outageStart = now }
            return schedule(policy.localRetry, .local, now, step: policy.localRetry)
        }
    }

    /// The operator disabled the tunnel.
    public mutating func disable(now: Instant) -> ReconnectAction<Instant> {
        if case .down = phase { return .none }  // already disabled
        enter(.down, now)
        return .disconnect
    }

    /// The operator enabled the tunnel.
    public mutating func enable(now: Instant) -> ReconnectAction<Instant> {
        guard case .down = phase else { return .none }  // already enabled
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

    private mutating func scheduleBackoff(
        _ cause: RetryCause, _ now: Instant, _ random: inout some RandomNumberGenerator
    )
        -> ReconnectAction<Instant>
    {
        schedule(
            policy.backoff.delay(afterFailures: failures, using: &random), cause, now,
            step: policy.backoff.nominalDelay(afterFailures: failures))
    }

    /// Waits `delay`, in state `backoff`; `step` is the nominal wait of the rule applied.
    private mutating func schedule(
        _ delay: Duration, _ cause: RetryCause, _ now: Instant, step: Duration
    ) -> ReconnectAction<Instant> {
        let at = now.advanced(by: delay)
        enter(.backoff(Retry(at: at, cause: cause, step: step)), now)
        return .waitUntil(at)
    }
}
