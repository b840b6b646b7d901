import Foundation
import Glibc

/// A deterministic byte stream for integrity tests: the little-endian bytes of successive
/// xorshift64* outputs, from a state derived from `seed` by splitmix64. The same seed always gives
/// the same bytes, so a receiver can check a transfer byte for byte without a digest and report the
/// first offset that differs.
public struct PatternGenerator: Sendable {
    private var state: UInt64
    /// Unemitted bytes of the current word, low byte next.
    private var word: UInt64 = 0
    private var wordBytesLeft = 0
    /// How many bytes were generated so far.
    public private(set) var offset: Int = 0

    public init(seed: UInt64) {
        var z = seed &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        state = z == 0 ? 0x9E37_79B9_7F4A_7C15 : z
    }

    private mutating func nextWord() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }

    /// Writes the next `buffer.count` bytes of the stream into `buffer`.
    public mutating func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        guard let base = buffer.baseAddress else { return }
        let count = buffer.count
        var index = 0
        while index < count && wordBytesLeft > 0 {
            base.storeBytes(of: UInt8(truncatingIfNeeded: word), toByteOffset: index, as: UInt8.self)
            word >>= 8
            wordBytesLeft -= 1
            index += 1
        }
        while count - index >= 8 {
            base.storeBytes(of: nextWord().littleEndian, toByteOffset: index, as: UInt64.self)
            index += 8
        }
        if index < count {
            word = nextWord()
            wordBytesLeft = 8
            while index < count {
                base.storeBytes(of: UInt8(truncatingIfNeeded: word), toByteOffset: index, as: UInt8.self)
                word >>= 8
                wordBytesLeft -= 1
                index += 1
            }
        }
        offset += count
    }

    /// The next `count` bytes of the stream.
    public mutating func next(_ count: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            fill(UnsafeMutableRawBufferPointer(buffer))
            initialized = count
        }
    }

    /// The first `count` bytes of the stream for `seed`.
    public static func bytes(seed: UInt64, count: Int) -> [UInt8] {
        var generator = PatternGenerator(seed: seed)
        return generator.next(count)
    }
}

/// The outcome of checking a received stream against a `PatternGenerator`.
public struct PatternCheck: Sendable, Equatable, CustomStringConvertible {
    /// Bytes received.
    public var received: Int
    /// Offset of the first byte that differs from the pattern, nil if all matched.
    public var firstMismatch: Int?

    public init(received: Int, firstMismatch: Int?) {
        self.received = received
        self.firstMismatch = firstMismatch
    }

    /// True if exactly `count` bytes arrived and all matched.
    public func isIntact(count: Int) -> Bool { received == count && firstMismatch == nil }

    public var description: String {
        if let firstMismatch { return "MISMATCH \(firstMismatch) \(received)" }
        return "OK \(received)"
    }

    /// The line a `SinkServer` replies with: "OK <received>\n" or "MISMATCH <offset> <received>\n".
    public var verdictLine: String { description + "\n" }

    /// Parses a `verdictLine`.
    public init?(verdictLine line: String) {
        let fields = line.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ")
        if fields.count == 2, fields[0] == "OK", let received = Int(fields[1]) {
            self.init(received: received, firstMismatch: nil)
        } else if fields.count == 3, fields[0] == "MISMATCH", let offset = Int(fields[1]), let received = Int(fields[2])
        {
            self.init(received: received, firstMismatch: offset)
        } else {
            return nil
        }
    }
}

/// Checks bytes, as they arrive, against the pattern for a seed.
///
/// Not `Sendable`: owns a scratch buffer; use it on one thread.
public final class PatternVerifier {
    private var generator: PatternGenerator
    private let scratch: UnsafeMutableRawBufferPointer
    public private(set) var received = 0
    public private(set) var firstMismatch: Int?

    public init(seed: UInt64) {
        generator = PatternGenerator(seed: seed)
        scratch = .allocate(byteCount: 1 << 16, alignment: 16)
    }

    deinit { scratch.deallocate() }

    public var result: PatternCheck { PatternCheck(received: received, firstMismatch: firstMismatch) }

    /// Checks the next bytes of the stream.
    public func check(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let chunk = min(scratch.count, bytes.count - done)
            let expected = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<chunk])
            generator.fill(expected)
            if firstMismatch == nil && memcmp(base + done, expected.baseAddress!, chunk) != 0 {
                for index in 0..<chunk where bytes[done + index] != expected[index] {
                    firstMismatch = received + done + index
                    break
                }
            }
            done += chunk
        }
        received += bytes.count
    }

    public func check(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { check($0) }
    }
}
