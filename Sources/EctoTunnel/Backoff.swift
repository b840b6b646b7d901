/// Exponential backoff with jitter and a cap.
///
/// The n-th consecutive failure (n ≥ 1) waits a uniformly random time in
/// `[d/2, d]` where `d = min(maximum, initial × 2^(n-1))` ("equal jitter"): never less than half
/// the nominal delay, so a fleet of clients cannot storm the server, and never more than the cap.
public struct BackoffPolicy: Sendable, Equatable {
    public var initial: Duration
    public var maximum: Duration

    public init(initial: Duration, maximum: Duration) {
        precondition(initial > .zero && maximum >= initial, "backoff needs 0 < initial <= maximum")
        self.initial = initial
        self.maximum = maximum
    }

    /// The nominal (un-jittered) delay before retry number `failures` (1-based).
    public func nominalDelay(afterFailures failures: Int) -> Duration {
        guard failures > 0 else { return .zero }
        var delay = initial
        for _ in 1..<min(failures, 64) {
            delay = delay * 2
            if delay >= maximum { return maximum }
        }
        return min(delay, maximum)
    }

    /// The jittered delay before retry number `failures`, drawn from `random`.
    public func delay(afterFailures failures: Int, using random: inout some RandomNumberGenerator) -> Duration {
        Self.jittered(nominalDelay(afterFailures: failures), using: &random)
    }

    /// "Equal jitter": a uniformly random time in `[nominal/2, nominal]`.
    public static func jittered(_ nominal: Duration, using random: inout some RandomNumberGenerator) -> Duration {
        guard nominal > .zero else { return .zero }
        let nanos = nominal.components.seconds * 1_000_000_000 + nominal.components.attoseconds / 1_000_000_000
        return .nanoseconds(Int64.random(in: (nanos / 2)...nanos, using: &random))
    }
}

/// A small, fast, seedable generator (SplitMix64) so that tests can pin the jitter.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
