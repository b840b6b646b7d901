import EctoControl
import EctoStatus
import EctoTunnel
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `GET /v1/metrics`: every tunnel's state and counters in the Prometheus text exposition format
/// (version 0.0.4), for a scraper that reaches the control socket (curl --unix-socket into a
/// node_exporter textfile, say). Pure: statuses in, text out.
public enum Metrics {
    /// One tunnel as the metrics see it.
    public struct Sample: Sendable {
        public var status: TunnelStatus
        public var gateway: GatewayReport?
        public init(status: TunnelStatus, gateway: GatewayReport?) {
            self.status = status
            self.gateway = gateway
        }
    }

    public static func render(_ samples: [Sample]) -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String, _ values: [(labels: String, value: String)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for (labels, value) in values { out += "\(name){\(labels)} \(value)\n" }
        }
        func per(_ value: (TunnelStatus) -> String) -> [(labels: String, value: String)] {
            samples.map { (label("tunnel", $0.status.name), value($0.status)) }
        }
        family(
            "ecto_tunnel_up", "gauge", "1 while the tunnel's SSH session is up, else 0.",
            per { $0.state == .up ? "1" : "0" })
        family(
            "ecto_tunnel_state", "gauge", "The tunnel's state: 1 for the state it is in, 0 for the others.",
            samples.flatMap { sample in
                TunnelState.allCases.map { state in
                    (
                        label("tunnel", sample.status.name) + "," + label("state", state.rawValue),
                        sample.status.state == state ? "1" : "0"
                    )
                }
            })
        family(
            "ecto_tunnel_enabled", "gauge", "1 unless the tunnel is disabled (down).", per { $0.enabled ? "1" : "0" })
        family(
            "ecto_tunnel_connections", "gauge", "Forwarded connections open now (draining sessions included).",
            per { "\($0.connections)" })
        family(
            "ecto_tunnel_sessions_up", "gauge", "SSH sessions of the tunnel that are up (sessions = N).",
            per { "\($0.sessionsUp)" })
        family(
            "ecto_tunnel_received_bytes_total", "counter",
            "Payload bytes from the remote side delivered towards local clients.",
            per { "\($0.bytesIn)" })
        family(
            "ecto_tunnel_sent_bytes_total", "counter",
            "Payload bytes read from local clients and sent towards the remote side.",
            per { "\($0.bytesOut)" })
        family(
            "ecto_tunnel_connections_accepted_total", "counter", "Client connections accepted.",
            per { "\($0.acceptedTotal)" })
        family(
            "ecto_tunnel_channel_refusals_total", "counter",
            "Channel opens the SSH server refused (nothing listening on remote, as seen from the server, or forwarding not allowed).",
            per { "\($0.refusedTotal)" })
        family(
            "ecto_tunnel_clients_refused_total", "counter",
            "Local clients refused at once: over max_clients, or file descriptors down to the daemon's reserve.",
            per { "\($0.clientsRefused)" })
        family(
            "ecto_tunnel_reconnects_total", "counter", "SSH sessions established after the first one.",
            per { "\($0.reconnects)" })
        family(
            "ecto_tunnel_last_change_timestamp_seconds", "gauge", "Unix time of the tunnel's last state change.",
            per { number($0.since.timeIntervalSince1970) })
        family(
            "ecto_tunnel_change_in_progress", "gauge",
            "1 while a change of the tunnel (target, reload) is being pre-flighted.",
            per { $0.change == nil ? "0" : "1" })
        let probed = samples.filter { $0.gateway != nil }
        if !probed.isEmpty {
            family(
                "ecto_tunnel_gateway_ok", "gauge", "1 when the last end-to-end probe through the tunnel succeeded.",
                probed.map { (label("tunnel", $0.status.name), $0.gateway!.ok ? "1" : "0") })
            family(
                "ecto_tunnel_gateway_latency_seconds", "gauge", "Latency of the last end-to-end probe.",
                probed.map { (label("tunnel", $0.status.name), number($0.gateway!.latencyMs / 1000)) })
        }
        return out
    }

    /// `name="value"` with the exposition format's escapes (backslash, double quote, newline).
    static func label(_ name: String, _ value: String) -> String {
        var escaped = ""
        for character in value {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return "\(name)=\"\(escaped)\""
    }

    /// A float as Prometheus reads it (plain decimal, no locale).
    static func number(_ value: Double) -> String {
        guard value.isFinite else { return value.isNaN ? "NaN" : (value > 0 ? "+Inf" : "-Inf") }
        return "\(value)"
    }
}
