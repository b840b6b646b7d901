import Testing

@testable import EctoTunnel

/// A manual instant: time moves only when a test says so.
struct TestInstant: InstantProtocol, Sendable {
    var offset: Duration
    func advanced(by duration: Duration) -> TestInstant { TestInstant(offset: offset + duration) }
    func duration(to other: TestInstant) -> Duration { other.offset - offset }
    static func < (a: TestInstant, b: TestInstant) -> Bool { a.offset < b.offset }
    static let zero = TestInstant(offset: .zero)
}

@Suite struct BackoffTests {
    let policy = BackoffPolicy(initial: .seconds(1), maximum: .seconds(60))

    @Test func nominalDelaysDoubleUpToTheCap() {
        let expected: [Duration] = [
            .zero, .seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(16), .seconds(32), .seconds(60),
            .seconds(60),
        ]
        #expect((0...8).map { policy.nominalDelay(afterFailures: $0) } == expected)
        #expect(policy.nominalDelay(afterFailures: 10_000) == .seconds(60))
    }

    @Test func jitterStaysWithinHalfToFullNominal() {
        var random = SplitMix64(seed: 42)
        for failures in 1...12 {
            let nominal = policy.nominalDelay(afterFailures: failures)
            var seen: Set<Int64> = []
            for _ in 0..<500 {
                let delay = policy.delay(afterFailures: failures, using: &random)
                #expect(
                    delay >= nominal / 2 && delay <= nominal,
                    "failure \(failures): \(delay) outside [\(nominal / 2), \(nominal)]")
                seen.insert(delay.components.attoseconds / 1_000_000 + delay.components.seconds * 1_000_000_000_000)
            }
            #expect(seen.count > 100, "jitter must actually vary (failure \(failures))")
        }
    }

    @Test func jitterIsReproducibleWithASeed() {
        var a = SplitMix64(seed: 7)
        var b = SplitMix64(seed: 7)
        let first = (1...10).map { policy.delay(afterFailures: $0, using: &a) }
        let second = (1...10).map { policy.delay(afterFailures: $0, using: &b) }
        #expect(first == second)
    }

    @Test func subSecondInitial() {
        let fast = BackoffPolicy(initial: .milliseconds(250), maximum: .seconds(2))
        #expect(fast.nominalDelay(afterFailures: 1) == .milliseconds(250))
        #expect(fast.nominalDelay(afterFailures: 3) == .seconds(1))
        #expect(fast.nominalDelay(afterFailures: 5) == .seconds(2))
    }
}

extension ReconnectAction {
    /// The instant of a `waitUntil`, nil for any other action (for `#require`: a test stops
    /// with a failure, never returns early as if it passed).
    var retryInstant: Instant? {
        if case .waitUntil(let at) = self { return at }
        return nil
    }
}

@Suite struct ReconnectMachineTests {
    typealias Machine = ReconnectMachine<TestInstant>
    let policy = Machine.Policy(
        backoff: BackoffPolicy(initial: .seconds(1), maximum: .seconds(8)), authenticationAttempts: 3)

    @Test func startsConnectingWhenEnabledAndDownWhenNot() {
        let enabled = Machine(policy: policy, enabled: true, now: .zero)
        #expect(enabled.state == .connecting)
        #expect(enabled.initialAction() == .connect)
        let disabled = Machine(policy: policy, enabled: false, now: .zero)
        #expect(disabled.state == .down)
        #expect(disabled.initialAction() == .none)
    }

    @Test func transportFailuresBackOffExponentiallyAndRetryForever() throws {
        var machine = Machine(policy: policy, enabled: true, now: .zero)
        var random = SplitMix64(seed: 1)
        var now = TestInstant.zero
        for attempt in 1...50 {
            let action = machine.attemptFailed(.transport, message: "connection refused", now: now, random: &random)
            let at = try #require((action).retryInstant, "attempt \(attempt): expected waitUntil, got \(action)")
            let nominal = policy.backoff.nominalDelay(afterFailures: attempt)
            let waited = now.duration(to: at)
            #expect(waited >= nominal / 2 && waited <= nominal)
            #expect(machine.state == .backoff)
            #expect(machine.deadlineReached(now: now.advanced(by: waited / 2)) == .none, "must not retry early")
            now = at
            #expect(machine.deadlineReached(now: now) == .connect)
            #expect(machine.state == .connecting)
        }
        #expect(machine.failures == 50)
        #expect(machine.lastError == "connection refused")
    }

    @Test func hostKeyProblemsFailAtOnce() {
        var machine = Machine(policy: policy, enabled: true, now: .zero)
        var random = SplitMix64(seed: 1)
        #expect(machine.attemptFailed(.hostKey, message: "HOST KEY CHANGED", now: .zero, random: &random) == .giveUp)
        #expect(machine.state == .failed)
        #expect(machine.lastError == "HOST KEY CHANGED")
        // Nothing but the operator gets it out of failed.
        #expect(machine.deadlineReached(now: TestInstant(offset: .seconds(3600))) == .none)
        #expect(machine.networkChanged(now: TestInstant(offset: .seconds(3600))) == .none)
        #expect(machine.reconnectNow(now: TestInstant(offset: .seconds(3601))) == .connect)
        #expect(machine.state == .connecting)
    }

    @Test func authenticationRefusalsAreRetriedABoundedNumberOfTimes() throws {
        var machine = Machine(policy: policy, enabled: true, now: .zero)
        var random = SplitMix64(seed: 3)
        var now = TestInstant.zero
        for _ in 1..<policy.authenticationAttempts {
            let at = try #require(
                (machine.attemptFailed(.authentication, message: "refused", now: now, random: &random)).retryInstant,
                "expected a retry")
            now = at
            #expect(machine.deadlineReached(now: now) == .connect)
        }
        #expect(machine.attemptFailed(.authentication, message: "refused", now: now, random: &random) == .giveUp)
        #expect(machine.state == .failed)
    }

    @Test func aTransportFailureInBetweenDoesNotResetTheAuthenticationCount() {
        var machine = Machine(policy: policy, enabled: true, now: .zero)
        var random = SplitMix64(seed: 3)
        _ = machine.attemptFailed(.authentication, message: "refused", now: .zero, random: &random)
        _ = machine.deadlineReached(now: TestInstant(offset: .seconds(10)))
        _ = machine.attemptFailed(.transport, message: "reset", now: TestInstant(offset: .seconds(10)), random: &random)
        _ = machine.deadlineReached(now: TestInstant(offset: .seconds(20)))
        _ = machine.attemptFailed(
            .authentication, message: "refused", now: TestInstant(offset: .seconds(20)), random: &random)
        _ = machine.deadlineReached(now: TestInstant(offset: .seconds(30)))
        #expect(
            machine.attemptFailed(
                .authentication, message: "refused", now: TestInstant(offset: .seconds(30)), random: &random) == .giveUp
        )
    }

    @Test func aProvenSessionClearsTheCountAndAYoungOneAddsToIt() throws {
        var machine = Machine(policy: policy, enabled: true, now: .zero)
        var random = SplitMix64(seed: 9)
        var now = TestInstant.zero
        // Three failures, then up.
        for _ in 0..<3 {
            let at = try #require(
                (machine.attemptFailed(.transport, message: "timeout", now: now, random: &random)).retryInstant,
                "expected a retry")
            now = at
            _ = machine.deadlineReached(now: now)
        }
        #expect(machine.connected(now: now) == .none)
        #expect(machine.state == .up)
        // Dies after 1 s (< provenAfter): evidence against the server, the count goes on (4th: nominal 8 s).
        now = now.advanced(by: .seconds(1))
        let at = try #require(
            (machine.sessionLost(message: "reset", now: now, random: &random)).retryInstant, "expected backoff")
        #expect(machine.failures == 4)
        #expect(now.duration(to: at) >= .seconds(4))
        now = at
        _ = machine.deadlineReached(now: now)
        _ = machine.connected(now: now)
        // Dies after 3 s: it proved the server works, so it reconnects at once with a clean count.
        now = now.advanced(by: .seconds(3))
        #expect(machine.sessionLost(message: "reset", now: now, random: &random) == .connect)
        #expect(machine.failures == 0)
        #expect(machine.state == .connecting)
    }

    @Test func aSessionThatCarriedTrafficIsProvenAtAnyAge() throws {
        var machine = Machine(policy: policy, enabled: true, now: .zero)
        var random = SplitMix64(seed: 9)
        _ = machine.connected(now: .zero)
        machine.sessionProven()
        // Lost 0.1 s later (the server restarted right after a request went through): an outage.
        #expect(
            machine.sessionLost(message: "reset", now: TestInstant(offset: .milliseconds(100)), random: &random)
                == .connect)
        #expect(machine.failures == 0)
        // The next sessions carry nothing and die as young: the first is still part of that
        // outage (one grace), the second is evidence.
        _ = machine.connected(now: TestInstant(offset: .milliseconds(200)))
        let at = try #require(
            (machine.sessionLost(message: "reset", now: TestInstant(offset: .milliseconds(300)), random: &random))
                .retryInstant, "expected a retry")
        #expect(machine.failures == 0)
        _ = machine.deadlineReached(now: at)
        _ = machine.connected(now: at)
        try #require(
            (machine.sessionLost(message: "reset", now: at.advanced(by: .milliseconds(100)), random: &random))
                .retryInstant != nil, "a young session without traffic must back off")
        #expect(machine.failures == 1)
    }

    @Test func oneYoungDeathRightAfterAProvenLossIsPartOfThatOutage() throws {
        // sshd stopping: its sessions die first, our immediate reconnect still gets in, and then
        // the listener goes too. That young death must not cost the fast recovery; a second one would.
        var machine = Machine(policy: policy, enabled: true, now: .zero)
        var random = SplitMix64(seed: 19)
        _ = machine.connected(now: .zero)
        #expect(
            machine.sessionLost(message: "reset", now: TestInstant(offset: .seconds(5)), random: &random) == .connect)
        _ = machine.connected(now: TestInstant(offset: .milliseconds(5_050)))
        let at = try #require(
            (machine.sessionLost(message: "reset", now: TestInstant(offset: .milliseconds(5_100)), random: &random))
                .retryInstant, "expected a retry")
        #expect(TestInstant(offset: .milliseconds(5_100)).duration(to: at) <= policy.refusedRetryCap)
        #expect(machine.failures == 0)
        // Refusals after it keep the fast cadence.
        _ = machine.deadlineReached(now: at)
        let next = try #require(
            (machine.attemptFailed(.refused, message: "refused", now: at, random: &random)).retryInstant,
            "expected a retry")
        #expect(at.duration(to: next) <= policy.refusedRetryCap)
        // A second young death in the same outage is evidence.
        _ = machine.deadlineReached(now: next)
        _ = machine.connected(now: next)
        try #require(
            (machine.sessionLost(message: "reset", now: next.advanced(by: .milliseconds(50)), random: &random))
                .retryInstant != nil, "expected a retry")
        #expect(machine.failures == 1)
    }

    @Test func reconnectsCountOnlySessionsAfterTheFirst() {
        var machine = Machine(policy: policy, enabled: true, now: .zero)
        var random = SplitMix64(seed: 9)
        _ = machine.connected(now: .zero)
        #expect(machine.reconnects == 0)
        _ = machine.sessionLost(message: "x", now: TestInstant(offset: .seconds(40)), random: &random)
        _ = machine.connected(now: TestInstant(offset: .seconds(41)))
        #expect(machine.reconnects == 1)
    }

    @Test func sinceMovesOnlyOnStateChanges() {
        var machine = Machine(policy: policy, enabled: true, now: .zero)
        var random = SplitMix64(seed: 2)
        _ = machine.attemptFailed(.transport, message: "x", now: TestInstant(offset: .seconds(1)), random: &random)
        #expect(machine.since == TestInstant(offset: .seconds(1)))
        _ = machine.deadlineReached(now: TestInstant(offset: .seconds(2)))
        #expect(machine.since == TestInstant(offset: .seconds(2)))
        _ = machine.connected(now: TestInstant(offset: .seconds(3)))
        #expect(machine.since == TestInstant(offset: .seconds(3)))
        // A duplicate event changes nothing.
        #expect(machine.connected(now: TestInstant(offset: .seconds(4))) == .none)
        #expect(machine.since == TestInstant(offset: .seconds(3)))
    }

    @Test func networkChangeCutsBackoffShort() {
        var machine = Machine(policy: policy, enabled: true, now: .zero)
        var random = SplitMix64(seed: 5)
        _ = machine.attemptFailed(.transport, message: "unreachable", now: .zero, random: &random)
        #expect(machine.state == .backoff)
        #expect(machine.networkChanged(now: TestInstant(offset: .milliseconds(10))) == .connect)
        #expect(machine.state == .connecting)
        #expect(machine.retryAt == nil)
    }

    @Test func disableAndEnable() {
        var machine = Machine(policy: policy, enabled: true, now: .zero)
        var random = SplitMix64(seed: 5)
        _ = machine.connected(now: .zero)
        #expect(machine.disable(now: TestInstant(offset: .seconds(1))) == .disconnect)
        #expect(machine.state == .down)
        #expect(machine.sessionLost(message: "late", now: TestInstant(offset: .seconds(2)), random: &random) == .none)
        #expect(machine.reconnectNow(now: TestInstant(offset: .seconds(2))) == .none)
        #expect(machine.enable(now: TestInstant(offset: .seconds(3))) == .connect)
        #expect(machine.state == .connecting)
    }

    @Test func localProblemsThatNeedTheOperatorFailAtOnce() {
        var machine = Machine(policy: policy, enabled: true, now: .zero)
        var random = SplitMix64(seed: 5)
        #expect(
            machine.attemptFailed(.local, message: "UNPROTECTED PRIVATE KEY", now: .zero, random: &random) == .giveUp)
        #expect(machine.state == .failed)
    }

    @Test func localTroubleHasFixedRetriesOfItsOwnAndNeverTheServersCount() throws {
        var machine = Machine(policy: policy, enabled: true, now: .zero)
        var random = SplitMix64(seed: 5)
        var now = TestInstant.zero
        // Two transport failures first: the server's count is 2.
        for _ in 0..<2 {
            let at = try #require(
                (machine.attemptFailed(.transport, message: "timeout", now: now, random: &random)).retryInstant,
                "expected a retry")
            now = at
            _ = machine.deadlineReached(now: now)
        }
        for (kind, wait) in [(FailureKind.resources, policy.resourceRetry), (.localTemporary, policy.localRetry)] {
            for _ in 0..<20 {
                #expect(
                    machine.attemptFailed(kind, message: "EMFILE", now: now, random: &random)
                        == .waitUntil(now.advanced(by: wait)))
                #expect(machine.state == .backoff && machine.retryCause == .local)
                #expect(machine.failures == 2, "local trouble must not grow the server's backoff")
                now = now.advanced(by: wait)
                #expect(machine.deadlineReached(now: now) == .connect)
            }
        }
        // The server's own schedule goes on where it was (3rd failure: nominal 4 s).
        let at = try #require(
            (machine.attemptFailed(.transport, message: "timeout", now: now, random: &random)).retryInstant,
            "expected a retry")
        #expect(now.duration(to: at) >= .seconds(2) && machine.retryCause == .remote)
    }

    @Test func refusedConnectsAreFastInTheWindowThenJoinTheBackoff() throws {
        var machine = Machine(policy: policy, enabled: true, now: .zero)
        var random = SplitMix64(seed: 11)
        var now = TestInstant.zero
        var waits: Set<Duration> = []
        // The fast window: every refusal retried within the cap, jittered, the count untouched.
        while now.offset < policy.fastWindow {
            let at = try #require(
                (machine.attemptFailed(.refused, message: "connection refused", now: now, random: &random))
                    .retryInstant, "expected a retry")
            let waited = now.duration(to: at)
            #expect(waited <= policy.refusedRetryCap && waited >= policy.refusedRetryCap / 2, "waited \(waited)")
            #expect(machine.failures == 0 && machine.retryCause == .refused)
            waits.insert(waited)
            now = at
            #expect(machine.deadlineReached(now: now) == .connect)
        }
        #expect(waits.count > 10, "refused retries are jittered")
        // After it: exponential, 1 s, 2 s, 4 s … nominal.
        for failure in 1...6 {
            let at = try #require(
                (machine.attemptFailed(.refused, message: "connection refused", now: now, random: &random))
                    .retryInstant, "expected a retry")
            let nominal = policy.backoff.nominalDelay(afterFailures: failure)
            #expect(now.duration(to: at) >= nominal / 2 && now.duration(to: at) <= nominal)
            #expect(machine.failures == failure)
            now = at
            _ = machine.deadlineReached(now: now)
        }
    }

    @Test func refusalsDoNotClearEvidenceAgainstTheServer() throws {
        // A server that crashes 0.2 s into every session and restarts (refusing meanwhile) must
        // not get the fast cadence: its young sessions are the evidence.
        var machine = Machine(policy: policy, enabled: true, now: .zero)
        var random = SplitMix64(seed: 12)
        _ = machine.connected(now: .zero)
        _ = machine.sessionLost(message: "reset", now: TestInstant(offset: .milliseconds(200)), random: &random)
        #expect(machine.failures == 1)
        // One young death is forgiven for the cadence (a server stopped just after we connected).
        _ = machine.deadlineReached(now: TestInstant(offset: .seconds(2)))
        let fast = try #require(
            (machine.attemptFailed(.refused, message: "refused", now: TestInstant(offset: .seconds(2)), random: &random))
                .retryInstant, "expected a retry")
        #expect(TestInstant(offset: .seconds(2)).duration(to: fast) <= policy.refusedRetryCap)
        // A second one in a row is not.
        _ = machine.deadlineReached(now: fast)
        _ = machine.connected(now: fast)
        _ = machine.sessionLost(message: "reset", now: fast.advanced(by: .milliseconds(200)), random: &random)
        #expect(machine.failures == 2)
        let later = fast.advanced(by: .seconds(5))
        _ = machine.deadlineReached(now: later)
        let at = try #require(
            (machine.attemptFailed(.refused, message: "refused", now: later, random: &random)).retryInstant,
            "expected a retry")
        #expect(machine.failures == 3)
        #expect(later.duration(to: at) >= .seconds(2))
    }

    /// A simulated server for the machine, in milliseconds.
    struct Server {
        /// [start, end) offsets in ms when nothing listens on the SSH port (connects refused).
        var outages: [(Int, Int)] = []
        /// Sessions die this long after they come up (nil: they live until the next outage).
        var sessionLife: Int? = nil
        /// Until when connects hang (TCP accepted, the server never speaks) until the attempt times out.
        var silentUntil = 0
        var handshake = 100
        var connectTimeout = 10_000
        func isDown(_ ms: Int) -> Bool { outages.contains { ms >= $0.0 && ms < $0.1 } }
    }

    struct Run {
        /// Per outage: how long after the server came back the tunnel was up (nil: not within the run).
        var recoveries: [Duration?]
        /// Instants (ms) of every attempt started, and of every session established.
        var attempts: [Int]
        var sessions: [Int]
    }

    /// Drives a machine against `server` until `end` (ms).
    private func simulate(_ server: Server, until end: Int, policy: Machine.Policy? = nil) -> Run {
        var machine = Machine(policy: policy ?? self.policy, enabled: true, now: .zero)
        var random = SplitMix64(seed: 3)
        var recoveredAt: [Int?] = Array(repeating: nil, count: server.outages.count)
        var run = Run(recoveries: [], attempts: [], sessions: [])
        var clock = 0
        var action = machine.initialAction()
        var upAt: Int? = nil
        func at(_ ms: Int) -> TestInstant { TestInstant(offset: .milliseconds(ms)) }
        while clock < end {
            switch action {
            case .connect:
                run.attempts.append(clock)
                if server.isDown(clock) {
                    action = machine.attemptFailed(.refused, message: "refused", now: at(clock), random: &random)
                } else if clock < server.silentUntil {
                    clock += server.connectTimeout
                    action = machine.attemptFailed(.transport, message: "timed out", now: at(clock), random: &random)
                } else {
                    clock += server.handshake
                    action = machine.connected(now: at(clock))
                    upAt = clock
                    run.sessions.append(clock)
                    for (index, outage) in server.outages.enumerated()
                    where recoveredAt[index] == nil && outage.1 <= clock {
                        recoveredAt[index] = clock
                    }
                }
            case .waitUntil(let when):
                clock = Int(
                    when.offset.components.seconds * 1000 + when.offset.components.attoseconds / 1_000_000_000_000_000)
                action = machine.deadlineReached(now: when)
            case .none:
                // Up: the session lives until it dies of old age or the next outage starts.
                guard let since = upAt else {
                    clock = end
                    break
                }
                let death = [server.sessionLife.map { since + $0 }, server.outages.first(where: { $0.0 > since })?.0]
                    .compactMap { $0 }.min()
                guard let death else {
                    clock = end
                    break
                }
                clock = death
                upAt = nil
                action = machine.sessionLost(message: "reset", now: at(clock), random: &random)
            case .giveUp, .disconnect:
                clock = end
            }
        }
        run.recoveries = zip(recoveredAt, server.outages).map { at, outage in at.map { .milliseconds($0 - outage.1) } }
        return run
    }

    @Test(arguments: [500, 1_000, 5_000])
    func eightOutagesRecoverWithinOneSecondEachTime(outage: Int) {
        // sshd crashes and comes back 8 times, `outage` ms away each time, 3 s after the tunnel
        // recovered: no session lives long, and no outage may push the next recovery past 1 s.
        var server = Server()
        var start = 5_000
        for _ in 0..<8 {
            server.outages.append((start, start + outage))
            start += outage + 3_000
        }
        let run = simulate(server, until: start + 10_000)
        for (index, recovery) in run.recoveries.enumerated() {
            guard let recovery else {
                Issue.record("outage \(index) never recovered")
                continue
            }
            #expect(
                recovery <= .seconds(1), "outage \(index) (\(outage) ms): up \(recovery) after the server came back")
        }
    }

    @Test func aFlappingServerIsBackedOffNotStormed() {
        // Accepts, authenticates, and drops every session 0.2 s later, never refusing.
        // The production backoff (1 s to 60 s).
        let defaults = Machine.Policy(backoff: BackoffPolicy(initial: .seconds(1), maximum: .seconds(60)))
        let run = simulate(Server(sessionLife: 200), until: 600_000, policy: defaults)
        #expect(run.sessions.count < 30, "\(run.sessions.count) sessions in 10 min")
        // The gaps between sessions grow to the cap and stay there (jittered to at least half).
        let gaps = zip(run.sessions, run.sessions.dropFirst()).map { $1 - $0 }
        #expect(gaps.suffix(5).allSatisfy { $0 >= 30_000 }, "late gaps: \(gaps.suffix(5))")
    }

    @Test func aServerRefusingForTenMinutesCostsFewAttemptsAndRecoversWithinTheCap() throws {
        var server = Server(outages: [(5_000, 605_000)])
        server.handshake = 100
        let run = simulate(server, until: 700_000)
        let during = run.attempts.filter { $0 >= 5_000 && $0 < 605_000 }
        // The fast window (10 s at ≤ 0.5 s: ≤ 40), then at least 4 s apart (the cap is 8 s here).
        #expect(during.count < 40 + 600 / 4, "\(during.count) attempts")
        let late = during.filter { $0 > 60_000 }
        let lateGaps = zip(late, late.dropFirst()).map { $1 - $0 }
        #expect(lateGaps.allSatisfy { $0 >= 4_000 }, "late gaps: \(lateGaps.prefix(10))")
        let recovery = try #require(run.recoveries[0], "never recovered")
        #expect(recovery <= policy.backoff.maximum + .milliseconds(server.handshake))
    }

    @Test func aServerThatAcceptsAndNeverSpeaksIsBackedOff() {
        let run = simulate(Server(silentUntil: 300_000), until: 310_000)
        let gaps = zip(run.attempts, run.attempts.dropFirst()).map { $1 - $0 }
        // Each attempt takes the 10 s timeout; the waits between them grow beyond it.
        #expect(run.attempts.count < 300_000 / 10_000)
        #expect(gaps.suffix(5).allSatisfy { $0 >= 14_000 }, "gaps: \(gaps)")
        #expect(run.sessions.count == 1)
    }

    @Test func aServerThatKeepsDroppingSessionsIsBackedOffFromMoreAndMore() throws {
        // Accepts and authenticates, then drops the session after 0.2 s, never refusing: the
        // storm the failure count guards against. The waits before each new attempt must grow.
        var machine = Machine(policy: policy, enabled: true, now: .zero)
        var random = SplitMix64(seed: 8)
        var now = TestInstant.zero
        var waits: [Duration] = []
        for _ in 0..<6 {
            _ = machine.connected(now: now)
            now = now.advanced(by: .milliseconds(200))
            let at = try #require(
                (machine.sessionLost(message: "reset", now: now, random: &random)).retryInstant,
                "expected a backoff after a short session")
            waits.append(now.duration(to: at))
            now = at
            #expect(machine.deadlineReached(now: now) == .connect)
        }
        #expect(machine.failures == 6)
        // Nominal 1, 2, 4, 8, 8, 8 s, each jittered to [half, full].
        for (index, wait) in waits.enumerated() {
            let nominal = policy.backoff.nominalDelay(afterFailures: index + 1)
            #expect(wait >= nominal / 2 && wait <= nominal, "drop \(index + 1) waited \(wait)")
        }
        #expect(waits[3] > waits[0] * 2)
    }

    @Test func localFailureWaitsAFixedTimeFromEveryEnabledStateButNotWhenDownOrFailed() {
        var random = SplitMix64(seed: 4)
        var up = Machine(policy: policy, enabled: true, now: .zero)
        _ = up.connected(now: .zero)
        let one = TestInstant(offset: .seconds(1))
        #expect(up.localFailure(message: "port busy", now: one) == .waitUntil(one.advanced(by: policy.localRetry)))
        #expect(up.state == .backoff && up.retryCause == .local && up.lastError == "port busy" && up.since == one)
        var backoff = Machine(policy: policy, enabled: true, now: .zero)
        _ = backoff.attemptFailed(.transport, message: "refused", now: .zero, random: &random)
        #expect(
            backoff.localFailure(message: "port busy", now: .zero)
                == .waitUntil(TestInstant.zero.advanced(by: policy.localRetry)))
        #expect(backoff.failures == 1, "a local failure is not a connection failure")
        var down = Machine(policy: policy, enabled: false, now: .zero)
        #expect(down.localFailure(message: "port busy", now: .zero) == .none)
        #expect(down.state == .down)
        var failed = Machine(policy: policy, enabled: true, now: .zero)
        _ = failed.attemptFailed(.hostKey, message: "HOST KEY CHANGED", now: .zero, random: &random)
        #expect(failed.localFailure(message: "again", now: .zero) == .none)
        #expect(failed.lastError == "HOST KEY CHANGED", "an existing failure keeps its reason")
    }

    /// Events of something already given up (an attempt abandoned by `disable`, a session torn
    /// down by a local failure, a timer of a backoff that a reconnect ended) change nothing.
    @Test func staleEventsAreIgnored() {
        var random = SplitMix64(seed: 9)
        var down = Machine(policy: policy, enabled: true, now: .zero)
        #expect(down.disable(now: .zero) == .disconnect)
        #expect(down.attemptFailed(.transport, message: "late", now: .zero, random: &random) == .none)
        #expect(down.sessionLost(message: "late", now: .zero, random: &random) == .none)
        down.sessionProven()
        #expect(down.deadlineReached(now: TestInstant(offset: .seconds(60))) == .none)
        #expect(down.state == .down && down.lastError == nil && down.failures == 0)

        var backoff = Machine(policy: policy, enabled: true, now: .zero)
        _ = backoff.connected(now: .zero)
        #expect(
            backoff.localFailure(message: "port busy", now: .zero)
                == .waitUntil(TestInstant.zero.advanced(by: policy.localRetry)))
        #expect(backoff.sessionLost(message: "torn down already", now: .zero, random: &random) == .none)
        #expect(backoff.lastError == "port busy" && backoff.retryCause == .local)

        var reconnected = Machine(policy: policy, enabled: true, now: .zero)
        _ = reconnected.attemptFailed(.transport, message: "timeout", now: .zero, random: &random)
        let due = reconnected.retryAt
        #expect(reconnected.reconnectNow(now: .zero) == .connect)
        #expect(reconnected.retryAt == nil && reconnected.retryCause == nil && reconnected.retryStep == nil)
        #expect(reconnected.deadlineReached(now: due ?? .zero) == .none, "the old backoff's timer")
        #expect(reconnected.state == .connecting)
    }

    /// The retry exists only in `backoff`: entering any other state drops it with the state.
    @Test func retryDataLivesOnlyInBackoff() throws {
        var random = SplitMix64(seed: 10)
        var machine = Machine(policy: policy, enabled: true, now: .zero)
        #expect(machine.retry == nil)
        let at = try #require(
            machine.attemptFailed(.refused, message: "refused", now: .zero, random: &random).retryInstant)
        let retry = try #require(machine.retry)
        #expect(retry.at == at && retry.cause == .refused && retry.step == policy.refusedRetryCap)
        #expect(machine.networkChanged(now: .zero) == .connect)
        #expect(machine.retry == nil && machine.state == .connecting)
        _ = machine.attemptFailed(.transport, message: "timeout", now: .zero, random: &random)
        #expect(machine.disable(now: .zero) == .disconnect)
        #expect(machine.retry == nil)
    }

    #if DEBUG
    /// Only an attempt connects, and attempts exist only while connecting: anything else is a bug
    /// in the owner, caught in debug builds.
    @Test func connectedOutsideAnAttemptIsAProgrammingError() async {
        await #expect(processExitsWith: .failure) {
            let policy = ReconnectMachine<TestInstant>.Policy(
                backoff: BackoffPolicy(initial: .seconds(1), maximum: .seconds(8)))
            var machine = ReconnectMachine<TestInstant>(policy: policy, enabled: false, now: .zero)
            _ = machine.connected(now: .zero)
        }
    }

    #endif
}
