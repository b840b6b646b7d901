import EctoConfig
import Foundation
import EctoTestSupport
import Testing

@testable import EctoProbe

/// Probes run directly against local servers (no tunnel needed): the stand-in gateway, a stopped
/// one, and a server that accepts then closes (the "tunnel up, gateway down" shape).
@Suite(.serialized) struct Probes {
    func local(_ port: UInt16) -> Endpoint { Endpoint(host: "127.0.0.1", port: port) }

    @Test func tcpUpWhenTheConnectionStaysOpen() async throws {
        let gateway = try StandInGateway()
        let result = await Prober.run(
            .tcp, endpoint: local(gateway.port), options: ProbeOptions(settle: .milliseconds(150)))
        #expect(result.ok, "\(result)")
        #expect(result.outcome == .up)
        #expect(result.detail.contains("still open after 150 ms"), "\(result)")
        #expect(result.latency < .seconds(1))
    }

    @Test(arguments: [false, true])
    func tcpReportsTheTunnelClosingUs(reset: Bool) async throws {
        let closing = try ClosingServer(reset: reset)
        let result = await Prober.run(.tcp, endpoint: local(closing.port))
        #expect(!result.ok)
        #expect(result.outcome == .closedByTunnel, "\(result)")
        #expect(result.detail.contains("nothing listens on the remote port"))
        #expect(closing.connectionsAccepted >= 1)
    }

    @Test(arguments: [ProbeSpec.tcp, .http(path: "/health"), .websocket(path: "/")])
    func refusedWhenNothingListens(_ spec: ProbeSpec) async throws {
        let gateway = try StandInGateway()
        let port = gateway.port
        gateway.stop()
        let result = await Prober.run(spec, endpoint: local(port))
        #expect(result.outcome == .refused, "\(result)")
        #expect(result.detail.contains("connection refused on 127.0.0.1:\(port)"))
    }

    @Test func httpUpAndStatusReported() async throws {
        let gateway = try StandInGateway()
        let result = await Prober.run(.http(path: "/health"), endpoint: local(gateway.port))
        #expect(result.ok, "\(result)")
        #expect(result.httpStatus == 200)
        #expect(result.detail.hasPrefix("HTTP 200 in "), "\(result)")
        #expect(gateway.requests == ["GET /health"])
        // A 404 is still an answer from the gateway.
        let missing = await Prober.run(.http(path: "/nope"), endpoint: local(gateway.port))
        #expect(missing.ok)
        #expect(missing.httpStatus == 404)
        #expect(missing.detail.contains("(Not Found)"))
    }

    @Test func httpThroughClosingServerIsGatewayDown() async throws {
        let closing = try ClosingServer()
        let result = await Prober.run(.http(path: "/health"), endpoint: local(closing.port))
        #expect(result.outcome == .closedByTunnel, "\(result)")
    }

    @Test func wrongTokenIsReportedAsRefusedToken() async throws {
        let gateway = try StandInGateway(token: "right-token")
        // The chat endpoint needs the token; the websocket upgrade too.
        let wrong = await Prober.run(
            .websocket(path: "/"), endpoint: local(gateway.port), options: ProbeOptions(token: "wrong-token"))
        #expect(!wrong.ok, "a refused token is never ok: \(wrong)")
        #expect(wrong.outcome == .tokenRefused && wrong.tokenRefused)
        #expect(wrong.httpStatus == 401)
        #expect(wrong.detail.contains("gateway refused the token"))
        #expect(!wrong.description.contains("wrong-token"))
        let none = await Prober.run(.websocket(path: "/"), endpoint: local(gateway.port))
        #expect(none.outcome == .tokenRefused && none.detail.contains("wants a token and none was found"), "\(none)")
        let right = await Prober.run(
            .websocket(path: "/"), endpoint: local(gateway.port), options: ProbeOptions(token: "right-token"))
        #expect(right.ok, "\(right)")
        #expect(right.httpStatus == 101)
        #expect(!right.tokenRefused)
    }

    @Test func httpTokenIsSentAsBearer() async throws {
        let gateway = try StandInGateway(token: "t0k")
        // GET on the chat path is a 404 (only POST is served); what matters is that the probe answers.
        let none = await Prober.run(.http(path: "/health"), endpoint: local(gateway.port))
        #expect(none.httpStatus == 200)
        #expect(
            Prober.request(path: "/x", endpoint: local(1), token: "t0k").containsSubsequence(
                "Authorization: Bearer t0k\r\n"))
        #expect(!Prober.request(path: "/x", endpoint: local(1), token: nil).containsSubsequence("Authorization"))
    }

    @Test func websocketHandshakeVerified() async throws {
        let gateway = try StandInGateway()
        let result = await Prober.run(.websocket(path: "/"), endpoint: local(gateway.port))
        #expect(result.ok, "\(result)")
        #expect(result.detail.hasPrefix("WebSocket upgrade (101) in "))
        #expect(gateway.requests == ["GET /"])
        // A path without WebSocket: the 404 is a protocol error for a websocket probe.
        let wrongPath = await Prober.run(.websocket(path: "/health"), endpoint: local(gateway.port))
        #expect(wrongPath.outcome == .protocolError, "\(wrongPath)")
    }

    @Test func websocketAcceptMatchesRFC6455Example() {
        // RFC 6455 §1.3.
        #expect(Prober.websocketAccept(forKey: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    @Test func nonHTTPAnswerIsAProtocolError() async throws {
        let echo = try EchoServer()
        // The echo server sends our request back: its first line is "GET / HTTP/1.1", not a status line.
        let result = await Prober.run(
            .http(path: "/"), endpoint: local(echo.port), options: ProbeOptions(timeout: .seconds(2)))
        #expect(result.outcome == .protocolError, "\(result)")
    }

    @Test func silentServerTimesOut() async throws {
        let sink = try SinkServer(seed: 1)
        let result = await Prober.run(
            .http(path: "/"), endpoint: local(sink.port), options: ProbeOptions(timeout: .milliseconds(300)))
        #expect(result.outcome == .timeout, "\(result)")
    }

    @Test func restartedGatewayAnswersAgain() async throws {
        let gateway = try StandInGateway()
        gateway.stop()
        #expect(await Prober.run(.http(path: "/health"), endpoint: local(gateway.port)).outcome == .refused)
        try gateway.restart()
        #expect(await Prober.run(.http(path: "/health"), endpoint: local(gateway.port)).ok)
    }

    @Test func standInGatewayServesChatAndEchoesWebSocketText() async throws {
        let gateway = try StandInGateway(token: "k")
        let port = gateway.port
        try await offload {
            let body = "{\"model\":\"x\",\"messages\":[]}"
            for (auth, expected) in [("Bearer k", "HTTP/1.1 200"), ("Bearer nope", "HTTP/1.1 401")] {
                let c = try TCPClient.connect(port: port, ioTimeout: .seconds(5))
                try c.sendAll(
                    "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: \(auth)\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
                )
                let reply = try c.receiveAllString()
                #expect(reply.hasPrefix(expected), "\(reply)")
            }
            let ws = try TCPClient.connect(port: port, ioTimeout: .seconds(5))
            try ws.sendAll(
                "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nAuthorization: Bearer k\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            var buffer: [UInt8] = []
            while ProbeSocket.headEnd(buffer) == nil { buffer += try ws.receive() }
            let end = ProbeSocket.headEnd(buffer)!
            #expect(
                String(decoding: buffer[..<end], as: UTF8.self).contains(
                    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="))
            buffer.removeFirst(end + 4)
            try ws.sendAll(WebSocketTestFrames.maskedText("hello"))
            while WebSocketTestFrames.parseServerFrame(buffer) == nil { buffer += try ws.receive() }
            let frame = WebSocketTestFrames.parseServerFrame(buffer)!
            #expect(frame.opcode == 1)
            #expect(String(decoding: frame.payload, as: UTF8.self) == "hello")
        }
    }
}

@Suite struct ProbeFormatting {
    @Test func durations() {
        #expect(Prober.format(.microseconds(3100)) == "3.1 ms")
        #expect(Prober.format(.milliseconds(250)) == "250 ms")
        #expect(Prober.format(.milliseconds(1200)) == "1.20 s")
    }

    /// The probe's base64 is FoundationEssentials' (its own copy is gone).
    @Test func base64() {
        #expect(Data(Array("f".utf8)).base64EncodedString() == "Zg==")
        #expect(Data(Array("fo".utf8)).base64EncodedString() == "Zm8=")
        #expect(Data(Array("foo".utf8)).base64EncodedString() == "Zm9v")
        // RFC 6455 §1.3's example.
        #expect(Prober.websocketAccept(forKey: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }

    @Test func httpHead() {
        let head = HTTPHead("HTTP/1.1 401 Unauthorized\r\nX-A: 1\r\nSec-WebSocket-Accept:  abc ")
        #expect(head?.status == 401)
        #expect(head?.reason == "Unauthorized")
        #expect(head?.header("sec-websocket-accept") == "abc")
        #expect(HTTPHead("SSH-2.0-OpenSSH_9.2") == nil)
    }
}

extension Array where Element == UInt8 {
    fileprivate func containsSubsequence(_ s: String) -> Bool {
        let needle = Array(s.utf8)
        guard needle.count <= count else { return false }
        for i in 0...(count - needle.count) where Array(self[i..<(i + needle.count)]) == needle { return true }
        return false
    }
}
