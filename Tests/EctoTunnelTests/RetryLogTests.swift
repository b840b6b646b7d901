import Testing

@testable import EctoTunnel

@Suite struct RetryLogTests {
    typealias Machine = ReconnectMachine<TestInstant>

    /// A permanent refused-connect outage with the default policy (backoff 1 s to 60 s), one hour:
    /// the lines the log gets, as the driver asks for them.
    @Test func aPermanentOutageCostsAtMostThirtyLinesAnHour() {
        let policy = Machine.Policy(backoff: BackoffPolicy(initial: .seconds(1), maximum: .seconds(60)))
        var machine = Machine(policy: policy, enabled: true, now: .zero)
        var log = RetryLog<TestInstant>()
        var random = SplitMix64(seed: 21)
        var now = TestInstant.zero
        var lines: [String] = []
        var attempts = 0
        while now.offset < .seconds(3600) {
            attempts += 1
            guard
                case .waitUntil(let at) = machine.attemptFailed(
                    .refused, message: "connection refused", now: now, random: &random)
            else {
                Issue.record("expected a retry")
                return
            }
            let step = try! #require(machine.retryStep)
            if let line = log.failed(reason: "connection refused", step: step, next: now.duration(to: at), now: now) {
                lines.append(line)
            }
            now = at
            _ = machine.deadlineReached(now: now)
        }
        #expect(lines.count <= 30, "\(lines.count) lines:\n\(lines.joined(separator: "\n"))")
        #expect(lines.count >= 10, "a summary at each step and every 5 minutes: \(lines)")
        #expect(lines[0].hasPrefix("connection attempt failed: connection refused; retrying in"))
        #expect(lines.dropFirst().allSatisfy { $0.hasPrefix("still failing (connection refused): ") })
        #expect(lines.last!.contains("attempts in"))
        #expect(attempts > 60, "it kept trying: \(attempts) attempts")
    }

    @Test func aNewReasonIsShownAtOnceAndRecoverySumsUp() {
        var log = RetryLog<TestInstant>()
        let t = { (s: Int) in TestInstant(offset: .seconds(s)) }
        #expect(log.failed(reason: "refused", step: .seconds(1), next: .seconds(1), now: t(0)) != nil)
        #expect(log.failed(reason: "refused", step: .seconds(1), next: .seconds(1), now: t(1)) == nil)
        #expect(
            log.failed(reason: "timed out", step: .seconds(1), next: .seconds(1), now: t(2))
                == "connection attempt failed: timed out; retrying in 1.00 s")
        #expect(
            log.failed(reason: "timed out", step: .seconds(2), next: .milliseconds(1500), now: t(3))
                == "still failing (timed out): 4 attempts in 3.00 s, next in 1.50 s")
        #expect(log.recovered(now: t(65)) == "4 failed attempts over 1 min 5 s before this connection")
        // A clean slate: the next outage starts with a full line, and one failure sums up nothing.
        #expect(
            log.failed(reason: "refused", step: .seconds(1), next: .seconds(1), now: t(100))?.hasPrefix(
                "connection attempt failed") == true)
        #expect(log.recovered(now: t(101)) == nil)
    }
}
