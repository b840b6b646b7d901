@testable import EctoDaemon
import EctoStatus
import EctoTunnel
import Foundation
import Testing

@Suite("Metrics text format")
struct MetricsFormatTests {
    @Test("label values escape backslash, double quote and newline; every family has HELP and TYPE")
    func escapingAndFamilies() {
        #expect(Metrics.label("tunnel", #"a\b"c"# + "\nd") == #"tunnel="a\\b\"c\nd""#)
        var status = TunnelStatus(
            name: "gw", state: .backoff, enabled: true, target: "u@h:22", local: "127.0.0.1:1", remote: "127.0.0.1:2")
        status.bytesIn = 12
        status.since = Date(timeIntervalSince1970: 1_700_000_000.5)
        let text = Metrics.render([.init(status: status, gateway: nil)])
        #expect(text.contains("ecto_tunnel_state{tunnel=\"gw\",state=\"backoff\"} 1\n"))
        #expect(text.contains("ecto_tunnel_state{tunnel=\"gw\",state=\"up\"} 0\n"))
        #expect(text.contains("ecto_tunnel_received_bytes_total{tunnel=\"gw\"} 12\n"))
        #expect(text.contains("ecto_tunnel_last_change_timestamp_seconds{tunnel=\"gw\"} 1700000000.5\n"))
        #expect(!text.contains("gateway"), "no probe, no gateway families")
        let names = text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { String($0.prefix { $0 != "{" }) }
        for name in Set(names) {
            #expect(text.contains("# TYPE \(name) "), "\(name) has a TYPE line")
        }
    }
}
