import Foundation
import Testing
@testable import EctoControl
import EctoStatus

@Suite struct HTTPRequestParsing {
    func parse(_ text: String, maxHead: Int = 16 * 1024, maxBody: Int = 64 * 1024) -> HTTPRequestParser.Verdict {
        var parser = HTTPRequestParser(maxHead: maxHead, maxBody: maxBody)
        return parser.feed(Array(text.utf8))
    }

    @Test func simpleGet() {
        guard case .request(let request) = parse("GET /v1/status?tunnel=gw HTTP/1.1\r\nHost: x\r\n\r\n") else {
            Issue.record("not parsed")
            return
        }
        #expect(request.method == "GET")
        #expect(request.path == "/v1/status")
        #expect(request.query == ["tunnel": "gw"])
        #expect(request.headers["host"] == "x")
        #expect(request.body.isEmpty)
    }

    @Test func bareLineFeedsFromHandTypedRequests() {
        guard case .request(let request) = parse("GET /v1/version HTTP/1.0\n\n") else {
            Issue.record("not parsed")
            return
        }
        #expect(request.path == "/v1/version")
    }

    @Test func bodyArrivesInPieces() {
        var parser = HTTPRequestParser()
        let body = #"{"target":"ops@b:22"}"#
        let text = "POST /v1/tunnels/gw/target HTTP/1.1\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body
        let bytes = Array(text.utf8)
        for (i, byte) in bytes.enumerated() {
            let verdict = parser.feed([byte])
            if i < bytes.count - 1 {
                #expect(verdict == .incomplete, "byte \(i)")
            } else if case .request(let request) = verdict {
                #expect(String(decoding: request.body, as: UTF8.self) == body)
                #expect(request.path == "/v1/tunnels/gw/target")
            } else {
                Issue.record("last byte gave \(verdict)")
            }
        }
    }

    @Test func percentEncodedPath() {
        guard case .request(let request) = parse("POST /v1/tunnels/my%20gw/up HTTP/1.1\r\n\r\n") else {
            Issue.record("not parsed")
            return
        }
        #expect(request.path == "/v1/tunnels/my gw/up")
    }

    @Test(arguments: [
        ("\u{16}\u{03}\u{01}\u{02}\u{00}\n", 400),  // a TLS hello, say
        ("get /v1/status HTTP/1.1\r\n\r\n", 400),  // lowercase method
        ("GET /v1/status HTTP/2\r\n\r\n", 400),
        ("GET v1/status HTTP/1.1\r\n\r\n", 400),
        ("GET /v1/status HTTP/1.1\r\nbad header\r\n\r\n", 400),
        ("POST /v1/reload HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        ("POST /v1/reload HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        ("POST /v1/reload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 411),
        ("POST /v1/reload HTTP/1.1\r\nContent-Length: 70000\r\n\r\n", 413),
        ("GET /v1/status HTTP/1.1\r\n\r\nGET /v1/status HTTP/1.1\r\n\r\n", 400),
    ])
    func refused(text: String, status: Int) {
        guard case .failure(let got, let message) = parse(text) else {
            Issue.record("accepted: \(text.debugDescription)")
            return
        }
        #expect(got == status, "\(text.debugDescription): \(message)")
        #expect(!message.isEmpty)
    }

    @Test func oversizedHeadIsRefusedBeforeItEnds() {
        let verdict = parse("GET /v1/status HTTP/1.1\r\nX: " + String(repeating: "a", count: 2000), maxHead: 1024)
        #expect(verdict == .failure(status: 431, message: "request head larger than 1024 bytes"))
    }

    @Test func randomBytesNeverCrashAndNeverParse() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            var parser = HTTPRequestParser(maxHead: 4096, maxBody: 4096)
            var verdict = HTTPRequestParser.Verdict.incomplete
            for _ in 0..<8 where verdict == .incomplete {
                let chunk = (0..<512).map { _ in UInt8.random(in: 0...255, using: &generator) }
                verdict = parser.feed(chunk)
            }
            if case .request = verdict { Issue.record("random bytes parsed as a request") }
        }
    }
}

@Suite struct ProtocolEncoding {
    @Test func statusCarriesTheContractFieldsWithNullError() throws {
        let report = StatusReport(tunnels: [
            TunnelStatus(
                name: "gateway", state: .up, enabled: true, target: "ops@gw:22", local: "127.0.0.1:18789",
                remote: "127.0.0.1:18789", connections: 2, bytesIn: 123, bytesOut: 456, reconnects: 1,
                since: Date(timeIntervalSince1970: 1_795_000_000), lastError: nil)  // 2026-11-18T11:06:40Z
        ])
        let data = try ControlProtocol.encoder().encode(report)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["version"] as? Int == 1)
        let tunnel = try #require((object["tunnels"] as? [[String: Any]])?.first)
        for key in [
            "name", "state", "enabled", "target", "local", "remote", "connections", "bytes_in", "bytes_out",
            "reconnects", "since", "last_error",
        ] {
            #expect(tunnel.keys.contains(key), "missing \(key)")
        }
        #expect(tunnel["last_error"] is NSNull)
        #expect(tunnel["since"] as? String == "2026-11-18T11:06:40Z")
        let back = try ControlProtocol.decoder().decode(StatusReport.self, from: data)
        #expect(back == report)
    }

    @Test func responseSerialization() {
        let text = String(decoding: HTTPResponse.error(404, "no tunnel named x").serialized(), as: UTF8.self)
        #expect(text.hasPrefix("HTTP/1.1 404 Not Found\r\n"))
        #expect(text.contains("Content-Length: "))
        #expect(text.hasSuffix("{\"error\":\"no tunnel named x\"}\n"))
        let parsed = ControlClient.parseHead(Array(text.utf8))
        #expect(parsed?.0 == 404)
    }
}

/// PercentCoding replaced Foundation's `removingPercentEncoding` and
/// `addingPercentEncoding(withAllowedCharacters:)`; checked against them here.
@Suite struct PercentCodingTests {
    static let samples = [
        "gw", "a b", "50%", "%41%42", "a%2Fb", "ü%C3%BC", "%", "%4", "%zz", "%FF", "x?y#z/w", "+plus+", "",
    ]

    @Test func decodeMatchesFoundation() {
        for sample in Self.samples {
            #expect(PercentCoding.decode(sample) == sample.removingPercentEncoding, "\(sample)")
        }
    }

    @Test func encodePathSegmentMatchesFoundation() {
        let allowed = CharacterSet.urlPathAllowed.subtracting(CharacterSet(charactersIn: "/?#"))
        for sample in Self.samples + ["tunnel-1_2.3~", "a:b@c!$&'()*+,;=", "日本"] {
            #expect(
                PercentCoding.encodePathSegment(sample) == sample.addingPercentEncoding(withAllowedCharacters: allowed),
                "\(sample)")
        }
    }

    @Test func roundTrip() {
        for sample in Self.samples {
            #expect(PercentCoding.decode(PercentCoding.encodePathSegment(sample)) == sample)
        }
    }
}
