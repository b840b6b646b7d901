import EctoControl
import EctoStatus
import Foundation
import Testing

/// The status contract (docs/control-protocol.md) is fixed: these documents were recorded from the
/// daemon's encoder before `TunnelStatus` became the one status type (when the daemon converted
/// its driver status into a separate hand-written `TunnelReport`), and must come out byte for byte.
@Suite struct StatusContractTests {
    static let recordedStatus = #"""
        {"daemon_version":"0.1.0","tunnels":[{"bytes_in":123,"bytes_out":456,"change":{"stage":"authentication","started":"2026-11-18T11:10:00Z","target":"ops@gw2:22"},"clients_refused":3,"connections":2,"draining":[{"connections":1,"target":"ops@old:22"}],"enabled":true,"gateway":{"checked":"2026-11-18T11:11:40Z","detail":"HTTP 200 in 3.1 ms","latency_ms":3.1,"ok":true,"outcome":"up","probe":"http:/","token_source":"none"},"last_error":null,"local":"127.0.0.1:18789","name":"gateway","reconnects":1,"remote":"127.0.0.1:18789","retry_at":null,"retry_cause":null,"sessions":2,"sessions_up":1,"since":"2026-11-18T11:06:40Z","state":"up","target":"ops@gw.example.net:22"},{"bytes_in":0,"bytes_out":0,"clients_refused":0,"connections":0,"draining":[],"enabled":true,"gateway":{"checked":"2026-11-18T11:06:40Z","detail":"HTTP 401","latency_ms":12.25,"ok":false,"outcome":"token-refused","probe":"websocket:/"},"last_error":"connect: \"refused\" é","local":"127.0.0.1:1","name":"b/x","reconnects":0,"remote":"[::1]:2","retry_at":"2026-11-18T11:06:50Z","retry_cause":"refused","sessions":1,"sessions_up":0,"since":"2026-11-18T11:06:40Z","state":"backoff","target":"me@h:2222"},{"bytes_in":0,"bytes_out":0,"clients_refused":0,"connections":0,"draining":[],"enabled":false,"gateway":null,"last_error":null,"local":"127.0.0.1:3","name":"d","reconnects":0,"remote":"127.0.0.1:4","retry_at":null,"retry_cause":null,"sessions":1,"sessions_up":0,"since":"2026-11-18T11:06:40Z","state":"down","target":"d"}],"version":1}
        """#

    static let recordedEvent = #"""
        {"event":"tunnel","name":"b/x","time":"2026-11-18T11:06:40Z","tunnel":{"bytes_in":0,"bytes_out":0,"clients_refused":0,"connections":0,"draining":[],"enabled":true,"gateway":{"checked":"2026-11-18T11:06:40Z","detail":"HTTP 401","latency_ms":12.25,"ok":false,"outcome":"token-refused","probe":"websocket:/"},"last_error":"connect: \"refused\" é","local":"127.0.0.1:1","name":"b/x","reconnects":0,"remote":"[::1]:2","retry_at":"2026-11-18T11:06:50Z","retry_cause":"refused","sessions":1,"sessions_up":0,"since":"2026-11-18T11:06:40Z","state":"backoff","target":"me@h:2222"}}
        """#

    /// The same three tunnels as values: up with a probe, a change and a draining session; backoff
    /// with a refused token; down.
    static var tunnels: [TunnelStatus] {
        var up = TunnelStatus(
            name: "gateway", state: .up, enabled: true, target: "ops@gw.example.net:22", local: "127.0.0.1:18789",
            remote: "127.0.0.1:18789", connections: 2, bytesIn: 123, bytesOut: 456, reconnects: 1,
            since: Date(timeIntervalSince1970: 1_795_000_000), lastError: nil,
            draining: [DrainingSession(target: "ops@old:22", connections: 1)], sessions: 2, sessionsUp: 1)
        up.gateway = GatewayReport(
            ok: true, outcome: .up, detail: "HTTP 200 in 3.1 ms", latencyMs: 3.1, probe: "http:/",
            checked: Date(timeIntervalSince1970: 1_795_000_300), tokenSource: "none")
        up.change = ChangeReport(
            target: "ops@gw2:22", stage: "authentication", started: Date(timeIntervalSince1970: 1_795_000_200))
        up.clientsRefused = 3
        var backoff = TunnelStatus(
            name: "b/x", state: .backoff, enabled: true, target: "me@h:2222", local: "127.0.0.1:1", remote: "[::1]:2",
            since: Date(timeIntervalSince1970: 1_795_000_000), lastError: "connect: \"refused\" é")
        backoff.retryAt = Date(timeIntervalSince1970: 1_795_000_010)
        backoff.retryCause = .refused
        backoff.gateway = GatewayReport(
            ok: false, outcome: .tokenRefused, detail: "HTTP 401", latencyMs: 12.25, probe: "websocket:/",
            checked: Date(timeIntervalSince1970: 1_795_000_000))
        let down = TunnelStatus(
            name: "d", state: .down, enabled: false, target: "d", local: "127.0.0.1:3", remote: "127.0.0.1:4",
            since: Date(timeIntervalSince1970: 1_795_000_000))
        var all = [up, backoff, down]
        // Recorded before forwards existed: no `forwards` key (a daemon now always sends it).
        for index in all.indices { all[index].forwards = [] }
        return all
    }

    /// `forwards` (added 2026-12, issue 15): one entry per forward with its own state and counters.
    @Test func forwardsAreEncodedPerForward() throws {
        var status = TunnelStatus(
            name: "multi", state: .up, enabled: true, target: "t", local: "127.0.0.1:1", remote: "127.0.0.1:2",
            since: Date(timeIntervalSince1970: 1_795_000_000),
            forwards: [("127.0.0.1:1", "127.0.0.1:2"), ("[::1]:3", "db:5432")])
        status.forwards[0].state = .listening
        status.forwards[0].connections = 2
        status.forwards[0].bytesIn = 10
        status.forwards[1].state = .retrying
        status.forwards[1].lastError = "127.0.0.1:3 is in use (held by pid 7)"
        let data = try ControlProtocol.encoder().encode(status)
        let text = String(decoding: data, as: UTF8.self)
        #expect(
            text.contains(
                #""forwards":[{"bytes_in":10,"bytes_out":0,"connections":2,"last_error":null,"local":"127.0.0.1:1","remote":"127.0.0.1:2","state":"listening"},{"bytes_in":0,"bytes_out":0,"connections":0,"last_error":"127.0.0.1:3 is in use (held by pid 7)","local":"[::1]:3","remote":"db:5432","state":"retrying"}]"#
            ), "\(text)")
        #expect(try ControlProtocol.decoder().decode(TunnelStatus.self, from: data) == status)
    }

    @Test func valuesEncodeToTheRecordedDocument() throws {
        let data = try ControlProtocol.encoder().encode(StatusReport(tunnels: Self.tunnels, daemonVersion: "0.1.0"))
        #expect(String(decoding: data, as: UTF8.self) == Self.recordedStatus)
    }

    @Test func recordedDocumentDecodesToTheValuesAndBack() throws {
        let report = try ControlProtocol.decoder().decode(StatusReport.self, from: Data(Self.recordedStatus.utf8))
        #expect(report.tunnels == Self.tunnels)
        #expect(report.tunnels.map(\.state) == [.up, .backoff, .down])
        #expect(report.tunnels[1].retryCause == .refused && report.tunnels[1].gateway?.tokenRefused == true)
        let again = try ControlProtocol.encoder().encode(report)
        #expect(String(decoding: again, as: UTF8.self) == Self.recordedStatus)
    }

    @Test func eventLineIsUnchanged() throws {
        let event = try ControlProtocol.decoder().decode(ControlEvent.self, from: Data(Self.recordedEvent.utf8))
        #expect(event.tunnel == Self.tunnels[1])
        let line = ControlProtocol.line(event)
        #expect(String(decoding: line, as: UTF8.self) == Self.recordedEvent + "\n")
    }

    /// The contract has `retry_at` and `retry_cause` only in backoff: a driver's leftover values
    /// in another state are encoded as null.
    @Test func retryDetailsOnlyInBackoff() throws {
        var status = Self.tunnels[1]
        status.state = .connecting
        let object = try #require(
            try JSONSerialization.jsonObject(with: ControlProtocol.encoder().encode(status)) as? [String: Any])
        #expect(object["retry_at"] is NSNull && object["retry_cause"] is NSNull)
    }

    /// The daemon-side fields (listener, accept counters, pre-flight) stay out of the document.
    @Test func daemonSideFieldsAreNotEncoded() throws {
        var status = Self.tunnels[2]
        status.listening = true
        status.acceptedTotal = 7
        status.refusedTotal = 2
        status.preflight = .passed
        let data = try ControlProtocol.encoder().encode(status)
        let plain = try ControlProtocol.encoder().encode(Self.tunnels[2])
        #expect(data == plain)
    }

    /// A daemon before 0.1.0 sent neither `sessions`, `clients_refused`, `retry_*` nor `change`.
    @Test func olderDocumentsDecode() throws {
        let old =
            #"{"name":"a","state":"failed","enabled":true,"target":"t","local":"l","remote":"r","connections":0,"bytes_in":1,"bytes_out":2,"reconnects":0,"since":"2026-11-18T11:06:40Z","last_error":"x"}"#
        let status = try ControlProtocol.decoder().decode(TunnelStatus.self, from: Data(old.utf8))
        #expect(status.state == .failed && status.sessions == 1 && status.sessionsUp == 0 && status.draining.isEmpty)
        #expect(status.retryCause == nil && status.change == nil && status.gateway == nil)
    }

    /// A state outside the contract is an error, not a silently different tunnel.
    @Test func unknownStateIsRefused() {
        let bad =
            #"{"name":"a","state":"sleeping","enabled":true,"target":"t","local":"l","remote":"r","connections":0,"bytes_in":1,"bytes_out":2,"reconnects":0,"since":"2026-11-18T11:06:40Z","last_error":null}"#
        #expect(throws: DecodingError.self) {
            try ControlProtocol.decoder().decode(TunnelStatus.self, from: Data(bad.utf8))
        }
    }
}
