import Dispatch
import EctoConfig
import Logging
import Synchronization
import Testing

@testable import EctoTunnel

#if canImport(Glibc)
import Glibc
#endif

/// getaddrinfo runs off the driver's loop (`HostResolver`): a lookup that hangs must not stall the
/// driver's answers to watchdog pings, its status, or its timers.
@Suite("Resolving off the driver's loop", .serialized)
struct ResolverTests {
    @Test("a hanging lookup: pings and status keep answering, and connect_timeout fails the attempt")
    func hangingResolver() async throws {
        let release = DispatchSemaphore(value: 0)
        let lookups = Atomic<Int>(0)
        HostResolver.testHook.withLock {
            $0 = { host, _ throws(SystemError) in
                lookups.add(1, ordering: .relaxed)
                _ = release.wait(timeout: .now() + 30)  // hangs like a blackholed DNS server
                throw SystemError(EHOSTUNREACH, "resolve \(host): test resolver released")
            }
        }
        defer {
            HostResolver.testHook.withLock { $0 = nil }
            for _ in 0..<8 { release.signal() }
        }
        let config = TunnelConfig(
            name: "hang", target: SSHTarget(user: "ops", host: "gw.hang.invalid", port: 22),
            local: Endpoint(host: "127.0.0.1", port: 0), remote: Endpoint(host: "127.0.0.1", port: 18789),
            knownHosts: "/nonexistent/known_hosts", connectTimeout: .seconds(2), backoffInitial: .seconds(5),
            backoffMax: .seconds(5))
        let tunnel = try Tunnel.start(config: config, logger: Logger(label: "test"))
        defer {
            tunnel.stop(grace: .zero)
            _ = tunnel.wait(timeout: .seconds(5))
        }
        let handle = try #require(tunnel.drivers.first)
        // Wait for the lookup to be under way.
        let began = ContinuousClock.now
        while lookups.load(ordering: .relaxed) == 0 && began.duration(to: .now) < .seconds(5) {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(lookups.load(ordering: .relaxed) == 1)

        // While it hangs: every ping is answered within 200 ms, and status says connecting.
        var slowest: Duration = .zero
        for _ in 0..<10 {
            let before = handle.pongs
            let sent = ContinuousClock.now
            handle.send(.ping)
            while handle.pongs == before && sent.duration(to: .now) < .seconds(1) {
                try await Task.sleep(for: .milliseconds(2))
            }
            #expect(handle.pongs > before, "the driver did not answer a ping during the lookup")
            slowest = max(slowest, sent.duration(to: .now))
            #expect(tunnel.status.state == .connecting)
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(slowest < .milliseconds(200), "slowest ping answer \(slowest)")

        // connect_timeout (2 s) ends the attempt although the lookup still hangs.
        let deadline = ContinuousClock.now.advanced(by: .seconds(4))
        while tunnel.status.state != .backoff && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let status = tunnel.status
        #expect(status.state == .backoff)
        #expect(
            status.lastError?.contains("cannot resolve gw.hang.invalid: no answer within connect_timeout") == true,
            "\(String(describing: status.lastError))")
        // The late answer of the abandoned lookup is ignored: still backoff, same error.
        release.signal()
        try await Task.sleep(for: .milliseconds(200))
        #expect(tunnel.status.state == .backoff)
        #expect(tunnel.status.lastError == status.lastError)
        let before = handle.pongs
        handle.send(.ping)
        try await Task.sleep(for: .milliseconds(100))
        #expect(handle.pongs > before)
    }
}
