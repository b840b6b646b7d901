import EctoStatus
import Foundation
import Testing

@testable import EctoTunnelCLI

/// The human status table: what each state looks like.
@Suite struct StatusTableTests {
    static let now = Date(timeIntervalSince1970: 1_795_000_100)

    func tunnel(_ name: String, _ state: TunnelState, sessions: Int = 1, up: Int? = nil) -> TunnelStatus {
        TunnelStatus(
            name: name, state: state, enabled: state != .down, target: "ops@gw:22", local: "127.0.0.1:1",
            remote: "127.0.0.1:2",
            connections: 2, bytesIn: 1_500, bytesOut: 12, reconnects: 1,
            since: Date(timeIntervalSince1970: 1_795_000_000),
            lastError: state == .up ? nil : "connect: refused", sessions: sessions, sessionsUp: up)
    }

    @Test func stateCells() {
        #expect(StatusTable.stateCell(tunnel("a", .up), age: "1m 40s") == "up")
        #expect(StatusTable.stateCell(tunnel("a", .up, sessions: 3, up: 2), age: "1m 40s") == "up 2/3")
        var local = tunnel("b", .backoff)
        local.retryCause = .local
        #expect(StatusTable.stateCell(local, age: "4s") == "backoff (local) 4s")
        var remote = tunnel("b", .backoff)
        remote.retryCause = .remote
        #expect(StatusTable.stateCell(remote, age: "4s") == "backoff 4s")
        #expect(StatusTable.stateCell(tunnel("c", .failed), age: "9s") == "failed 9s")
        #expect(StatusTable.stateCell(tunnel("d", .down), age: "9s") == "down 9s")
        #expect(StatusTable.stateCell(tunnel("e", .connecting), age: "0s") == "connecting 0s")
    }

    @Test func gatewayColumnOnlyWhileUp() {
        var up = tunnel("a", .up)
        #expect(StatusTable.gateway(up) == "-")
        up.gateway = GatewayReport(
            ok: true, outcome: .up, detail: "HTTP 200", latencyMs: 3.14, probe: "http:/", checked: Self.now)
        #expect(StatusTable.gateway(up) == "ok 3.1 ms")
        up.gateway = GatewayReport(
            ok: false, outcome: .tokenRefused, detail: "HTTP 401", latencyMs: 1, probe: "http:/", checked: Self.now)
        #expect(StatusTable.gateway(up) == "TOKEN REFUSED")
        up.gateway = GatewayReport(
            ok: false, outcome: .closedByTunnel, detail: "closed", latencyMs: 1, probe: "http:/", checked: Self.now)
        #expect(StatusTable.gateway(up) == "DOWN (closed-by-tunnel)")
        var backoff = tunnel("b", .backoff)
        backoff.gateway = up.gateway
        #expect(StatusTable.gateway(backoff) == "-", "a probe result says nothing while the tunnel is not up")
    }

    @Test func tableAndEventLine() {
        var a = tunnel("a", .up)
        a.gateway = GatewayReport(
            ok: false, outcome: .timeout, detail: "no answer in 5 s", latencyMs: 5000, probe: "http:/",
            checked: Self.now)
        a.draining = [DrainingSession(target: "ops@old:22", connections: 1)]
        let table = StatusTable.render([a, tunnel("b", .failed)], now: Self.now)
        let lines = table.split(separator: "\n").map(String.init)
        #expect(lines[0].hasPrefix("TUNNEL") && lines[0].contains("GATEWAY"))
        #expect(
            lines[1].hasPrefix("a ") && lines[1].contains("DOWN (timeout)") && lines[1].contains("1.5 kB"), "\(table)")
        #expect(lines.contains("  ↳ 1 connection finishing on the old target ops@old:22"), "\(table)")
        #expect(lines.contains("  ↳ gateway (http:/): no answer in 5 s"), "\(table)")
        #expect(
            lines.last?.hasPrefix("b ") == true && lines.last?.contains("failed 1m 40s") == true
                && lines.last?.hasSuffix("connect: refused") == true, "\(table)")
        #expect(StatusTable.render([], now: Self.now) == "no tunnels configured\n")
        #expect(
            StatusTable.eventLine(tunnel("b", .failed), at: Self.now)
                == "2026-11-18T11:08:20Z b failed ops@gw:22 conns=2 reconnects=1 error=connect: refused")
    }
}
