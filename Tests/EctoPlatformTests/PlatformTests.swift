import Foundation
import Synchronization
import Testing
@testable import EctoPlatform

#if canImport(Glibc)
import Glibc
#endif

// Foundation is imported here (tests only) to check the replacements against what they replace.

@Suite struct Trimming {
    @Test func matchesFoundation() {
        let samples = [
            "", " ", "\t x \t", " \n a b \r\n", "\u{A0}value\u{2003}", "\u{85}x\u{2028}", "x", "\n\n", "a\u{2029}",
            "  spaced  out  ",
        ]
        for sample in samples {
            #expect(
                sample.trimmed(.whitespaces) == sample.trimmingCharacters(in: .whitespaces),
                "\(sample.debugDescription)")
            #expect(
                sample.trimmed() == sample.trimmingCharacters(in: .whitespacesAndNewlines), "\(sample.debugDescription)"
            )
        }
    }

    @Test func substrings() {
        let line = "Host:  example  \r"
        #expect(line[line.index(after: line.firstIndex(of: ":")!)...].trimmed() == "example")
    }
}

@Suite struct FixedFormatting {
    @Test func matchesStringFormat() {
        for value in [0, 0.05, 0.15, 1.25, 2.345, 9.95, 10, 123.456, -3.75, 1e12, 0.0049] {
            for decimals in 0...3 {
                #expect(fixed(value, decimals: decimals) == String(format: "%.\(decimals)f", value))
            }
        }
    }

    @Test func zeroPaddedMatchesStringFormat() {
        for value in [0, 7, 42, 420, 0o644, 0o4755, 12345, -5] {
            #expect(zeroPadded(value, width: 4, radix: 8) == String(format: "%04o", value) || value < 0)
            #expect(zeroPadded(value, width: 3) == String(format: "%03d", value))
        }
    }

    @Test func hugeValues() {
        #expect(fixed(1e70, decimals: 1) == String(format: "%.1f", 1e70))
    }

    @Test("spoken durations: two decimals below 10 s, then whole seconds, minutes, hours")
    func spokenDurations() {
        #expect(spoken(.milliseconds(420)) == "0.42 s")
        #expect(spoken(.milliseconds(9_994)) == "9.99 s")
        #expect(spoken(.milliseconds(12_400)) == "12 s")
        #expect(spoken(.seconds(60)) == "1 min")
        #expect(spoken(.seconds(303)) == "5 min 3 s")
        #expect(spoken(.seconds(7_260)) == "2 h 1 min")
        #expect(spoken(.seconds(7_205)) == "2 h")
    }
}

@Suite struct PathArithmetic {
    /// path, directory, last component: NSString's answers, except for "a" (NSString's
    /// deletingLastPathComponent traps on it in Swift 6.3.1) and "//" (NSString: "", "").
    static let samples = [
        ("/a/b", "/a", "b"), ("/a", "/", "a"), ("a", "", "a"), ("a/b/", "a", "b"), ("/", "/", "/"), ("", "", ""),
        ("a//b", "a", "b"), ("/a/b//", "/a", "b"), ("//", "/", "/"), ("./x", ".", "x"), ("../x/y", "../x", "y"),
    ]

    @Test func components() {
        for (path, directory, last) in Self.samples {
            #expect(Path.directory(of: path) == directory, "\(path)")
            #expect(Path.lastComponent(of: path) == last, "\(path)")
        }
    }

    @Test func resolvesSymlinks() throws {
        var template = Array("/tmp/ecto-platform-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        let dir = String(cString: try #require(made))
        defer { _ = try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: dir + "/real", withIntermediateDirectories: true)
        #expect(FileManager.default.createFile(atPath: dir + "/real/config.toml", contents: Data()))
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.toml", withDestinationPath: "real/config.toml")
        try FileManager.default.createSymbolicLink(atPath: dir + "/dirlink", withDestinationPath: dir + "/real")

        #expect(Path.resolvingSymlinks(dir + "/link.toml") == dir + "/real/config.toml")
        #expect(Path.resolvingSymlinks(dir + "/dirlink/config.toml") == dir + "/real/config.toml")
        #expect(Path.resolvingSymlinks(dir + "/dirlink/new/file") == dir + "/real/new/file")
        #expect(Path.resolvingSymlinks(dir + "/real/../link.toml") == dir + "/real/config.toml")
        #expect(Path.resolvingSymlinks(dir + "/./real//config.toml") == dir + "/real/config.toml")
        #expect(Path.resolvingSymlinks("/") == "/")

        let cwd = FileManager.default.currentDirectoryPath
        #expect(FileManager.default.changeCurrentDirectoryPath(dir))
        defer { _ = FileManager.default.changeCurrentDirectoryPath(cwd) }
        #expect(Path.resolvingSymlinks("link.toml") == dir + "/real/config.toml")
        #expect(Path.resolvingSymlinks("missing.toml") == dir + "/missing.toml")
    }
}

@Suite struct Threads {
    /// The name as the kernel shows it (`top -H`, `ps -L`).
    static func currentThreadName() -> String? {
        (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8))?.trimmingCharacters(in: .newlines)
    }

    @Test func runsBodyWithName() async {
        let seen = Mutex<[String?]>([])
        for name in ["control", "a rather long thread name", "tunnel aünïcödé"] {
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                startThread(name: name, stackSize: 512 * 1024) {
                    seen.withLock { $0.append(Self.currentThreadName()) }
                    done.resume()
                }
            }
        }
        // Linux keeps 15 bytes; a multi-byte character is never cut in half.
        #expect(seen.withLock { $0 } == ["control", "a rather long t", "tunnel aünïc"])
    }
}

@Suite struct AcceptBackoffTests {
    @Test func pausesGrowFrom50MillisecondsTo1SecondAndAnEmptiedBacklogEndsTheEpisode() {
        var backoff = AcceptBackoff()
        let start = BootInstant.now
        #expect(!backoff.isPaused(now: start) && backoff.wakeUp(now: start) == nil)
        var pauses: [Duration] = []
        var starts: [Bool] = []
        for _ in 0..<7 {
            let (pause, started) = backoff.failed(now: start)
            pauses.append(pause)
            starts.append(started)
        }
        #expect(
            pauses == [
                .milliseconds(50), .milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800),
                .seconds(1), .seconds(1),
            ])
        #expect(starts == [true, false, false, false, false, false, false], "one log line per episode")
        #expect(backoff.isPaused(now: start) && backoff.wakeUp(now: start) == start.advanced(by: .seconds(1)))
        #expect(!backoff.isPaused(now: start.advanced(by: .seconds(1))), "watched again when the pause ends")
        let ended = backoff.drained()
        let endedAgain = backoff.drained()
        #expect(ended)
        #expect(!endedAgain, "no episode left to end")
        let next = backoff.failed(now: start)
        #expect(next.pause == .milliseconds(50) && next.started, "a new episode starts small")
    }
}

@Suite struct BootInstantTests {
    @Test func arithmeticAndOrder() {
        let start = BootInstant(nanoseconds: 1_000_000_000)
        let later = start.advanced(by: .milliseconds(1500))
        #expect(later.nanoseconds == 2_500_000_000)
        #expect(start < later && !(later < start))
        #expect(start.duration(to: later) == .milliseconds(1500))
        #expect(later.duration(to: start) == .milliseconds(-1500))
        #expect(start.advanced(by: .nanoseconds(1)).nanoseconds == 1_000_000_001)
        #expect(start.advanced(by: .zero) == start)
        #expect(BootInstant.nanoseconds(of: .milliseconds(-1500)) == -1_500_000_000)
    }

    @Test func farDeadlinesSaturateInsteadOfWrapping() {
        let now = BootInstant.now
        let far = now.advanced(by: .seconds(Int64.max))
        #expect(far > now)
        #expect(now.advanced(by: .seconds(Int64.min)) < now)
        #expect(BootInstant(nanoseconds: .max - 1).advanced(by: .seconds(10)).nanoseconds == .max)
    }

    /// The same clock as `ContinuousClock` on Linux (CLOCK_BOOTTIME): both advance alike.
    @Test func runsWithTheContinuousClock() async throws {
        let (boot, continuous) = (BootInstant.now, ContinuousClock.now)
        try await Task.sleep(for: .milliseconds(200))
        let bootElapsed = boot.duration(to: .now)
        let continuousElapsed = continuous.duration(to: .now)
        #expect(bootElapsed >= .milliseconds(200))
        #expect(abs(seconds(bootElapsed) - seconds(continuousElapsed)) < 0.01)
    }

    private func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
