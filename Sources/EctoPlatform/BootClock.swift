#if canImport(Glibc)
import Glibc
#endif

/// A point in time on the clock the event loops run on: `CLOCK_BOOTTIME`, which counts on while
/// the machine sleeps (so a deadline that passed during a suspend has passed), as
/// `ContinuousClock` does on Linux, kept as a plain count of nanoseconds.
///
/// Why not `ContinuousClock.Instant`: that type belongs to a resilient module (the Swift
/// runtime's `_Concurrency`) and is not frozen, so the compiler does not know its layout. Every
/// `Optional<Instant>`, tuple or enum holding one on a loop's hot path was then handled through
/// runtime calls (value witnesses, `swift_getEnumCaseMultiPayload`,
/// `tuple_getEnumTagSinglePayload`), and every comparison or `advanced(by:)` was an opaque call:
/// several per cent of the daemon's CPU under connection churn (perf, `bench/run.py --only
/// conn8`). This one is frozen and inlinable: comparisons and arithmetic are plain integer code.
@frozen public struct BootInstant: InstantProtocol, Sendable, Hashable, CustomStringConvertible {
    /// Nanoseconds since boot.
    public var nanoseconds: Int64

    @inlinable public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

    /// Now.
    @inlinable public static var now: BootInstant {
        var time = timespec()
        clock_gettime(CLOCK_BOOTTIME, &time)
        return BootInstant(nanoseconds: Int64(time.tv_sec) &* 1_000_000_000 &+ Int64(time.tv_nsec))
    }

    /// `duration` in nanoseconds, bounded to about ±285 years (far from `Int64`'s end).
    @inlinable public static func nanoseconds(of duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        let bound: Int64 = 9_000_000_000
        return min(max(seconds, -bound), bound) &* 1_000_000_000 &+ attoseconds / 1_000_000_000
    }

    /// `self` moved by `duration`, saturating (a deadline centuries away stays centuries away).
    @inlinable public func advanced(by duration: Duration) -> BootInstant {
        let nanos = Self.nanoseconds(of: duration)
        let (sum, overflow) = nanoseconds.addingReportingOverflow(nanos)
        return BootInstant(nanoseconds: overflow ? (nanos > 0 ? .max : .min) : sum)
    }

    @inlinable public func duration(to other: BootInstant) -> Duration {
        .nanoseconds(other.nanoseconds &- nanoseconds)
    }

    @inlinable public static func < (lhs: BootInstant, rhs: BootInstant) -> Bool {
        lhs.nanoseconds < rhs.nanoseconds
    }

    public var description: String { "boot+\(Double(nanoseconds) / 1e9)s" }
}

/// The event loops' clock (`BootInstant`): `clock.now`, as with `ContinuousClock`.
@frozen public struct BootClock: Sendable {
    @inlinable public init() {}

    @inlinable public var now: BootInstant { .now }
}
