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
        let expected: [Duration] = [.zero, .seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(16), .seconds(32), .seconds(60), .seconds(60)]
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
                #expect(delay >= nominal / 2 && delay <= nominal, "failure \(failures): \(delay) outside [\(nominal / 2), \(nominal)]")
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

@Suite struct ReconnectMachineTests {
    typealias Machine = ReconnectMachine<TestInstant>
    let policy = Machine.Policy(backoff: BackoffPolicy(initial: .seconds(1), maximum: .seconds(8)), stableAfter: .seconds(30), authenticationAttempts: 3)

    @Test func startsConnectingWhenEnabledAndDownWhenNot() {
        let enabled = Machine(policy: policy, enabled: true, now: .zero)
        #expect(enabled.state == .connecting)
        #expect(enabled.initialAction() == .connect)
        let disabled = Machine(policy: policy, enabled: false, now: .zero)
        #expect(disabled.state == .down)
        #expect(disabled.initialAction() == .none)
    }

    @Test func transportFailuresBackOffExponentiallyAndRetryForever() {
        var machine = Machine(policy: policy, enabled: true, now: .zero)
        var random = SplitMix64(seed: 1)
        var now = TestInstant.zero
        for attempt in 1...50 {
            let action = machine.attemptFailed(.transport, message: "connection refused", now: now, random: &random)
            guard case .waitUntil(let at) = action else {
                Issue.record("attempt \(attempt): expected waitUntil, got \(action)")
                return
            }
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

    @Test func authenticationRefusalsAreRetriedABoundedNumberOfTimes() {
        var machine = Machine(policy: policy, enabled: true, now: .zero)
        var random = SplitMix64(seed: 3)
        var now = TestInstant.zero
        for _ in 1..<policy.authenticationAttempts {
            guard case .waitUntil(let at) = machine.attemptFailed(.authentication, message: "refused", now: now, random: &random) else {
                Issue.record("expected a retry")
                return
            }
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
        _ = machine.attemptFailed(.authentication, message: "refused", now: TestInstant(offset: .seconds(20)), random: &random)
        _ = machine.deadlineReached(now: TestInstant(offset: .seconds(30)))
        #expect(machine.attemptFailed(.authentication, message: "refused", now: TestInstant(offset: .seconds(30)), random: &random) == .giveUp)
    }

    @Test func failureCountResetsOnlyAfterAStableSession() {
        var machine = Machine(policy: policy, enabled: true, now: .zero)
        var random = SplitMix64(seed: 9)
        var now = TestInstant.zero
        // Three failures, then up.
        for _ in 0..<3 {
            guard case .waitUntil(let at) = machine.attemptFailed(.transport, message: "refused", now: now, random: &random) else { return }
            now = at
            _ = machine.deadlineReached(now: now)
        }
        #expect(machine.connected(now: now) == .none)
        #expect(machine.state == .up)
        // Dies after 5 s: not stable, the count goes on (4th failure: nominal 8 s).
        now = now.advanced(by: .seconds(5))
        guard case .waitUntil(let at) = machine.sessionLost(message: "reset", now: now, random: &random) else {
            Issue.record("expected backoff")
            return
        }
        #expect(machine.failures == 4)
        #expect(now.duration(to: at) >= .seconds(4))
        now = at
        _ = machine.deadlineReached(now: now)
        _ = machine.connected(now: now)
        // Dies after 31 s: stable, so it reconnects at once with a clean count.
        now = now.advanced(by: .seconds(31))
        #expect(machine.sessionLost(message: "reset", now: now, random: &random) == .connect)
        #expect(machine.failures == 0)
        #expect(machine.state == .connecting)
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

    @Test func localProblemsFailAtOnce() {
        var machine = Machine(policy: policy, enabled: true, now: .zero)
        var random = SplitMix64(seed: 5)
        #expect(machine.attemptFailed(.local, message: "UNPROTECTED PRIVATE KEY", now: .zero, random: &random) == .giveUp)
        #expect(machine.state == .failed)
    }

    @Test func refusedConnectsRetryWithinTheCapAndClearTheCount() {
        var machine = Machine(policy: policy, enabled: true, now: .zero)
        var random = SplitMix64(seed: 11)
        var now = TestInstant.zero
        // Two timeouts first: the count grows.
        for _ in 0..<2 {
            guard case .waitUntil(let at) = machine.attemptFailed(.transport, message: "timeout", now: now, random: &random) else { return }
            now = at
            _ = machine.deadlineReached(now: now)
        }
        #expect(machine.failures == 2)
        var waits: Set<Duration> = []
        for attempt in 1...20 {
            guard case .waitUntil(let at) = machine.attemptFailed(.refused, message: "connection refused", now: now, random: &random) else {
                Issue.record("expected a retry")
                return
            }
            let waited = now.duration(to: at)
            #expect(waited <= policy.refusedRetryCap, "attempt \(attempt) waited \(waited)")
            #expect(waited >= policy.refusedRetryCap / 2, "attempt \(attempt) waited \(waited): jitter keeps at least half the cap")
            waits.insert(waited)
            #expect(machine.failures == 0, "a refusal means the server is away, not that it keeps dropping us")
            now = at
            #expect(machine.deadlineReached(now: now) == .connect)
        }
        #expect(waits.count > 10, "refused retries are jittered")
        // A different kind of failure afterwards starts the schedule again (nominal 1 s).
        guard case .waitUntil(let at) = machine.attemptFailed(.transport, message: "timeout", now: now, random: &random) else { return }
        #expect(now.duration(to: at) <= .seconds(1))
        #expect(machine.failures == 1)
    }

    /// Drives a machine against a simulated server and returns, for each time the server came
    /// back, how long the tunnel took to be up again (nil: not within the simulation).
    /// `down` lists the outages as [start, end) offsets in milliseconds. An attempt started while
    /// the server is down is refused at once; otherwise it succeeds after `handshake`.
    private func simulate(outages down: [(Int, Int)], until end: Int, handshake: Int = 100) -> [Duration?] {
        var machine = Machine(policy: policy, enabled: true, now: .zero)
        var random = SplitMix64(seed: 3)
        func isDown(_ ms: Int) -> Bool { down.contains { ms >= $0.0 && ms < $0.1 } }
        var recoveredAt: [Int?] = Array(repeating: nil, count: down.count)
        var clock = 0
        var action = machine.initialAction()
        var upAt: Int? = nil
        while clock < end {
            switch action {
            case .connect:
                if isDown(clock) {
                    action = machine.attemptFailed(.refused, message: "refused", now: TestInstant(offset: .milliseconds(clock)), random: &random)
                } else {
                    clock += handshake
                    action = machine.connected(now: TestInstant(offset: .milliseconds(clock)))
                    upAt = clock
                    for (index, outage) in down.enumerated() where recoveredAt[index] == nil && outage.1 <= clock {
                        recoveredAt[index] = clock
                    }
                }
            case .waitUntil(let at):
                clock = Int(at.offset.components.seconds * 1000 + at.offset.components.attoseconds / 1_000_000_000_000_000)
                action = machine.deadlineReached(now: at)
            case .none:
                // Up: the session lives until the next outage starts.
                guard upAt != nil, let next = down.first(where: { $0.0 > clock }) else { return finish(recoveredAt, down) }
                clock = next.0
                upAt = nil
                action = machine.sessionLost(message: "reset", now: TestInstant(offset: .milliseconds(clock)), random: &random)
            case .giveUp, .disconnect:
                return finish(recoveredAt, down)
            }
        }
        return finish(recoveredAt, down)
    }

    private func finish(_ recoveredAt: [Int?], _ down: [(Int, Int)]) -> [Duration?] {
        zip(recoveredAt, down).map { at, outage in at.map { .milliseconds($0 - outage.1) } }
    }

    @Test func repeatedRestartsRecoverWithinOneSecondEachTime() {
        // The server restarts every 3 s (1 s away each time), so no session reaches the 30 s
        // grace: each outage must still end in a session within 1 s of the server being back.
        let outages = (0..<8).map { (5_000 + $0 * 3_000, 6_000 + $0 * 3_000) }
        let recoveries = simulate(outages: outages, until: 60_000)
        for (index, recovery) in recoveries.enumerated() {
            guard let recovery else {
                Issue.record("outage \(index) never recovered")
                continue
            }
            #expect(recovery <= .seconds(1), "outage \(index): up \(recovery) after the server came back")
        }
    }

    @Test func aServerThatKeepsDroppingSessionsIsBackedOffFromMoreAndMore() {
        // Accepts and authenticates, then drops the session after 1 s, never refusing: the storm
        // the failure count guards against. The waits before each new attempt must grow.
        var machine = Machine(policy: policy, enabled: true, now: .zero)
        var random = SplitMix64(seed: 8)
        var now = TestInstant.zero
        var waits: [Duration] = []
        for _ in 0..<6 {
            _ = machine.connected(now: now)
            now = now.advanced(by: .seconds(1))
            guard case .waitUntil(let at) = machine.sessionLost(message: "reset", now: now, random: &random) else {
                Issue.record("expected a backoff after a short session")
                return
            }
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

    @Test func localFailureFailsFromEveryEnabledStateButNotWhenDown() {
        var random = SplitMix64(seed: 4)
        var up = Machine(policy: policy, enabled: true, now: .zero)
        _ = up.connected(now: .zero)
        #expect(up.localFailure(message: "port busy", now: TestInstant(offset: .seconds(1))) == .giveUp)
        #expect(up.state == .failed && up.lastError == "port busy" && up.since == TestInstant(offset: .seconds(1)))
        var backoff = Machine(policy: policy, enabled: true, now: .zero)
        _ = backoff.attemptFailed(.transport, message: "refused", now: .zero, random: &random)
        #expect(backoff.localFailure(message: "port busy", now: .zero) == .giveUp)
        #expect(backoff.failures == 1, "a local failure is not a connection failure")
        var down = Machine(policy: policy, enabled: false, now: .zero)
        #expect(down.localFailure(message: "port busy", now: .zero) == .none)
        #expect(down.state == .down)
        #expect(up.localFailure(message: "again", now: .zero) == .none)
        #expect(up.lastError == "port busy", "an existing failure keeps its reason")
    }
}
