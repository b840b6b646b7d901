#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Which characters `trimmed(_:)` removes; the same sets as Foundation's `CharacterSet`.
public enum Blanks: Sendable {
    /// Spaces (Unicode category Zs) and tab: `CharacterSet.whitespaces`.
    case whitespaces
    /// The above plus line and paragraph separators (Zl, Zp), U+000A–U+000D and U+0085:
    /// `CharacterSet.whitespacesAndNewlines`.
    case whitespacesAndNewlines

    func contains(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .spaceSeparator: return true
        case .lineSeparator, .paragraphSeparator: return self == .whitespacesAndNewlines
        default:
            if scalar == "\t" { return true }
            return self == .whitespacesAndNewlines && (("\n"..."\r").contains(scalar) || scalar == "\u{85}")
        }
    }
}

extension StringProtocol {
    /// The text without `blanks` at either end (Foundation's `trimmingCharacters(in:)`).
    public func trimmed(_ blanks: Blanks = .whitespacesAndNewlines) -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !blanks.contains($0) }) else { return "" }
        let last = scalars.lastIndex(where: { !blanks.contains($0) })!
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars[first...last])
        return String(view)
    }
}

/// `value` in `radix` with leading zeros up to `width` digits, like printf's `%0Nd` (`%0No` with
/// radix 8): `zeroPadded(7, width: 3)` is "007". Negative values get the sign before the zeros.
public func zeroPadded(_ value: some BinaryInteger, width: Int, radix: Int = 10) -> String {
    let digits = String(value.magnitude, radix: radix)
    let zeros = String(repeating: "0", count: max(0, width - digits.count - (value < 0 ? 1 : 0)))
    return (value < 0 ? "-" : "") + zeros + digits
}

/// `value` with exactly `decimals` digits after the point, rounded like printf's `%.Nf`
/// (which it is): `fixed(2.345, decimals: 1)` is "2.3". Replaces `String(format: "%.Nf", value)`.
public func fixed(_ value: Double, decimals: Int) -> String {
    var buffer = [CChar](repeating: 0, count: 64)
    let count = withVaList([Int32(decimals), value]) { arguments in
        buffer.withUnsafeMutableBufferPointer { vsnprintf($0.baseAddress, $0.count, "%.*f", arguments) }
    }
    if count >= buffer.count {  // huge values: print again with room for every digit
        buffer = [CChar](repeating: 0, count: Int(count) + 1)
        _ = withVaList([Int32(decimals), value]) { arguments in
            buffer.withUnsafeMutableBufferPointer { vsnprintf($0.baseAddress, $0.count, "%.*f", arguments) }
        }
    }
    return String(decoding: buffer.prefix(Int(count)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// A duration as the log says it: "0.42 s" (two decimals below 10 s), "12 s", "5 min 3 s", "2 h 1 min".
/// The one human form for durations in messages (config syntax has its own: `DurationSyntax`).
public func spoken(_ duration: Duration) -> String {
    let total = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    if total < 10 { return fixed(total, decimals: 2) + " s" }
    let seconds = Int(total.rounded())
    if seconds < 60 { return "\(seconds) s" }
    if seconds < 3600 { return "\(seconds / 60) min" + (seconds % 60 == 0 ? "" : " \(seconds % 60) s") }
    return "\(seconds / 3600) h" + ((seconds % 3600) / 60 == 0 ? "" : " \((seconds % 3600) / 60) min")
}
