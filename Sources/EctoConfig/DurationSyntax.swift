/// Durations in the config: a number of seconds (integer or float) or a string such as
/// `"500ms"`, `"15s"`, `"2m"`, `"1h"`, `"1m30s"`, `"1.5s"`.
enum DurationSyntax {
    struct Failure: Error, Equatable {
        var message: String
    }

    private static let nsPerUnit: [String: Int64] = [
        "ms": 1_000_000,
        "s": 1_000_000_000,
        "m": 60_000_000_000,
        "h": 3_600_000_000_000,
    ]

    /// Upper bound: well beyond any sensible timeout, well below overflow.
    static let maxSeconds: Int64 = 100 * 365 * 24 * 3600

    static func parse(_ s: String) throws(Failure) -> Duration {
        if s.isEmpty { throw Failure(message: "empty duration") }
        if s.hasPrefix("-") { throw Failure(message: "must not be negative") }
        let u = Array(s.utf8)
        var i = 0
        var totalNs: Int64 = 0
        var seen: Set<String> = []
        func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }
        func isLetter(_ b: UInt8) -> Bool { (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) }
        while i < u.count {
            let numStart = i
            while i < u.count && isDigit(u[i]) { i += 1 }
            let intPart = String(decoding: u[numStart..<i], as: UTF8.self)
            var frac = ""
            if i < u.count && u[i] == UInt8(ascii: ".") {
                i += 1
                let f = i
                while i < u.count && isDigit(u[i]) { i += 1 }
                frac = String(decoding: u[f..<i], as: UTF8.self)
                if frac.isEmpty { throw Failure(message: "a digit must follow the decimal point") }
            }
            if intPart.isEmpty && frac.isEmpty {
                let rest = String(decoding: u[i...], as: UTF8.self)
                throw Failure(message: "expected a number at \"\(rest)\"")
            }
            let unitStart = i
            while i < u.count && isLetter(u[i]) { i += 1 }
            let unit = String(decoding: u[unitStart..<i], as: UTF8.self)
            if unit.isEmpty {
                if i == u.count {
                    throw Failure(
                        message: "missing unit after \(intPart)\(frac.isEmpty ? "" : "." + frac) (use ms, s, m or h)")
                }
                throw Failure(
                    message:
                        "unexpected \"\(String(decoding: u[i...], as: UTF8.self))\" (use a number followed by ms, s, m or h)"
                )
            }
            guard let per = nsPerUnit[unit] else {
                throw Failure(message: "unknown unit \"\(unit)\" (use ms, s, m or h)")
            }
            if !seen.insert(unit).inserted { throw Failure(message: "unit \"\(unit)\" appears twice") }
            guard intPart.count <= 12, let whole = Int64(intPart.isEmpty ? "0" : intPart) else {
                throw Failure(message: "too large")
            }
            let (wholeNs, o1) = whole.multipliedReportingOverflow(by: per)
            var fracNs: Int64 = 0
            if !frac.isEmpty, let f = Double("0." + frac) { fracNs = Int64((f * Double(per)).rounded()) }
            let (sum, o2) = totalNs.addingReportingOverflow(wholeNs)
            let (sum2, o3) = sum.addingReportingOverflow(fracNs)
            if o1 || o2 || o3 || sum2 / 1_000_000_000 > maxSeconds { throw Failure(message: "too large") }
            totalNs = sum2
        }
        return .nanoseconds(totalNs)
    }

    static func fromSeconds(_ seconds: Double) throws(Failure) -> Duration {
        if seconds.isNaN { throw Failure(message: "must be a number") }
        if seconds < 0 { throw Failure(message: "must not be negative") }
        if seconds > Double(maxSeconds) { throw Failure(message: "too large") }
        return .nanoseconds(Int64((seconds * 1e9).rounded()))
    }

    static func fromSeconds(_ seconds: Int64) throws(Failure) -> Duration {
        if seconds < 0 { throw Failure(message: "must not be negative") }
        if seconds > maxSeconds { throw Failure(message: "too large") }
        return .seconds(seconds)
    }

    /// Total nanoseconds (durations here are far below the overflow bound).
    static func nanoseconds(_ d: Duration) -> Int64 {
        let c = d.components
        return c.seconds * 1_000_000_000 + c.attoseconds / 1_000_000_000
    }

    /// Short human form for messages: `0s`, `500ms`, `15s`, `1m30s`, `1h`, `1.5s`.
    static func format(_ d: Duration) -> String {
        let ns = nanoseconds(d)
        if ns == 0 { return "0s" }
        if ns % 1_000_000_000 == 0 {
            var s = ns / 1_000_000_000
            var out = ""
            if s >= 3600 {
                out += "\(s / 3600)h"
                s %= 3600
            }
            if s >= 60 {
                out += "\(s / 60)m"
                s %= 60
            }
            if s > 0 { out += "\(s)s" }
            return out
        }
        if ns < 1_000_000_000 && ns % 1_000_000 == 0 { return "\(ns / 1_000_000)ms" }
        var frac = String(ns % 1_000_000_000)
        frac = String(repeating: "0", count: 9 - frac.count) + frac
        while frac.hasSuffix("0") { frac.removeLast() }
        return "\(ns / 1_000_000_000).\(frac)s"
    }
}
