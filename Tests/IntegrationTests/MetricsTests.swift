import EctoControl
import EctoTestSupport
import Foundation
import Testing
import EctoStatus

/// `GET /v1/metrics`, read with curl over the control socket (the documented example) and parsed
/// by the real Prometheus text parser (`prometheus_client` from PyPI, scripts/install-deps.sh).
@Suite("Prometheus metrics", .serialized)
struct MetricsTests {
    struct Sample: Decodable {
        var family: String
        var type: String
        var name: String
        var labels: [String: String]
        var value: Double
    }

    static let parser = """
        import json, sys
        from prometheus_client.parser import text_string_to_metric_families
        out = []
        for family in text_string_to_metric_families(sys.stdin.read()):
            for s in family.samples:
                out.append({"family": family.name, "type": family.type, "name": s.name, "labels": s.labels, "value": s.value})
        print(json.dumps(out))
        """

    func scrape(_ fixture: TunnelFixture) throws -> [Sample] {
        let script = try fixture.directory.write("parse.py", Self.parser)
        let result = try Subprocess.run(
            "/bin/bash",
            [
                "-c",
                "set -o pipefail; curl -sS --fail --unix-socket \(fixture.socketPath) http://localhost/v1/metrics | python3 \(script)",
            ])
        #expect(result.status == 0, "curl | prometheus_client parser: \(result)")
        return try JSONDecoder().decode([Sample].self, from: Data(result.stdout.utf8))
    }

    @Test(
        "GET /v1/metrics parses with prometheus_client: state gauges, bytes, connections, reconnects, refusals, last change"
    )
    func metricsParse() async throws {
        let fixture = try TunnelFixture()
        defer { fixture.cleanup() }
        let echo = try EchoServer()
        defer { echo.stop() }
        let (portA, portB) = (try FreePort.probe(), try FreePort.probe())
        // b's remote has nothing listening: its channel opens are refused by the server.
        let closed = try FreePort.probe()
        try fixture.writeConfig(
            fixture.tunnel("a", localPort: portA, remotePort: echo.port)
                + fixture.tunnel("b", localPort: portB, remotePort: closed))
        try fixture.startDaemon()
        try await fixture.waitForUp(["a", "b"])
        #expect(try echoRoundTrip(port: portA, seed: 9, count: 10_000))
        if let client = try? TCPClient.connect(port: portB, ioTimeout: .seconds(5)) {
            _ = try? client.receive(exactly: 1)  // closed by the tunnel once the server refuses the channel
            client.close()
        }
        #expect(try fixture.runCLI(["down", "a"]).status == 0)
        #expect(try fixture.runCLI(["up", "a"]).status == 0)
        try await waitUntil(timeout: .seconds(10), "a up again") {
            (try? fixture.statusJSON(["a"]).report?.tunnels.first?.state) == .up
        }
        try await waitUntil(timeout: .seconds(10), "b's refusal counted") {
            ((try? self.scrape(fixture)) ?? []).contains {
                $0.name == "ecto_tunnel_channel_refusals_total" && $0.labels["tunnel"] == "b" && $0.value == 1
            }
        }

        let samples = try scrape(fixture)
        func value(_ name: String, _ tunnel: String, _ extra: [String: String] = [:]) -> Double? {
            samples.first { $0.name == name && $0.labels == ["tunnel": tunnel].merging(extra) { $1 } }?.value
        }
        let status = try #require(fixture.statusJSON(["a"]).report?.tunnels.first)
        #expect(value("ecto_tunnel_up", "a") == 1)
        #expect(value("ecto_tunnel_state", "a", ["state": "up"]) == 1)
        #expect(value("ecto_tunnel_state", "a", ["state": "backoff"]) == 0)
        #expect(
            samples.filter { $0.name == "ecto_tunnel_state" && $0.labels["tunnel"] == "a" }.count == 5, "one per state")
        #expect(value("ecto_tunnel_received_bytes_total", "a") == Double(status.bytesIn) && status.bytesIn == 10_000)
        #expect(value("ecto_tunnel_sent_bytes_total", "a") == Double(status.bytesOut) && status.bytesOut == 10_000)
        #expect(value("ecto_tunnel_connections", "a") == 0)
        #expect(value("ecto_tunnel_connections_accepted_total", "a") == 1)
        #expect(value("ecto_tunnel_reconnects_total", "a") == Double(status.reconnects) && status.reconnects == 1)
        #expect(
            value("ecto_tunnel_last_change_timestamp_seconds", "a").map {
                abs($0 - status.since.timeIntervalSince1970) < 1
            } == true)
        #expect(value("ecto_tunnel_change_in_progress", "a") == 0)
        #expect(value("ecto_tunnel_channel_refusals_total", "b") == 1)
        #expect(
            value("ecto_tunnel_clients_refused_total", "a") == Double(status.clientsRefused)
                && status.clientsRefused == 0)
        let counters = Set(samples.filter { $0.type == "counter" }.map(\.family))
        #expect(
            counters.isSuperset(of: ["ecto_tunnel_received_bytes", "ecto_tunnel_sent_bytes", "ecto_tunnel_reconnects"]),
            "\(counters)")
    }
}
