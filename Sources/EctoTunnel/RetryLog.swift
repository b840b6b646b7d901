import EctoPlatform

/// Decides which failed attempts of an outage the log shows, so that a tunnel retrying forever
/// does not flood it: the first failure of an outage (and any failure whose reason differs from
/// the last one shown) is logged in full; repeats of the same reason are counted and summed up in
/// one line when the backoff grows a step, or every `summaryEvery` at the cap ("still failing
/// (connection refused): 37 attempts in 5 min, next in 30 s"). A permanent outage thus costs
/// about 20 lines in its first hour (the first failure, one per backoff step up to the cap, one
/// every 5 minutes after) and 12 an hour after that.
///
/// Pure: instants come in, lines go out. Failures the operator must act on (host key,
/// authentication, a `local` setup error) are bounded already and are not passed through it.
public struct RetryLog<Instant: InstantProtocol & Sendable>: Sendable where Instant.Duration == Duration {
    public let summaryEvery: Duration
    /// Failed attempts in the current outage.
    public private(set) var attempts = 0
    private var outageStart: Instant?
    private var shownReason: String?
    private var shownStep: Duration?
    private var lastLine: Instant?

    public init(summaryEvery: Duration = .seconds(300)) {
        self.summaryEvery = summaryEvery
    }

    /// A line to log for a failed attempt, or nil to stay quiet. `step` is the nominal wait of the
    /// retry policy now in force (a new step is worth a line), `next` the actual wait.
    public mutating func failed(reason: String, step: Duration, next: Duration, now: Instant) -> String? {
        attempts += 1
        let start = outageStart ?? now
        outageStart = start
        if reason != shownReason {
            shownReason = reason
            shownStep = step
            lastLine = now
            return "connection attempt failed: \(reason); retrying in \(spoken(next))"
        }
        let grew = shownStep.map { step > $0 } ?? true
        let due = lastLine.map { $0.duration(to: now) >= summaryEvery } ?? true
        guard grew || due else { return nil }
        shownStep = step
        lastLine = now
        return
            "still failing (\(reason)): \(attempts) attempts in \(spoken(start.duration(to: now))), next in \(spoken(next))"
    }

    /// The session is up again: a line summing up the outage when more than one attempt failed
    /// (nil otherwise), and a clean slate for the next outage.
    public mutating func recovered(now: Instant) -> String? {
        defer { self = RetryLog(summaryEvery: summaryEvery) }
        guard attempts > 1, let outageStart else { return nil }
        return "\(attempts) failed attempts over \(spoken(outageStart.duration(to: now))) before this connection"
    }

    /// Forget the outage without a line (the tunnel was disabled or is stopping).
    public mutating func reset() { self = RetryLog(summaryEvery: summaryEvery) }

}
