/// What a listener does when `accept` fails for want of resources (EMFILE, ENFILE, ENOBUFS,
/// ENOMEM): the pending client stays in the kernel's backlog and the listener stays readable, so
/// accepting again at once would fail again at once. The listener is left out of the event loop
/// for a pause of 50 ms, doubling to 1 s while it keeps failing (swift-nio's accept backoff), and
/// the episode ends when an accept round empties the backlog. Used by the tunnel drivers and the
/// control socket alike.
public struct AcceptBackoff: Sendable {
    /// The end of the current pause (nil: no episode).
    public private(set) var until: BootInstant?
    private var length: Duration = .zero

    public init() {}

    /// accept failed: pause from `now`. Returns the pause, and whether this started an episode
    /// (worth one log line).
    public mutating func failed(now: BootInstant) -> (pause: Duration, started: Bool) {
        let started = until == nil
        length = min(.seconds(1), (started ? .milliseconds(25) : length) * 2)
        until = now.advanced(by: length)
        return (length, started)
    }

    /// An accept round emptied the backlog: the episode is over. Returns whether there was one.
    public mutating func drained() -> Bool {
        defer { until = nil }
        return until != nil
    }

    /// True while the listener must not be watched.
    public func isPaused(now: BootInstant) -> Bool { until.map { now < $0 } ?? false }

    /// The instant to wake up at to watch the listener again, while paused.
    public func wakeUp(now: BootInstant) -> BootInstant? { isPaused(now: now) ? until : nil }
}
