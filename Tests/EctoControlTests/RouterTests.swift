import EctoStatus
import Foundation
import Synchronization
import Testing

@testable import EctoControl

/// A registry that records what the router asked and holds deferred answers until the test
/// releases them.
final class FakeRegistry: ControlRegistry, Sendable {
    struct Calls {
        var log: [String] = []
        var deepReplies: [@Sendable (StatusReport) -> Void] = []
        var actionReplies: [@Sendable (Result<ActionReport, ControlFailure>) -> Void] = []
    }

    let calls = Mutex(Calls())
    let tunnels = [
        TunnelStatus(
            name: "a", state: .up, enabled: true, target: "u@h:22", local: "127.0.0.1:1", remote: "127.0.0.1:2"),
        TunnelStatus(
            name: "b c", state: .backoff, enabled: true, target: "u@h:22", local: "127.0.0.1:3", remote: "127.0.0.1:4"),
    ]

    var log: [String] { calls.withLock { $0.log } }

    func status() -> StatusReport {
        calls.withLock { $0.log.append("status") }
        return StatusReport(tunnels: tunnels)
    }

    func deepStatus(reply: @escaping @Sendable (StatusReport) -> Void) {
        calls.withLock {
            $0.log.append("deepStatus")
            $0.deepReplies.append(reply)
        }
    }

    func version() -> VersionReport { VersionReport(pid: 1, config: "/c") }

    func setTarget(
        tunnel: String, _ request: TargetRequest,
        reply: @escaping @Sendable (Result<ActionReport, ControlFailure>) -> Void
    ) {
        calls.withLock {
            $0.log.append("setTarget \(tunnel) \(request.target) force=\(request.force ?? false)")
            $0.actionReplies.append(reply)
        }
    }

    func setEnabled(
        tunnel: String, enabled: Bool, reply: @escaping @Sendable (Result<ActionReport, ControlFailure>) -> Void
    ) {
        calls.withLock {
            $0.log.append("setEnabled \(tunnel) \(enabled)")
            $0.actionReplies.append(reply)
        }
    }

    func metrics() -> String { "m 1\n" }

    func reconnect(tunnel: String?, reply: @escaping @Sendable (Result<ActionReport, ControlFailure>) -> Void) {
        calls.withLock {
            $0.log.append("reconnect \(tunnel ?? "*")")
            $0.actionReplies.append(reply)
        }
    }

    func reload(_ request: ReloadRequest, reply: @escaping @Sendable (Result<ReloadReport, ControlFailure>) -> Void) {
        calls.withLock { $0.log.append("reload force=\(request.force ?? false)") }
        reply(
            .failure(
                ControlFailure(
                    422, "bad config",
                    problems: [ConfigProblem(file: "/c", line: 3, column: nil, key: "x", message: "no")])))
    }
}

/// Collects the answer of a deferred request.
final class Delivered: Sendable {
    let response = Mutex<HTTPResponse?>(nil)
    var value: HTTPResponse? { response.withLock { $0 } }
    func deliver(_ answer: HTTPResponse) { response.withLock { $0 = answer } }
}

@Suite struct RouterTests {
    func request(_ method: String, _ path: String, query: [String: String] = [:], body: String = "") -> HTTPRequest {
        HTTPRequest(method: method, path: path, query: query, headers: [:], body: Array(body.utf8))
    }

    func decode<T: Decodable>(_ type: T.Type, _ response: HTTPResponse?) throws -> T {
        try ControlProtocol.decoder().decode(T.self, from: Data(try #require(response).body))
    }

    @Test func plainStatusIsAnsweredAtOnce() throws {
        let registry = FakeRegistry()
        let outcome = Router.route(request("GET", "/v1/status"), registry: registry)
        #expect(outcome.deferred == nil && outcome.response.status == 200)
        #expect(try decode(StatusReport.self, outcome.response).tunnels.map(\.name) == ["a", "b c"])
        let one = Router.route(request("GET", "/v1/tunnels/b c"), registry: registry)
        #expect(try decode(StatusReport.self, one.response).tunnels.map(\.state) == [.backoff])
        #expect(Router.route(request("GET", "/v1/tunnels/zz"), registry: registry).response.status == 404)
        #expect(
            Router.route(request("GET", "/v1/status", query: ["tunnel": "zz"]), registry: registry).response.status
                == 404)
    }

    /// `deep` waits for probes: the router hands the answer to the registry and returns.
    @Test func deepStatusIsDeferredUntilTheRegistryAnswers() throws {
        let registry = FakeRegistry()
        let outcome = Router.route(request("GET", "/v1/tunnels/a", query: ["deep": "1"]), registry: registry)
        let deferred = try #require(outcome.deferred, "a deep status must not be answered on the control thread")
        let delivered = Delivered()
        deferred { delivered.deliver($0) }
        #expect(registry.log == ["deepStatus"])
        #expect(delivered.value == nil, "nothing is answered before the probes ran")
        let reply = try #require(registry.calls.withLock { $0.deepReplies.first })
        reply(StatusReport(tunnels: registry.tunnels))
        #expect(
            try decode(StatusReport.self, delivered.value).tunnels.map(\.name) == ["a"],
            "filtered to the tunnel asked for")
    }

    @Test func commandsThatWaitForADriverAreDeferred() throws {
        let registry = FakeRegistry()
        for (path, call) in [
            ("/v1/tunnels/a/down", "setEnabled a false"), ("/v1/tunnels/a/up", "setEnabled a true"),
            ("/v1/tunnels/a/reconnect", "reconnect a"), ("/v1/reconnect", "reconnect *"),
        ] {
            let outcome = Router.route(request("POST", path), registry: registry)
            let deferred = try #require(outcome.deferred, "\(path)")
            let delivered = Delivered()
            deferred { delivered.deliver($0) }
            #expect(registry.log.last == call)
            let reply = try #require(registry.calls.withLock { $0.actionReplies.popLast() })
            reply(.failure(ControlFailure(404, "no tunnel named a")))
            #expect(delivered.value?.status == 404)
            #expect(try decode(ErrorReport.self, delivered.value).error == "no tunnel named a")
        }
    }

    @Test func targetAndReloadBodies() throws {
        let registry = FakeRegistry()
        let target = Router.route(
            request("POST", "/v1/tunnels/a/target", body: #"{"target":"x@y:2","force":true}"#), registry: registry)
        let targetDeferred = try #require(target.deferred)
        targetDeferred { _ in }
        #expect(registry.log.last == "setTarget a x@y:2 force=true")
        #expect(
            Router.route(request("POST", "/v1/tunnels/a/target", body: "{"), registry: registry).response.status == 400)
        #expect(Router.route(request("POST", "/v1/reload", body: "nope"), registry: registry).response.status == 400)
        let reload = Router.route(request("POST", "/v1/reload"), registry: registry)
        let delivered = Delivered()
        let reloadDeferred = try #require(reload.deferred)
        reloadDeferred { delivered.deliver($0) }
        #expect(delivered.value?.status == 422)
        #expect(try decode(ErrorReport.self, delivered.value).problems?.first?.description == "/c:3: x: no")
    }

    @Test func wrongMethodAndUnknownPaths() {
        let registry = FakeRegistry()
        let wrong = Router.route(request("POST", "/v1/status"), registry: registry)
        #expect(wrong.response.status == 405)
        #expect(wrong.response.extraHeaders.contains { $0.0 == "Allow" && $0.1 == "GET" })
        #expect(Router.route(request("GET", "/v2/status"), registry: registry).response.status == 404)
        #expect(Router.route(request("GET", "/v1/nothing"), registry: registry).response.status == 404)
        #expect(Router.route(request("POST", "/v1/tunnels/a/explode"), registry: registry).response.status == 404)
        #expect(Router.route(request("GET", "/v1/events"), registry: registry).subscribe)
        #expect(registry.log.isEmpty, "nothing reached the registry")
    }
}
