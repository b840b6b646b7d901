import Testing
@testable import EctoConfig

@Suite struct Durations {
    @Test(arguments: [
        ("500ms", Duration.milliseconds(500)),
        ("15s", .seconds(15)),
        ("2m", .seconds(120)),
        ("1h", .seconds(3600)),
        ("1m30s", .seconds(90)),
        ("1h2m3s", .seconds(3723)),
        ("1.5s", .milliseconds(1500)),
        ("0.25m", .seconds(15)),
        ("0s", .zero),
        ("1s250ms", .milliseconds(1250)),
    ])
    func strings(input: String, expected: Duration) throws {
        #expect(try DurationSyntax.parse(input) == expected)
    }

    @Test(arguments: [
        ("", "empty"),
        ("15", "missing unit"),
        ("15 s", "unexpected"),
        ("15sec", "unknown unit \"sec\""),
        ("-5s", "negative"),
        ("1.s", "digit must follow"),
        ("s", "expected a number"),
        ("1s2s", "appears twice"),
        ("99999999999999h", "too large"),
    ])
    func badStrings(input: String, fragment: String) {
        do {
            let d = try DurationSyntax.parse(input)
            Issue.record("parsed \(input) as \(d)")
        } catch {
            #expect(error.message.contains(fragment), "\(input): \(error.message)")
        }
    }

    @Test func numbers() throws {
        #expect(try DurationSyntax.fromSeconds(Int64(15)) == .seconds(15))
        #expect(try DurationSyntax.fromSeconds(0.1) == .milliseconds(100))
        #expect(try DurationSyntax.fromSeconds(2.5) == .milliseconds(2500))
        #expect(throws: DurationSyntax.Failure.self) { try DurationSyntax.fromSeconds(Int64(-1)) }
        #expect(throws: DurationSyntax.Failure.self) { try DurationSyntax.fromSeconds(-0.5) }
        #expect(throws: DurationSyntax.Failure.self) { try DurationSyntax.fromSeconds(Double.infinity) }
    }

    @Test func formatting() {
        #expect(DurationSyntax.format(.zero) == "0s")
        #expect(DurationSyntax.format(.milliseconds(500)) == "500ms")
        #expect(DurationSyntax.format(.seconds(90)) == "1m30s")
        #expect(DurationSyntax.format(.seconds(3600)) == "1h")
        #expect(DurationSyntax.format(.milliseconds(1500)) == "1.5s")
    }

    @Test func inConfig() throws {
        let text = """
            [tunnels.a]
            \(validBody)
            keepalive_interval = 0
            connect_timeout = 2.5
            backoff_initial = "250ms"
            backoff_max = "1m30s"
            hold_timeout = "1h"

            [tunnels.b]
            target = "ops@gw.example.net"
            local = "127.0.0.1:18790"
            remote = "127.0.0.1:18789"
            hold_timeout = 45
            """
        let ts = try parseConfig(text).tunnels
        #expect(ts.count == 2)
        let t = try #require(ts.first)
        #expect(t.keepaliveInterval == .zero)
        #expect(t.connectTimeout == .milliseconds(2500))
        #expect(t.backoffInitial == .milliseconds(250))
        #expect(t.backoffMax == .seconds(90))
        #expect(t.holdTimeout == .seconds(3600))
        #expect(ts[1].holdTimeout == .seconds(45))
    }
}
