import Testing
@testable import EctoConfig

@Suite struct ProbeConfig {
    @Test(arguments: [
        ("tcp", ProbeSpec.tcp),
        ("http:/", .http(path: "/")),
        ("http:/health?full=1", .http(path: "/health?full=1")),
        ("websocket:/", .websocket(path: "/")),
        ("websocket:/ws/v1", .websocket(path: "/ws/v1")),
    ])
    func validSpecs(_ text: String, _ spec: ProbeSpec) throws {
        #expect(try ProbeSpec.parse(text) == spec)
        #expect(spec.description == text)
    }

    @Test(arguments: [
        ("http", "missing path"),
        ("http:health", "is not a path"),
        ("http://127.0.0.1/health", "is not a path"),
        ("https:/health", "TLS probes are not supported"),
        ("ws:/", "write \"websocket:/\""),
        ("websocket", "missing path"),
        ("tcpx", "did you mean tcp?"),
        ("tcp:80", "takes no argument"),
        ("http:/a b", "spaces"),
        ("ftp:/x", "unknown probe kind"),
    ])
    func invalidSpecs(_ text: String, _ fragment: String) {
        do {
            let spec = try ProbeSpec.parse(text)
            Issue.record("accepted \(text) as \(spec)")
        } catch {
            #expect(error.message.contains(fragment), "\(error)")
        }
    }

    @Test func loaderReadsProbeKeysWithDefaults() throws {
        let config = try parseConfig(
            """
            [defaults]
            probe_interval = "30s"

            [tunnels.a]
            \(validBody)
            probe = "http:/health"

            [tunnels.b]
            target = "gw.example.net"
            local = "127.0.0.1:2"
            remote = "127.0.0.1:2"
            """)
        #expect(config.tunnels[0].probe == .http(path: "/health"))
        #expect(config.tunnels[0].probeInterval == .seconds(30))
        #expect(config.tunnels[1].probe == nil)
        #expect(config.tunnels[1].probeInterval == .seconds(30))
        let plain = try parseConfig("[tunnels.a]\n\(validBody)\n")
        #expect(plain.tunnels[0].probeInterval == TunnelDefaults.probeInterval)
    }

    @Test func loaderErrorsNameLineAndKey() {
        expectSingleError(
            "[tunnels.a]\n\(validBody)\nprobe = \"htp:/x\"\n", line: 5, key: "tunnels.a.probe",
            contains: "did you mean http?")
        expectSingleError(
            "[tunnels.a]\n\(validBody)\nprobe = 80\n", line: 5, key: "tunnels.a.probe",
            contains: "expected a string \"tcp\"")
        expectSingleError(
            "[tunnels.a]\n\(validBody)\nprobe_interval = \"-1s\"\n", line: 5, key: "tunnels.a.probe_interval",
            contains: "not a valid duration")
        expectSingleError(
            "[defaults]\nprobe = \"nope\"\n[tunnels.a]\n\(validBody)\n", line: 2, key: "defaults.probe",
            contains: "is not a probe")
    }
}
